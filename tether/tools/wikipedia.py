"""The `wikipedia` and `lookup` tools of the ReAct paper, on the `wikipedia` package (1.4.0).

    wikipedia: France      -> the first sentences of the page "France"
    wikipedia: Mercury     -> "'Mercury' is ambiguous; it may refer to: Mercury (planet); ..."
    lookup: population     -> "(Result 1/4) <the next sentence of that page containing 'population'>"

How the package is made safe to call from an agent. `wikipedia` 1.4.0 sends every request as
`requests.get(API_URL, params=..., headers=...)`: module-level URL (plain http), no timeout, no
size limit, and it memoises `search`/`summary` process-wide keyed by arguments only. So, once, the
module-local name `wikipedia.wikipedia.requests` is replaced by a small stand-in whose `get`,
inside one of our tool calls, sends the request to *that tool's* API URL (https by default,
any URL in tests) through `_http.fetch_bytes`: every socket wait bounded by the call's deadline,
the body capped, non-200 statuses and malformed JSON turned into one-line ToolErrors. Outside our
tool calls it forwards to `requests.get` unchanged except for a default timeout. The package's
globals (`API_URL`, `set_lang`) and its caches are never used, so tools for several languages or
servers can live in one process, and tests need no cache clearing. The same one-time setup makes
the package parse disambiguation pages with "html.parser" instead of letting BeautifulSoup guess
(which warns, and whose answer depends on what else is installed): a module-level replacement
rather than `warnings.catch_warnings`, which is not thread-safe and tools run in threads.

The page lookups (`WikipediaPage`, `search`) are the package's own; the whole call also runs
under `run_with_time_limit`, so a DNS lookup that blocks cannot stall it either.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from tether.engine.run_state import RunLocal
from tether.engine.tool import Tool, run_with_time_limit
from tether.errors import ConfigError, ToolError
from tether.tools import _http
from tether.tools._encyclopedia import (
    LOOKUP_NEEDS_KEYWORD,
    MAX_SIMILAR,
    NO_PAGE_OPEN,
    SEARCH_NEEDS_TEXT,
    OpenPage,
    ambiguous,
    nothing_matches,
    page_text,
    similar,
)

__all__ = ["make_wikipedia_tool", "make_wikipedia_tools", "wikipedia_api_url"]

SERVICE = "wikipedia"
_LANG = re.compile(r"[a-z][a-z0-9-]{1,15}\Z")
_BAD_TITLE_CHARS = set("#<>[]|{}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"\s*=+[^=].*=+\s*\Z")
USER_AGENT = "tether/0.1 (grammar-constrained ReAct agent; python wikipedia/1.4.0)"


def wikipedia_api_url(lang: str = "en") -> str:
    """The MediaWiki API of the Wikipedia in `lang` (https)."""
    return f"https://{lang}.wikipedia.org/w/api.php"


# --- the one-time adaptation of the `wikipedia` package -------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    """Where the requests of the current tool call go, and under what limits."""

    api_url: str
    user_agent: str
    deadline: _http.Deadline
    max_bytes: int


class _Routing(threading.local):
    route: _Route | None = None


_ROUTING = _Routing()
_INSTALL_LOCK = threading.Lock()
_installed = False


class _Reply:
    """What `wikipedia._wiki_request` needs of a response: `.json()`, here with its failures made clear."""

    def __init__(self, body: bytes, host: str) -> None:
        self._body = body
        self._host = host

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self._body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            raise ToolError(f"{SERVICE}: malformed answer from {self._host} (not JSON)") from None
        if not isinstance(data, dict):
            raise ToolError(f"{SERVICE}: malformed answer from {self._host} (not a MediaWiki API response)")
        error = data.get("error")
        if error is not None:
            detail = f"{error.get('code', '?')}: {error.get('info', '')}" if isinstance(error, dict) else str(error)
            raise ToolError(_http.one_line(f"{SERVICE}: the API at {self._host} refused the request ({detail})"))
        return data


class _RequestsStandIn:
    """Replaces the `requests` module inside `wikipedia.wikipedia` (see the module docstring)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        route = _ROUTING.route
        if route is None:  # someone else using the package: as before, but never without a timeout
            kwargs.setdefault("timeout", 10.0)
            return self._real.get(url, params=params, headers=headers, **kwargs)
        body = _http.fetch_bytes(
            route.api_url,
            params=params,
            headers={"User-Agent": route.user_agent, "Accept": "application/json"},
            deadline=route.deadline,
            max_bytes=route.max_bytes,
            service=SERVICE,
        )
        return _Reply(body, _http.host_of(route.api_url))


def _package() -> Any:
    """The `wikipedia.wikipedia` module, adapted once. Called when a tool is built, so a missing
    package is a ConfigError for the user then, never an observation for the model."""
    global _installed
    try:
        import wikipedia.wikipedia as wp  # type: ignore[import-untyped]
        from bs4 import BeautifulSoup
    except ImportError:
        raise ConfigError("the wikipedia tool needs the 'wikipedia' package: pip install 'tether[web]'") from None
    with _INSTALL_LOCK:
        if not _installed:

            def soup(markup: str, *args: Any, **kwargs: Any) -> Any:
                return BeautifulSoup(markup, "html.parser")

            if not isinstance(wp.requests, _RequestsStandIn):
                wp.requests = _RequestsStandIn(wp.requests)
            wp.BeautifulSoup = soup
            _installed = True
    return wp


# --- text helpers ------------------------------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    """Sentences of plain text, paragraph by paragraph, skipping section headings."""
    groups: list[list[str]] = []  # each sentence's pieces, joined once at the end (linear in the text)
    for paragraph in text.splitlines():
        if not paragraph.strip() or _HEADING.match(paragraph):
            continue
        for piece in _SENTENCE_END.split(paragraph.strip()):
            if groups and piece[:1].islower():  # "U.S. state": not a sentence break
                groups[-1].append(piece)
            else:
                groups.append([piece])
    return [" ".join(group) for group in groups]


# --- the tools -----------------------------------------------------------------------------------------------------


@dataclass
class _Page:
    title: str
    page: Any  # wikipedia.WikipediaPage
    sentences: list[str] | None = None


class WikipediaSession:
    """What the `wikipedia` and `lookup` tools share: settings, and per agent run the last page and the
    lookup cursor (a new run starts with no page open)."""

    def __init__(
        self,
        *,
        api_url: str | None,
        lang: str,
        timeout_s: float,
        max_chars: int,
        max_sentences: int,
        max_response_bytes: int,
        user_agent: str,
    ) -> None:
        if not _LANG.match(lang):
            raise ConfigError(f"wikipedia: {lang!r} is not a Wikipedia language code (like 'en', 'fr', 'zh-yue')")
        if max_chars < 40 or max_sentences < 1 or max_response_bytes < 1:
            raise ConfigError("wikipedia: max_chars must be at least 40, max_sentences and max_response_bytes positive")
        self.lang = lang
        self.api_url = (api_url or wikipedia_api_url("{lang}")).replace("{lang}", lang)
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.max_sentences = max_sentences
        self.max_response_bytes = max_response_bytes
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._open: RunLocal[OpenPage[_Page]] = RunLocal(OpenPage)

    # Each tool call runs its network work in a worker thread under a deadline below the tool's limit.

    def _run(self, work: Any) -> Any:
        budget = _http.client_budget(self.timeout_s)
        host = _http.host_of(self.api_url)
        wp = _package()

        def routed() -> Any:
            _ROUTING.route = _Route(self.api_url, self.user_agent, _http.Deadline(budget), self.max_response_bytes)
            try:
                return work(wp)
            except ToolError:
                raise
            except (wp.HTTPTimeoutError, wp.WikipediaException) as exc:
                raise ToolError(_http.one_line(f"{SERVICE}: {exc}")) from None
            except (KeyError, IndexError, TypeError, AttributeError, ValueError, AssertionError):
                raise ToolError(f"{SERVICE}: unexpected answer from {host} (not a MediaWiki API response)") from None
            finally:
                _ROUTING.route = None

        backstop = budget + (self.timeout_s - budget) / 2
        message = f"{SERVICE}: no answer from {host} within {budget:.1f}s"
        return run_with_time_limit(routed, backstop, name=SERVICE, timeout_message=message)

    def search(self, query: str) -> str:
        """Observation for `wikipedia: <query>`; remembers the page found for `lookup`."""
        query = query.strip()
        if not query:
            raise ToolError(SEARCH_NEEDS_TEXT)
        bad = sorted(_BAD_TITLE_CHARS & set(query))
        if bad:
            raise ToolError(f"wikipedia: titles cannot contain {' '.join(bad)}; search a plain title")
        state = self._open.get()
        with self._lock:
            search = state.begin_search()
        observation, page = self._run(lambda wp: self._resolve(wp, query))
        with self._lock:
            state.opened(search, page)
        return observation  # type: ignore[no-any-return]

    def _resolve(self, wp: Any, query: str) -> tuple[str, _Page | None]:
        try:
            page = wp.WikipediaPage(query, redirect=True)
        except wp.DisambiguationError as exc:
            return self._ambiguous(exc), None
        except wp.PageError:
            titles: list[str] = wp.search.fn(query, results=MAX_SIMILAR)  # .fn: not the process-wide cache
            exact = next((t for t in titles if t.casefold() == query.casefold() and t != query), None)
            if exact is None:
                if not titles:
                    raise ToolError(nothing_matches(query, "on Wikipedia")) from None
                return similar(query, titles, self.max_chars), None
            try:
                page = wp.WikipediaPage(exact, redirect=True)
            except wp.DisambiguationError as exc:
                return self._ambiguous(exc), None
        sentences = _sentences(page.summary or "")
        if not sentences:
            raise ToolError(_http.one_line(f"wikipedia: page {page.title!r} has no text; try a related title"))
        titled = page.title.casefold() != query.casefold()  # name the page only if it is not the one asked for
        text = page_text(page.title, sentences, self.max_chars, self.max_sentences, titled=titled)
        return text, _Page(page.title, page)

    def _ambiguous(self, exc: Any) -> str:
        return ambiguous(exc.title, list(exc.options), self.max_chars)

    def lookup(self, keyword: str) -> str:
        """Observation for `lookup: <keyword>`: the next sentence of the last page containing it."""
        keyword = keyword.strip()
        if not keyword:
            raise ToolError(LOOKUP_NEEDS_KEYWORD)
        state = self._open.get()
        with self._lock:
            current = state.page
        if current is None:
            raise ToolError(NO_PAGE_OPEN)
        if current.sentences is None:
            content = self._run(lambda wp: current.page.content)
            current.sentences = _sentences(content or "")
        with self._lock:
            if state.page is not current:
                raise ToolError("lookup: the open page changed meanwhile; try again")
            return state.cursor.next(
                current.title, current.sentences, keyword, fold=str.casefold, max_chars=self.max_chars
            )


def make_wikipedia_tools(
    api_url: str | None = None,
    lang: str = "en",
    timeout_s: float = 8.0,
    max_chars: int = 600,
    *,
    max_sentences: int = 5,
    max_response_bytes: int = _http.DEFAULT_MAX_RESPONSE_BYTES,
    user_agent: str = USER_AGENT,
) -> tuple[Tool, Tool]:
    """A `wikipedia` tool and the `lookup` tool that searches the page it last opened.

    `api_url` is a MediaWiki API endpoint (`{lang}` in it is replaced by `lang`); by default
    https://<lang>.wikipedia.org/w/api.php. Every HTTP call ends within `timeout_s`. Without the
    `wikipedia` package, ConfigError here.
    """
    _package()
    session = WikipediaSession(
        api_url=api_url,
        lang=lang,
        timeout_s=timeout_s,
        max_chars=max_chars,
        max_sentences=max_sentences,
        max_response_bytes=max_response_bytes,
        user_agent=user_agent,
    )
    search_tool = Tool(
        name="wikipedia",
        description="Open the Wikipedia page with this title and return its first sentences, or similar titles.",
        func=session.search,
        example="France",
        timeout_s=timeout_s,
    )
    lookup_tool = Tool(
        name="lookup",
        description="Return the next sentence containing this keyword in the page wikipedia last opened.",
        func=session.lookup,
        example="population",
        timeout_s=timeout_s,
        repeatable=True,  # the same keyword again gives the next sentence
    )
    return search_tool, lookup_tool


def make_wikipedia_tool(
    api_url: str | None = None,
    lang: str = "en",
    timeout_s: float = 8.0,
    max_chars: int = 600,
    **options: Any,
) -> Tool:
    """The `wikipedia` tool alone (see `make_wikipedia_tools`)."""
    return make_wikipedia_tools(api_url, lang, timeout_s, max_chars, **options)[0]
