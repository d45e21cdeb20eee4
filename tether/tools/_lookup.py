"""ReAct's `lookup`, shared by the online and the offline encyclopedia tools."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["LookupCursor", "OpenPage"]

P = TypeVar("P")


@dataclass
class LookupCursor:
    """Successive sentences of one page containing a keyword: the same keyword again gives the next."""

    keyword: str = ""
    matches: list[str] = field(default_factory=list)
    shown: int = 0

    def next(self, title: str, sentences: Sequence[str], keyword: str, fold: Callable[[str], str]) -> str:
        needle = fold(keyword)
        if needle != self.keyword:
            self.keyword, self.matches, self.shown = needle, [s for s in sentences if needle in fold(s)], 0
        if not self.matches:
            return f"No sentence of {title!r} contains {keyword!r}."
        if self.shown >= len(self.matches):
            return f"No more results for {keyword!r} in {title!r}."
        self.shown += 1
        return f"(Result {self.shown}/{len(self.matches)}) {self.matches[self.shown - 1]}"


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
