"""The `search` tool: web search through `ddgs` (9.x), the top results as one compact line.

    search: tallest building in Europe  ->  "Lakhta Center: The Lakhta Center is ... | Title: snippet | ..."

The tool holds a small pluggable client (`SearchClient`): anything with
`search(query, *, max_results, timeout_s) -> Sequence[SearchHit]`. The default, `DdgsClient`,
runs `DDGS(timeout=...).text(...)` and fixes three things ddgs does not do for an agent:

* a status: ddgs's engines turn any non-200 answer into "no result", so HTTP 429 (and the 202
  DuckDuckGo answers when it throttles) would read as "No results found.". Each engine instance
  DDGS will use gets its `request` method (the override point `BaseSearchEngine` defines)
  replaced by one that checks the status first, bounds every request by the call's deadline,
  and caps the body size while streaming it.
* a base URL: `base_url="http://127.0.0.1:PORT"` sends every request of every engine to that
  origin, path and query kept (`/html/` for DuckDuckGo, `/search` for Mojeek, ...). Tests use
  it to drive the real ddgs code path (engine, HTML parsing, ranking) against a loopback server.
* a time limit for the whole search: DDGS may query engines in several rounds, each up to its
  timeout, so the call also runs under `run_with_time_limit` (ToolTimeout past it).

These hooks use `DDGS._get_engines` and `engine.http_client.client` (the engine's primp client);
if a future ddgs lacks them, searching still works through plain ddgs, and `base_url` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from tether.engine.tool import Tool, run_with_time_limit
from tether.errors import ConfigError, ToolError
from tether.tools import _http

__all__ = ["DdgsClient", "SearchClient", "SearchHit", "make_search_tool"]

SERVICE = "search"
_THROTTLED = (202, 429)  # DuckDuckGo's html endpoint answers 202 with a challenge page when throttling


@dataclass(frozen=True)
class SearchHit:
    title: str
    snippet: str
    url: str = ""


class SearchClient(Protocol):
    """A web search backend: hits for a query, or ToolError with a one-line message."""

    def search(self, query: str, *, max_results: int, timeout_s: float) -> Sequence[SearchHit]: ...


def _require_ddgs() -> None:
    """Checked when the client is built, so a missing package is a ConfigError for the user then,
    never an observation for the model."""
    try:
        import ddgs  # noqa: F401
    except ImportError:
        raise ConfigError("the search tool needs the 'ddgs' package: pip install 'tether[web]'") from None


class DdgsClient:
    """`ddgs` text search, with statuses, size caps and deadlines (see the module docstring)."""

    def __init__(
        self,
        *,
        backend: str = "auto",
        region: str = "us-en",
        safesearch: str = "moderate",
        base_url: str | None = None,
        proxy: str | None = None,
        max_response_bytes: int = _http.DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if base_url is not None and urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"search: base_url {base_url!r} must be an http(s) URL")
        _require_ddgs()
        self.backend = backend
        self.region = region
        self.safesearch = safesearch
        self.base_url = base_url
        self.proxy = proxy
        self.max_response_bytes = max_response_bytes

    def _where(self) -> str:
        return _http.host_of(self.base_url) if self.base_url else f"the {self.backend} search backend"

    def search(self, query: str, *, max_results: int, timeout_s: float) -> Sequence[SearchHit]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException

        deadline = _http.Deadline(timeout_s)
        # primp takes float seconds; ddgs annotates int
        client = DDGS(proxy=self.proxy, timeout=timeout_s)  # type: ignore[arg-type]
        self._instrument(client, deadline)
        try:
            rows = client.text(
                query,
                max_results=max_results,
                backend=self.backend,
                region=self.region,
                safesearch=self.safesearch,
            )
        except DDGSException as exc:
            raise self._failure(exc, query, timeout_s) from None
        return [
            SearchHit(str(row.get("title", "")), str(row.get("body", "")), str(row.get("href", "")))
            for row in rows
            if isinstance(row, dict)
        ]

    def _instrument(self, client: Any, deadline: _http.Deadline) -> None:
        get_engines = getattr(client, "_get_engines", None)
        engines = get_engines("text", self.backend) if get_engines is not None else []
        usable = [e for e in engines if hasattr(getattr(e, "http_client", None), "client")]
        if not usable or len(usable) != len(engines):
            if self.base_url is not None:
                raise ConfigError("search: this ddgs version cannot be pointed at base_url")
            return
        for engine in usable:
            engine.request = self._checked_request(engine, deadline)

    def _rebase(self, url: str) -> str:
        if self.base_url is None:
            return url
        base, target = urlsplit(self.base_url), urlsplit(url)
        path = base.path.rstrip("/") + (target.path or "/")
        return urlunsplit((base.scheme, base.netloc, path, target.query, ""))

    def _checked_request(self, engine: Any, deadline: _http.Deadline) -> Any:
        from ddgs.exceptions import TimeoutException

        max_bytes = self.max_response_bytes

        def request(method: str, url: str, **kwargs: Any) -> str:
            url = self._rebase(url)
            host = _http.host_of(url)
            remaining = deadline.remaining()
            if remaining <= 0:
                raise TimeoutException(f"{engine.name}: timed out before asking {host}")
            try:
                response = engine.http_client.client.request(method, url, timeout=remaining, stream=True, **kwargs)
            except Exception as exc:  # primp's errors
                failure = _http.describe_network_error(exc, service=SERVICE, host=host, seconds=deadline.seconds)
                raise _EngineError(failure) from None
            with response:
                status = response.status_code
                if status in _THROTTLED:
                    raise _EngineError(
                        ToolError(f"{SERVICE}: rate limited by {host} (HTTP {status}); wait before searching again")
                    )
                if status != 200:
                    raise _EngineError(_http.status_error(status, service=SERVICE, host=host))
                declared = str(response.headers.get("content-length", ""))
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _EngineError(_http.response_too_large(service=SERVICE, host=host, max_bytes=max_bytes))
                body = bytearray()
                try:
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise _EngineError(
                                _http.response_too_large(service=SERVICE, host=host, max_bytes=max_bytes)
                            )
                except _EngineError:
                    raise
                except Exception as exc:  # the connection failed while reading
                    raise _EngineError(
                        _http.describe_network_error(exc, service=SERVICE, host=host, seconds=deadline.seconds)
                    ) from None
            return body.decode("utf-8", errors="replace")

        return request

    def _failure(self, exc: BaseException, query: str, timeout_s: float) -> ToolError:
        """The clearest one-line message for what DDGS raised (it wraps the last engine error)."""
        from ddgs.exceptions import RatelimitException, TimeoutException

        chain = [exc]
        while chain[-1].args and isinstance(chain[-1].args[0], BaseException) and len(chain) < 8:
            chain.append(chain[-1].args[0])
        for e in chain:
            if isinstance(e, _EngineError):
                return e.error
            if isinstance(e, RatelimitException):
                return ToolError(_http.one_line(str(e)))
        if any(isinstance(e, TimeoutException) for e in chain):
            return ToolError(f"{SERVICE}: no answer from {self._where()} within {timeout_s:.1f}s")
        if str(chain[-1]).strip().rstrip(".").lower() == "no results found":
            return ToolError(_http.one_line(f"{SERVICE}: no results for {query!r}; try other words"))
        cause = chain[-1]
        if cause.__cause__ is not None:
            where = self._where()
            return _http.describe_network_error(cause.__cause__, service=SERVICE, host=where, seconds=timeout_s)
        return ToolError(_http.one_line(f"{SERVICE}: unreadable answer from {self._where()} ({cause})"))


class _EngineError(Exception):
    """An engine request that failed, carrying the ToolError that says why (DDGS re-raises the last one)."""

    def __init__(self, error: ToolError) -> None:
        super().__init__(str(error))
        self.error = error


def format_hits(hits: Sequence[SearchHit], max_chars: int) -> str:
    """`title: snippet | title: snippet`, each snippet given a fair share of `max_chars`.

    A `|` inside a title or snippet ("Canberra | Britannica") becomes `/`, so the separator stays unambiguous.
    """
    share = max(40, max_chars // max(1, len(hits)))
    parts = []
    for hit in hits:
        title = _http.one_line(hit.title.replace("|", "/"), 120)
        snippet = _http.one_line(hit.snippet.replace("|", "/"), share)
        parts.append(f"{title}: {snippet}" if title and snippet else title or snippet)
    return _http.one_line(" | ".join(p for p in parts if p), max_chars)


def make_search_tool(
    timeout_s: float = 8.0,
    max_results: int = 3,
    max_chars: int = 600,
    *,
    backend: str = "auto",
    region: str = "us-en",
    safesearch: str = "moderate",
    base_url: str | None = None,
    proxy: str | None = None,
    max_response_bytes: int = _http.DEFAULT_MAX_RESPONSE_BYTES,
    client: SearchClient | None = None,
) -> Tool:
    """A `search` tool. Without `client`, a `DdgsClient(backend=..., region=..., ...)`.

    `backend` is ddgs's: "auto", or engine names like "duckduckgo" or "duckduckgo,mojeek".
    Every HTTP call ends within `timeout_s`; failures become one-line observations.
    """
    if max_results < 1 or max_chars < 40:
        raise ConfigError("search: max_results must be positive and max_chars at least 40")
    engine: SearchClient = client or DdgsClient(
        backend=backend,
        region=region,
        safesearch=safesearch,
        base_url=base_url,
        proxy=proxy,
        max_response_bytes=max_response_bytes,
    )
    budget = _http.client_budget(timeout_s)
    backstop = budget + (timeout_s - budget) / 2

    def run(query: str) -> str:
        query = query.strip()
        if not query:
            raise ToolError("search needs a query, e.g. search: capital of Australia")

        def work() -> Sequence[SearchHit]:
            try:
                return engine.search(query, max_results=max_results, timeout_s=budget)
            except (ToolError, ConfigError):
                raise
            except Exception as exc:  # a custom client's own failure
                raise ToolError(_http.one_line(f"{SERVICE} failed: {type(exc).__name__}: {exc}")) from None

        hits = run_with_time_limit(
            work, backstop, name=SERVICE, timeout_message=f"{SERVICE}: no answer within {budget:.1f}s"
        )
        hits = [h for h in hits[:max_results] if h.title.strip() or h.snippet.strip()]
        if not hits:
            raise ToolError(_http.one_line(f"{SERVICE}: no results for {query!r}; try other words"))
        return format_hits(hits, max_chars)

    return Tool(
        name="search",
        description="Search the web; returns the top results as 'title: snippet | title: snippet'.",
        func=run,
        example="capital of Australia",
        timeout_s=timeout_s,
    )
