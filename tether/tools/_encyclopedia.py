"""What the encyclopedia tools say to the model, written once for the online `wikipedia` tool
(`tether.tools.wikipedia`) and the offline one (`tether.tools.corpus_tool`), so that both read the
same to the model by construction: the refusals, the page, ambiguous and similar-titles lines, and
ReAct's `lookup` (a cursor over the open page's sentences, kept per run in an `OpenPage`).

Every observation is one printable line, capped (`sanitise_observation`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tether.engine.prompt import sanitise_observation

__all__ = [
    "LOOKUP_NEEDS_KEYWORD",
    "MAX_OPTIONS",
    "MAX_SIMILAR",
    "NO_PAGE_OPEN",
    "SEARCH_NEEDS_TEXT",
    "LookupCursor",
    "OpenPage",
    "ambiguous",
    "closest_pages",
    "first_sentences",
    "nothing_matches",
    "page_text",
    "similar",
    "title_list",
]

MAX_OPTIONS = 8  # titles listed for an ambiguous name
MAX_SIMILAR = 5  # titles listed when nothing is named
TITLE_CHARS = 80  # each listed title is capped at this

SEARCH_NEEDS_TEXT = "wikipedia needs a page title or topic, e.g. wikipedia: France"
LOOKUP_NEEDS_KEYWORD = "lookup needs a keyword, e.g. lookup: population"
NO_PAGE_OPEN = "lookup: no page is open; open one with wikipedia first"

P = TypeVar("P")


def nothing_matches(query: str, where: str) -> str:
    """The ToolError text for a search with no result at all; `where` is "on Wikipedia" or the like."""
    return sanitise_observation(f"wikipedia: nothing {where} matches {query!r}; try other words")


def title_list(titles: Iterable[str], limit: int) -> str:
    """Distinct non-empty titles, in order, each on one capped line, joined by "; "."""
    unique = list(dict.fromkeys(t.strip() for t in titles if t and t.strip()))
    return "; ".join(sanitise_observation(t, TITLE_CHARS) for t in unique[:limit])


def ambiguous(title: str, options: Iterable[str], max_chars: int) -> str:
    """The observation for a name that several pages share."""
    listed = title_list(options, MAX_OPTIONS)
    if not listed:
        return sanitise_observation(f"{title!r} is ambiguous; search a more specific title.", max_chars)
    return sanitise_observation(f"{title!r} is ambiguous; it may refer to: {listed}.", max_chars)


def similar(query: str, titles: Iterable[str], max_chars: int) -> str:
    """The observation for a query that names no page: the closest titles, to open by name."""
    return sanitise_observation(f"No page titled {query!r}. Similar: {title_list(titles, MAX_SIMILAR)}.", max_chars)


def closest_pages(query: str, snippets: Sequence[tuple[str, str, int]], max_chars: int) -> str:
    """The observation for a query that names no page, where the pages' text is at hand: each close
    page's title with its sentence nearest the query, so the evidence is read now rather than only
    named (a small model seldom opens a title it was merely offered). A snippet is (title, sentence,
    where in it the query's words begin); each gets an equal share of the line, and a long sentence
    is shown from a little before that point, cut with "…" either side."""
    head = f"No page titled {query!r}. Closest pages: "
    share = max(TITLE_CHARS, (max_chars - len(head)) // max(1, len(snippets)) - 3)
    entries = [_snippet(title, sentence, at, share) for title, sentence, at in snippets]
    return sanitise_observation(head + " | ".join(entries), max_chars)


def _snippet(title: str, sentence: str, at: int, limit: int) -> str:
    room = limit - len(title) - 2
    if len(sentence) > room and at > room // 4:
        start = sentence.rfind(" ", 0, at - room // 4) + 1  # a word boundary before the match
        sentence = "…" + sentence[start:]
    return sanitise_observation(f"{title}: {sentence}", limit)


def first_sentences(sentences: Sequence[str], max_chars: int, max_sentences: int, used: int = 0) -> str:
    """The page's first sentences, whole, that fit in `max_chars` after `used` characters (at least
    one, however long: the line's cap then cuts it)."""
    chosen: list[str] = []
    length = used
    for sentence in sentences[:max_sentences]:
        if chosen and length + 1 + len(sentence) > max_chars:
            break
        chosen.append(sentence)
        length += len(sentence) + 1
    return " ".join(chosen)


def page_text(title: str, sentences: Sequence[str], max_chars: int, max_sentences: int, *, titled: bool) -> str:
    """The observation for an opened page: its first sentences, after "Title: " when `titled`
    (the online tool names the page only when it is not the one asked for)."""
    prefix = f"{title}: " if titled else ""
    return sanitise_observation(prefix + first_sentences(sentences, max_chars, max_sentences, len(prefix)), max_chars)


@dataclass
class LookupCursor:
    """Successive sentences of one page containing a keyword: the same keyword again gives the next."""

    keyword: str = ""
    matches: list[str] = field(default_factory=list)
    shown: int = 0

    def next(
        self, title: str, sentences: Sequence[str], keyword: str, *, fold: Callable[[str], str], max_chars: int
    ) -> str:
        """The observation for `lookup: keyword` on the page `title`; `fold` makes the match
        insensitive to what the tool's pages vary in (case, and accents offline)."""
        needle = fold(keyword)
        if needle != self.keyword:
            self.keyword, self.matches, self.shown = needle, [s for s in sentences if needle in fold(s)], 0
        if not self.matches:
            text = f"No sentence of {title!r} contains {keyword!r}."
        elif self.shown >= len(self.matches):
            text = f"No more results for {keyword!r} in {title!r}."
        else:
            self.shown += 1
            text = f"(Result {self.shown}/{len(self.matches)}) {self.matches[self.shown - 1]}"
        return sanitise_observation(text, max_chars)


@dataclass
class OpenPage(Generic[P]):
    """What one run has open (kept in a RunLocal, so a new run starts with nothing open): the page
    `wikipedia` opened last, the `lookup` cursor over it, and a counter of searches, so that a search
    that timed out and finishes late cannot replace the page a newer search opened."""

    page: P | None = None
    cursor: LookupCursor = field(default_factory=LookupCursor)
    searches: int = 0

    def begin_search(self) -> int:
        """Close the page for a new search; returns the search's number for `opened`."""
        self.searches += 1
        self.page, self.cursor = None, LookupCursor()
        return self.searches

    def opened(self, search: int, page: P | None) -> None:
        """Record the page that search number `search` opened, unless a newer search began meanwhile."""
        if search == self.searches:
            self.page = page
