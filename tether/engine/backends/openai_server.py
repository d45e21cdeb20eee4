"""A model behind an OpenAI-compatible completions endpoint, with the step grammar in every request.

Why: agents that outgrow one machine run the model on a serving engine. The grammar travels with
each request in the field the engine reads: `grammar` (GBNF) for llama.cpp's `llama-server` and
`llama_cpp.server`; `structured_outputs: {grammar: ...}` for vLLM (XGrammar inside; vLLM before
0.10 called it `guided_grammar`). tether still validates every reply, so a server that ignores the
grammar is caught (see `Trace.grammar_ignored`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import requests

from tether.engine.backends.base import ForcedText, Message, Sampling, StreamStats
from tether.errors import BackendError, ConfigError

__all__ = ["OpenAIServerBackend", "ServerKind"]

ServerKind = Literal["llama-cpp", "vllm"]
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_STOP = ["\nObservation:", "\nQuestion:"]  # an unconstrained model would go on to write these itself


class OpenAIServerBackend:
    """`POST {base_url}/v1/completions`. Connection errors, timeouts, 429 and 5xx are retried with
    exponential backoff (`retries` times, from `backoff_s`); other 4xx and malformed replies are not
    (retrying cannot help). What still fails raises BackendError, which ends the run with stop
    reason `backend_error`, the steps done so far kept. Safe to share between threads."""

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
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"server URL {base_url!r} must start with http:// or https://")
        if kind not in ("llama-cpp", "vllm"):
            raise ConfigError(f"unknown server kind {kind!r}: use llama-cpp or vllm")
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.kind = kind
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @property
    def name(self) -> str:
        return f"{self.model or 'server'}@{self.base_url}"

    @property
    def family(self) -> str | None:
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
        stats: StreamStats,
        forced: ForcedText | None = None,
        deadline: float | None = None,
    ) -> Iterator[str]:
        """The whole completion as one piece (the server applies the grammar, forced text included)."""
        reply = self._post(self.request_body(prompt, grammar, max_tokens, sampling))
        try:
            text = reply["choices"][0]["text"]
            usage = reply.get("usage") or {}
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"malformed reply from {self.base_url}: no choices[0].text ({exc})") from None
        stats.prompt_tokens = stats.prompt_evaluated = int(usage.get("prompt_tokens") or 0)
        stats.sampled = int(usage.get("completion_tokens") or 0)
        return iter([text] if text else [])

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/v1/completions"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = requests.post(url, json=body, headers=self._headers, timeout=self.timeout_s)
            except requests.Timeout:
                problem = f"no reply within {self.timeout_s:g} s"
                continue
            except requests.RequestException as exc:  # refused, reset, closed mid-reply: a completion is safe to redo
                problem = f"connection failed ({type(exc).__name__})"
                continue
            if response.status_code in _RETRY_STATUS:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise BackendError(f"{url} refused the request: HTTP {response.status_code} {_excerpt(response.text)}")
            try:
                reply = response.json()
            except ValueError:
                raise BackendError(f"malformed reply from {url}: not JSON ({_excerpt(response.text)})") from None
            if not isinstance(reply, dict):
                raise BackendError(f"malformed reply from {url}: not a JSON object")
            return reply
        raise BackendError(f"{url} failed after {self.retries + 1} attempts: {problem}")


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
