"""Shared plumbing for the network tools: deadlines, a bounded HTTP GET, and one-line failure messages.

Every failure a network tool can meet (refused connection, DNS failure, a server that never
answers, HTTP 429 or 5xx, a body that is not what was promised, a huge body) ends here as a
`ToolError` whose message is one short line naming what went wrong and where. The time-limited call
they run under, the backstop for what a socket timeout cannot bound, is the engine's `run_with_time_limit`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from tether.engine.prompt import sanitise_observation
from tether.errors import ToolError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "Deadline",
    "client_budget",
    "describe_network_error",
    "fetch_bytes",
    "host_of",
    "one_line",
    "response_too_large",
    "status_error",
]

DEFAULT_MAX_RESPONSE_BYTES = 2_000_000
MESSAGE_LIMIT = 300
_CHUNK = 64 * 1024


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Printable text on one line, capped (the same cleaning the controller gives observations)."""
    return sanitise_observation(text, limit)


def client_budget(timeout_s: float) -> float:
    """How long a tool's own HTTP work may take: its time limit less a margin to report the failure."""
    return timeout_s - min(1.0, 0.15 * timeout_s)


class Deadline:
    """A point in time that every HTTP call of one tool call must finish before."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0


def host_of(url: str) -> str:
    """`host:port` of a URL, for messages."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, `.reason` (urllib3), exception args."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        linked = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(x for x in linked if isinstance(x, BaseException))


def _kinds(exc: BaseException) -> set[str]:
    return {cls.__name__ for e in _causes(exc) for cls in type(e).__mro__}


def _text(exc: BaseException) -> str:
    return " ".join(str(e) for e in _causes(exc)).lower()


_DNS = {"DNSError", "NameResolutionError", "gaierror"}
_TIMEOUT = {"Timeout", "TimeoutError", "ReadTimeout", "ConnectTimeout", "TimeoutException", "timeout"}
_TLS = {"SSLError", "SSLCertVerificationError"}
_CONNECT = {"ConnectError", "ConnectionError", "NewConnectionError", "ConnectionResetError", "OSError"}


def describe_network_error(exc: BaseException, *, service: str, host: str, seconds: float) -> ToolError:
    """One clear line for a failed connection or exchange, whatever library raised it."""
    kinds, text = _kinds(exc), _text(exc)
    if kinds & _DNS or "name or service not known" in text or "dns error" in text:
        message = f"{service}: cannot resolve host {host!r} (DNS lookup failed)"
    elif "ConnectionRefusedError" in kinds or "connection refused" in text:  # before timeouts: urllib3's
        message = f"{service}: connection refused by {host}"  # NewConnectionError subclasses ConnectTimeoutError
    elif kinds & _TIMEOUT or "timed out" in text:
        message = f"{service}: no answer from {host} within {seconds:.1f}s"
    elif kinds & _TLS:
        message = f"{service}: TLS handshake with {host} failed"
    elif kinds & _CONNECT:
        message = f"{service}: connection to {host} failed ({type(exc).__name__})"
    else:
        message = f"{service}: request to {host} failed: {type(exc).__name__}: {exc}"
    return ToolError(one_line(message))


def status_error(status: int, *, service: str, host: str) -> ToolError:
    """One clear line for an HTTP status other than 200."""
    if status == 429:
        message = f"{service}: rate limited by {host} (HTTP 429); wait before trying again"
    elif status >= 500:
        message = f"{service}: server error at {host} (HTTP {status}); try again later"
    else:
        message = f"{service}: {host} refused the request (HTTP {status})"
    return ToolError(message)


def response_too_large(*, service: str, host: str, max_bytes: int) -> ToolError:
    return ToolError(f"{service}: response from {host} is too large (over {max_bytes:,} bytes)")


def fetch_bytes(
    url: str,
    *,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    deadline: Deadline,
    max_bytes: int,
    service: str,
) -> bytes:
    """GET `url` with `requests`, every socket wait bounded by the deadline; the body, at most `max_bytes`.

    Non-200 statuses, oversized bodies and network failures become one-line ToolErrors.
    """
    import requests

    host = host_of(url)
    remaining = deadline.remaining()
    if remaining <= 0:
        raise ToolError(f"{service}: no answer from {host} within {deadline.seconds:.1f}s")
    try:
        response = requests.get(url, params=params, headers=dict(headers), timeout=remaining, stream=True)
        with response:
            if response.status_code != 200:
                raise status_error(response.status_code, service=service, host=host)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise response_too_large(service=service, host=host, max_bytes=max_bytes)
            body = bytearray()
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise response_too_large(service=service, host=host, max_bytes=max_bytes)
                if deadline.expired():
                    raise ToolError(f"{service}: no complete answer from {host} within {deadline.seconds:.1f}s")
            return bytes(body)
    except ToolError:
        raise
    except Exception as exc:  # requests/urllib3/socket errors of every kind
        raise describe_network_error(exc, service=service, host=host, seconds=deadline.seconds) from None
