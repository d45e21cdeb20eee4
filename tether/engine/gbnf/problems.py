"""One reading of a Lark parse error: where the text left the grammar, what stood there, what would do.

The step validator, the calculator and the GBNF reader each tell someone (the model, the user) why a
text does not parse; they all read the error here, so each says the same line, column, character
and expected text for the same failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import lark

__all__ = ["SyntaxProblem", "describe_terminals", "error_location", "syntax_problem"]

_SHOWN_EXPECTED = 8  # terminals named in a message; the record keeps them all
_CONTEXT_CHARS = 40  # characters shown either side of the position in `context`


@dataclass(frozen=True)
class SyntaxProblem:
    """Where `text` left a grammar: 1-based line and column, 0-based position, and the terminals
    (as the text they match) that the grammar would have taken there."""

    text: str
    line: int
    column: int
    position: int
    expected: frozenset[str]

    @property
    def at_end(self) -> bool:
        """Whether the text ended where the grammar wanted more."""
        return self.position >= len(self.text)

    @property
    def found(self) -> str:
        """What stood at the position: a character's repr, or `end of text`."""
        return "end of text" if self.at_end else repr(self.text[self.position])

    def where(self, *, line: bool = True) -> str:
        """`line L, column C`, or `column C` where the caller's texts are single lines."""
        return f"line {self.line}, column {self.column}" if line else f"column {self.column}"

    def expected_text(self) -> str:
        """The first few expected terminals, sorted; `end of text` where the text should have stopped."""
        return ", ".join(sorted(self.expected)[:_SHOWN_EXPECTED]) or "end of text"

    def context(self) -> str:
        """The line around the position, with a caret under it."""
        start = self.text.rfind("\n", 0, self.position) + 1
        end = self.text.find("\n", self.position)
        before = self.text[max(start, self.position - _CONTEXT_CHARS) : self.position]
        after = self.text[self.position : min(len(self.text) if end < 0 else end, self.position + _CONTEXT_CHARS)]
        return f"{before}{after}\n{' ' * len(before.expandtabs())}^"

    def __str__(self) -> str:
        return f"at {self.where()}: found {self.found}, expected {self.expected_text()}"


def syntax_problem(text: str, exc: lark.UnexpectedInput, parser: lark.Lark | None = None) -> SyntaxProblem:
    """The problem Lark reported parsing `text`; `parser` names its terminals by what they match."""
    line, column, position = error_location(text, exc)
    names: Iterable[str] = getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ()
    expected = frozenset(describe_terminals(parser, names) if parser is not None else names)
    return SyntaxProblem(text, line, column, position, expected)


def error_location(text: str, exc: lark.UnexpectedInput) -> tuple[int, int, int]:
    """(line, column, offset) of a Lark error, also at the end of the text where Lark gives -1."""
    position = getattr(exc, "pos_in_stream", None)
    if position is None or exc.line == -1:
        position = len(text)
        return text.count("\n") + 1, len(text) - text.rfind("\n"), position
    return exc.line, exc.column, position


def describe_terminals(parser: lark.Lark, names: Iterable[str]) -> list[str]:
    """Terminal names as the text they match: '"answer: "' rather than '__ANON_7'."""
    shown = set()
    for name in names:
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            shown.add(name)
            continue
        value = pattern.value
        shown.add(repr(value) if pattern.type == "str" else "/" + value.encode("unicode_escape").decode() + "/")
    return sorted(shown)
