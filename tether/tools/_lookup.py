"""ReAct's `lookup`, shared by the online and the offline encyclopedia tools."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["LookupCursor"]


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
