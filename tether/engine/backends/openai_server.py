"""A model behind an OpenAI-compatible completions endpoint, with the step grammar in every request.

Why: agents that outgrow one machine run the model on a serving engine. The grammar travels with
each request in the field the engine reads: `grammar` (GBNF) for llama.cpp's `llama-server` and
`llama_cpp.server`; `structured_outputs: {grammar: ...}` for vLLM (XGrammar inside; vLLM before
0.10 called it `guided_grammar`). tether still validates every reply, so a server that ignores the
grammar is caught (see `Trace.grammar_ignored`).

The server is untrusted: every request is held to a total deadline (the per-request timeout and the
run's end, whichever comes first, however slowly the server trickles), the body is capped on the wire
and after decompression, the text is cut to the step's budget and cleaned, and no secret (API key,
`user:pass@` in the URL) reaches a message.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import requests
import urllib3

from tether.engine.backends.base import ForcedText, Message, Sampling
from tether.engine.protocol import CHARS_PER_TOKEN, TokenCounts
from tether.errors import BackendError, ConfigError
from tether.text import clean_text

__all__ = ["CHARS_PER_TOKEN", "MAX_REPLY_BYTES", "OpenAIServerBackend", "ServerKind"]

ServerKind = Literal["llama-cpp", "vllm"]
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_STOP = ["\nObservation:", "\nQuestion:"]  # an unconstrained model would go on to write these itself

MAX_REPLY_BYTES = 4_000_000
"""The most bytes of a reply read, counted after decompression (a gzip bomb stops here)."""
_CHUNK = 16_384
_ERROR_BODY_BYTES = 4_096  # enough of a refusal's body for its message
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _Retryable(Exception):
    """One attempt failed in a way that another attempt could fix (timeout, connection, 5xx)."""


class OpenAIServerBackend:
    """`POST {base_url}/v1/completions`. Connection errors, timeouts, 429 and 5xx are retried with
    exponential backoff (`retries` times, from `backoff_s`), never past the run's deadline; other 4xx
    and malformed replies are not (retrying cannot help). What still fails raises BackendError, which
    ends the run with stop reason `backend_error`, the steps done so far kept. Safe to share between
    threads."""

    def __init__(
        self,
        base_url: str,
        *,
        kind: ServerKind = "llama-cpp",
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        slots: int | None = None,
    ) -> None:
        if kind not in ("llama-cpp", "vllm"):
            raise ConfigError(f"unknown server kind {kind!r}: use llama-cpp or vllm")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(f"server timeout must be a positive number of seconds, not {timeout_s!r}")
        if retries < 0 or not (math.isfinite(backoff_s) and backoff_s >= 0):
            raise ConfigError("server retries and backoff must not be negative")
        if slots is not None and (kind != "llama-cpp" or slots < 1):
            raise ConfigError("slots (llama-server's --parallel) must be at least 1, and only for kind llama-cpp")
        if api_key is not None and not (api_key.isascii() and api_key.isprintable()):
            raise ConfigError("the API key must be printable ASCII (is there a stray newline in it?)")
        self.base_url, auth = _split_url(base_url)
        self.kind = kind
        self.model = clean_text(model) if model else model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._auth = auth if not api_key else None  # an API key wins over URL credentials
        self._secrets = _secret_forms(api_key, auth)
        self.slots = slots
        self._slot_lock = threading.Lock()
        self._slot_of: dict[int, int] = {}  # thread -> the slot its requests go to
        self._busy: set[int] = set()

    @property
    def name(self) -> str:
        return f"{self.model or 'server'}@{self.base_url}"

    @property
    def architecture(self) -> str | None:
        return None  # unknown behind a server: prompting falls back to raw completion

    def format_chat(self, messages: Sequence[Message]) -> str | None:
        return None  # the completions endpoint takes raw text

    def request_body(self, prompt: str, grammar: str | None, max_tokens: int, sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "seed": sampling.seed,
            "stream": False,
        }
        if self.model:
            body["model"] = self.model
        if grammar is None:
            body["stop"] = _STOP
        elif self.kind == "vllm":
            body["structured_outputs"] = {"grammar": grammar}
        else:
            body["grammar"] = grammar
        return body

    def stream(
        self,
        prompt: str,
        *,
        grammar: str | None,
        max_tokens: int,
        sampling: Sampling,
        stats: TokenCounts,
        forced: ForcedText | None = None,
        deadline: float | None = None,
    ) -> Iterator[str]:
        """The whole completion as one piece (the server applies the grammar, forced text included),
        cut to `max_tokens * CHARS_PER_TOKEN` characters; a cut reply counts as using the whole budget."""
        body = self.request_body(prompt, grammar, max_tokens, sampling)
        slot = self._claim_slot()
        if slot is not None:
            body["id_slot"] = slot
        try:
            reply = self._post(body, deadline)
            text, prompt_tokens, evaluated, sampled = self._parse(reply)
        except BackendError as exc:
            raise BackendError(self._redact(str(exc))) from None
        finally:
            self._release_slot(slot)
        budget = max_tokens * CHARS_PER_TOKEN
        if len(text) > budget:
            text = text[:budget]
            sampled = max(sampled, max_tokens)  # the controller then records the step as truncated
        stats.prompt, stats.prompt_evaluated, stats.sampled = prompt_tokens, evaluated, sampled
        return iter([text] if text else [])

    def _claim_slot(self) -> int | None:
        """With `slots`, the llama-server slot for this thread's request: the one its previous request
        used, so a run (which stays on one thread, `Agent.arun` included) finds its transcript cached
        there; another thread's free slot only if that one is busy. Left to itself, llama-server gives a
        new question the first idle slot sharing the instructions, often one whose run is between steps,
        which then re-evaluates its transcript elsewhere."""
        if self.slots is None:
            return None
        me = threading.get_ident()
        with self._slot_lock:
            slot = self._slot_of.get(me)
            if slot is None or slot in self._busy:
                alive = {thread.ident for thread in threading.enumerate()}
                self._slot_of = {t: s for t, s in self._slot_of.items() if t in alive}  # a dead thread's slot is free
                owned = {s for t, s in self._slot_of.items() if t != me}
                free = [s for s in range(self.slots) if s not in self._busy]
                slot = ([s for s in free if s not in owned] or free or [me % self.slots])[0]
            self._slot_of[me] = slot
            self._busy.add(slot)
            return slot

    def _release_slot(self, slot: int | None) -> None:
        if slot is not None:
            with self._slot_lock:
                self._busy.discard(slot)

    def _parse(self, reply: dict[str, Any]) -> tuple[str, int, int, int]:
        """The completion text (cleaned) and the token counts: prompt, prompt evaluated, sampled. The
        prompt tokens the server evaluated (the rest came from its prompt cache) are llama-server's
        `timings.prompt_n`, else `prompt_tokens - usage.prompt_tokens_details.cached_tokens` (OpenAI's
        field), else all of them. A reply of the wrong shape is a BackendError."""
        where = f"malformed reply from {self.base_url}"
        try:
            text = reply["choices"][0]["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{where}: no choices[0].text ({type(exc).__name__})") from None
        usage = reply.get("usage")
        if usage is None:
            usage = {}
        if not isinstance(usage, dict):
            raise BackendError(f"{where}: usage is not an object")
        counts = []
        for key in ("prompt_tokens", "completion_tokens"):
            value = usage.get(key)
            if value is None:
                value = 0
            if type(value) is not int or not 0 <= value < 2**31:
                raise BackendError(f"{where}: usage.{key} is not a token count")
            counts.append(value)
        prompt, sampled = counts
        return clean_text(text), prompt, _evaluated(reply, usage, prompt), sampled

    def _post(self, body: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        """The reply's JSON object, after at most `retries + 1` attempts, none past `deadline`."""
        url = f"{self.base_url}/v1/completions"
        end = math.inf if deadline is None else deadline
        problem = "no attempt was made before the run's time limit"
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                pause = self.backoff_s * 2 ** (attempt - 1)
                if time.monotonic() + pause >= end:
                    break
                time.sleep(pause)
            now = time.monotonic()
            if now >= end:
                break
            attempts += 1
            try:
                return self._attempt(url, body, now + self.timeout_s, end)
            except _Retryable as exc:
                problem = str(exc)
        tries = f"{attempts} attempt{'s' * (attempts != 1)}"
        if time.monotonic() >= end:
            raise BackendError(f"{url}: the run's time limit was reached after {tries}: {problem}")
        if attempts < self.retries + 1:
            raise BackendError(
                f"{url} failed after {tries} (no time for another before the run's time limit): {problem}"
            )
        raise BackendError(f"{url} failed after {tries}: {problem}")

    def _attempt(self, url: str, body: dict[str, Any], timeout_at: float, end: float) -> dict[str, Any]:
        """One request, over by `min(timeout_at, end)` however the server paces its bytes."""
        stop = min(timeout_at, end)
        late = f"no reply within {self.timeout_s:g} s" if timeout_at <= end else "no reply before the run's time limit"
        try:
            response = requests.post(
                url,
                json=body,
                headers={**self._headers, "Accept-Encoding": "gzip, deflate"},
                auth=self._auth,
                # connecting and waiting for the headers together (requests' own types omit urllib3's Timeout)
                timeout=urllib3.Timeout(total=max(0.001, stop - time.monotonic())),  # type: ignore[arg-type]
                stream=True,
            )
        except requests.Timeout:
            raise _Retryable(late) from None
        except requests.RequestException as exc:  # refused, reset, closed mid-reply: a completion is safe to redo
            raise _Retryable(f"connection failed ({_reason(exc)})") from None
        with response:
            status = response.status_code
            if status in _RETRY_STATUS:
                raise _Retryable(f"HTTP {status}")
            if status >= 400:
                refusal = _read_capped(response, stop, _ERROR_BODY_BYTES, late, truncate=True)
                raise BackendError(
                    f"{url} refused the request: HTTP {status} {_excerpt(refusal.decode('utf-8', 'replace'))}"
                )
            data = _read_capped(response, stop, MAX_REPLY_BYTES, late)
        try:
            reply = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: `[[[[…` nested past Python's stack
            head = data[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
            raise BackendError(f"malformed reply from {url}: not JSON ({_excerpt(head)})") from None
        if not isinstance(reply, dict):
            raise BackendError(f"malformed reply from {url}: not a JSON object")
        return reply

    def _redact(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "[redacted]")
        return message


def _evaluated(reply: dict[str, Any], usage: dict[str, Any], prompt: int) -> int:
    """How many of the `prompt` tokens the server evaluated, from the optional fields that say so (an
    odd value there is ignored: these fields are for accounting, not worth failing a step over)."""
    timings, details = reply.get("timings"), usage.get("prompt_tokens_details")
    evaluated = timings.get("prompt_n") if isinstance(timings, dict) else None
    if type(evaluated) is int and 0 <= evaluated <= prompt:
        return evaluated
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if type(cached) is int and 0 <= cached <= prompt:
        return prompt - cached
    return prompt


def _read_capped(response: requests.Response, stop: float, limit: int, late: str, *, truncate: bool = False) -> bytes:
    """The (decompressed) body, read in bounded chunks, each read waiting no later than `stop`.
    Past `limit` bytes: the bytes so far with `truncate`, else BackendError."""
    raw = response.raw
    read = getattr(raw, "read1", raw.read)  # read1 returns what has arrived; urllib3 before 2.0 lacks it
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            left = stop - time.monotonic()
            if left <= 0:
                raise _Retryable(late)
            _set_read_timeout(raw, left)
            chunk: bytes = read(_CHUNK, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:
                if truncate:
                    return b"".join(chunks)[:limit]
                raise BackendError(f"reply from {response.url} is larger than {limit // 1_000_000} MB: refused")
    except urllib3.exceptions.ReadTimeoutError:
        raise _Retryable(late) from None
    except urllib3.exceptions.DecodeError:
        raise BackendError(f"malformed reply from {response.url}: its Content-Encoding does not decode") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # reset or closed mid-body, or a bad encoding
        raise _Retryable(f"connection failed ({_reason(exc)})") from None


def _set_read_timeout(raw: Any, seconds: float) -> None:
    """Make the next socket read wait at most `seconds` (requests only sets a per-read timeout once)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(0.001, seconds))


def _split_url(base_url: str) -> tuple[str, tuple[str, str] | None]:
    """The base URL without credentials (and without a trailing `/v1`), and the `user:pass` it held.
    A URL that cannot be a server address is a ConfigError now, not four failed connections later."""
    safe = _without_userinfo(base_url)
    safe = safe if len(safe) <= 80 else safe[:79] + "…"
    try:
        parts = urllib.parse.urlsplit(base_url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed server URL {safe!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"server URL {safe!r} must start with http:// or https://")
    if not parts.hostname or _CONTROL.search(base_url) or " " in base_url:
        raise ConfigError(f"malformed server URL {safe!r}: no host, or spaces or control characters")
    if parts.query or parts.fragment:
        raise ConfigError(f"server URL {safe!r} must not have a query or fragment")
    host = parts.netloc.rpartition("@")[2]
    if port == 0:
        raise ConfigError(f"malformed server URL {safe!r}: port 0")
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))
    path = parts.path.rstrip("/").removesuffix("/v1")
    return urllib.parse.urlunsplit((parts.scheme, host, path, "", "")), auth


def _without_userinfo(url: str) -> str:
    """`url` with any `user:pass@` dropped, even from text that is not a valid URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}"


def _secret_forms(api_key: str | None, auth: tuple[str, str] | None) -> list[str]:
    """Every form in which a secret could come back in a server's message, longest first."""
    forms: set[str] = set()
    if api_key:
        forms.add(api_key)
    if auth is not None:
        user, password = auth
        forms.add(base64.b64encode(f"{user}:{password}".encode()).decode())
        if password:
            forms.update({password, urllib.parse.quote(password, safe="")})
    return sorted(forms, key=len, reverse=True)


def _reason(exc: BaseException) -> str:
    """The failure's type and its innermost cause's: `ConnectionError: gaierror` says more than `ConnectionError`."""
    inner = exc
    for _ in range(8):
        nxt = getattr(inner, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    name, cause = type(exc).__name__, type(inner).__name__
    return name if cause == name else f"{name}: {cause}"


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(_CONTROL.sub(" ", clean_text(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
