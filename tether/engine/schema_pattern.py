"""A JSON Schema `pattern` (a regular expression) as a grammar node, for strings that must match it.

Why: a typed tool's string may carry a regex (pydantic's `pattern=`, an MCP server's schema), and a
grammar that ignored it would let a small model write a value that only fails validation one step
later. Regular expressions without assertions are regular languages, so most patterns translate
exactly: literals, classes (`[a-z]`, `[^,]`, `\\d`, `\\w`, `\\s`), `.`, groups (capturing, `(?:`,
named), alternation, the quantifiers `* + ? {m} {m,} {m,n}` (lazy ones too: same language), and the
anchors `^`/`$` (`\\A`, `\\Z`) at either end of an alternative. A pattern is searched, as JSON Schema
says, so an end without an anchor admits any characters there.

What cannot be a grammar (lookarounds, backreferences, word boundaries, inline flags) is refused with
a `SchemaError` naming the field, never dropped. Characters are narrowed, never widened: `.` and classes
never produce a newline, and inside a JSON string never a quote, backslash or control character (the
grammar may refuse a value the regex allows, but never admits one the regex refuses).
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.engine.gbnf import Alt, CharClass, Lit, Node, Repeat, Seq
from tether.errors import SchemaError

__all__ = ["pattern_node"]

_REFUSED = {
    "(?=": "lookahead (?=...)",
    "(?!": "negative lookahead (?!...)",
    "(?<=": "lookbehind (?<=...)",
    "(?<!": "negative lookbehind (?<!...)",
    "(?P=": "backreference (?P=...)",
    "(?#": "comment group (?#...)",
    "(?(": "conditional group (?(...)",
    "(?>": "atomic group (?>...)",
}
_CLASS_ESCAPES = {
    "d": (("0", "9"),),
    "w": (("0", "9"), ("A", "Z"), ("_", "_"), ("a", "z")),
    "s": ((" ", " "),),  # a tab, newline or other space would be a control character or a line break
}
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}


@dataclass(frozen=True)
class _Alphabet:
    """The characters a pattern may produce, and how a literal one is written: as itself in a plain
    line, JSON-escaped inside a JSON string."""

    json: bool

    @property
    def excluded(self) -> tuple[tuple[str, str], ...]:
        if self.json:
            return (("\x00", "\x1f"), ('"', '"'), ("\\", "\\"), ("\x7f", "\x7f"))
        return (("\n", "\n"),)

    def literal(self, ch: str) -> Node:
        if not self.json:
            return Lit(ch)
        named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\f": "\\f", "\b": "\\b"}
        if ch in named:
            return Lit(named[ch])
        return Lit(f"\\u{ord(ch):04x}") if ord(ch) < 0x20 or ord(ch) == 0x7F else Lit(ch)

    def any(self) -> Node:
        return CharClass(self.excluded, negated=True)

    def positive(self, ranges: list[tuple[str, str]]) -> Node | None:
        """A class of these ranges less the excluded characters (None when nothing is left)."""
        kept: list[tuple[str, str]] = []
        for lo, hi in ranges:
            pieces = [(lo, hi)]
            for x_lo, x_hi in self.excluded:
                pieces = [part for a, b in pieces for part in _minus(a, b, x_lo, x_hi)]
            kept.extend(pieces)
        return CharClass(tuple(sorted(set(kept)))) if kept else None

    def negative(self, ranges: list[tuple[str, str]]) -> Node:
        return CharClass(tuple(sorted({*ranges, *self.excluded})), negated=True)


def _minus(a: str, b: str, x_lo: str, x_hi: str) -> list[tuple[str, str]]:
    """The range a-b without x_lo-x_hi."""
    if x_hi < a or x_lo > b:
        return [(a, b)]
    out = []
    if a < x_lo:
        out.append((a, chr(ord(x_lo) - 1)))
    if x_hi < b:
        out.append((chr(ord(x_hi) + 1), b))
    return out


class _Reader:
    """Recursive descent over the pattern: alternation > sequence > quantified atom."""

    def __init__(self, pattern: str, alphabet: _Alphabet, path: str) -> None:
        self.text = pattern
        self.pos = 0
        self.alphabet = alphabet
        self.path = path

    def fail(self, problem: str) -> SchemaError:
        return SchemaError(f"{self.path}: {problem} cannot be expressed in a grammar", path=self.path)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def top(self) -> Node:
        """The whole pattern, each alternative searched: open at an end without its anchor."""
        options = []
        for anchored_start, body, anchored_end in self.alternatives(top=True):
            free = Repeat(self.alphabet.any(), 0, None)
            options.append(Seq((*(() if anchored_start else (free,)), body, *(() if anchored_end else (free,)))))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def alternatives(self, *, top: bool = False) -> list[tuple[bool, Node, bool]]:
        found = [self.sequence(top)]
        while self.peek() == "|":
            self.pos += 1
            found.append(self.sequence(top))
        return found

    def sequence(self, top: bool) -> tuple[bool, Node, bool]:
        start = end = False
        items: list[Node] = []
        while self.pos < len(self.text) and self.peek() not in "|)":
            if self.peek() == "^" or self.peek(2) == "\\A":
                if items or start or not top:
                    raise self.fail("an anchor ^ inside the pattern")
                self.pos += 1 if self.peek() == "^" else 2
                start = True
                continue
            if self.peek() == "$" or self.peek(2) in ("\\Z", "\\z"):
                self.pos += 1 if self.peek() == "$" else 2
                if not top or (self.pos < len(self.text) and self.peek() not in "|"):
                    raise self.fail("an anchor $ inside the pattern")
                end = True
                continue
            items.append(self.quantified())
        node: Node = items[0] if len(items) == 1 else Seq(tuple(items))
        return start, node, end

    def quantified(self) -> Node:
        atom = self.atom()
        while True:
            ch = self.peek()
            if ch in ("*", "+", "?"):
                self.pos += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
            elif ch == "{" and (bounds := self.braces()) is not None:
                lo, hi = bounds
            else:
                return atom
            if self.peek() == "?":
                self.pos += 1  # lazy: the same language
            elif self.peek() == "+":
                raise self.fail("a possessive quantifier")
            atom = Repeat(atom, lo, hi)

    def braces(self) -> tuple[int, int | None] | None:
        close = self.text.find("}", self.pos)
        body = self.text[self.pos + 1 : close] if close != -1 else ""
        lo_text, comma, hi_text = body.partition(",")
        if close == -1 or not (lo_text.isdigit() or (comma and not lo_text)) or not (hi_text.isdigit() or not hi_text):
            return None  # a literal `{`, as in Python
        self.pos = close + 1
        lo = int(lo_text or 0)
        hi = lo if not comma else (int(hi_text) if hi_text else None)
        if hi is not None and hi < lo:
            raise self.fail(f"the quantifier {{{body}}}, whose maximum is below its minimum,")
        return lo, hi

    def atom(self) -> Node:
        ch = self.peek()
        for opening, problem in _REFUSED.items():
            if self.text.startswith(opening, self.pos):
                raise self.fail(problem)
        if ch == "(":
            return self.group()
        if ch == "[":
            return self.char_class()
        if ch == ".":
            self.pos += 1
            return self.alphabet.any()
        if ch in "*+?":
            raise self.fail(f"a quantifier {ch} with nothing to repeat")
        if ch == "\\":
            return self.escape()
        self.pos += 1
        return self.alphabet.literal(ch)

    def group(self) -> Node:
        self.pos += 1
        if self.peek() == "?":
            if self.peek(2) == "?:":
                self.pos += 2
            elif self.peek(3) in ("?P<", "?<") or self.peek(2) == "?<":
                close = self.text.find(">", self.pos)
                if close == -1:
                    raise self.fail("an unclosed group name")
                self.pos = close + 1
            else:
                raise self.fail("an inline flag or extension (?...)")
        options = [body for _, body, _ in self.alternatives()]
        if self.peek() != ")":
            raise self.fail("an unbalanced parenthesis")
        self.pos += 1
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def escape(self) -> Node:
        code = self.peek(2)[1:]
        if not code:
            raise self.fail("a trailing backslash")
        self.pos += 2
        if code.lower() in _CLASS_ESCAPES:
            ranges = list(_CLASS_ESCAPES[code.lower()])
            if code.islower():
                node = self.alphabet.positive(ranges)
                assert node is not None
                return node
            return self.alphabet.negative(ranges)
        if (code.isdigit() and code != "0") or code in ("k", "g"):
            raise self.fail(f"backreference \\{code}")
        if code in ("b", "B"):
            raise self.fail(f"word boundary \\{code}")
        if code in ("x", "u"):
            return self.alphabet.literal(self.hex_char(code))
        return self.literal_char(_CHAR_ESCAPES.get(code, code))

    def hex_char(self, code: str) -> str:
        width = 2 if code == "x" else 4
        digits = self.text[self.pos : self.pos + width]
        if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.fail(f"a malformed escape \\{code}{digits}")
        self.pos += width
        return chr(int(digits, 16))

    def literal_char(self, ch: str) -> Node:
        if ch == "\n" and not self.alphabet.json:
            raise self.fail("a newline in a one-line input")
        return self.alphabet.literal(ch)

    def char_class(self) -> Node:
        self.pos += 1
        negated = self.peek() == "^"
        self.pos += negated
        ranges: list[tuple[str, str]] = []
        first = True
        while True:
            if self.pos >= len(self.text):
                raise self.fail("an unclosed character class")
            ch = self.peek()
            if ch == "]" and not first:
                self.pos += 1
                break
            first = False
            if ch == "[" and self.peek(2) in ("[:", "[=", "[."):
                raise self.fail("a POSIX class [:...:]")
            lo = self.class_char(ranges)
            if lo is None:
                continue
            if self.peek() == "-" and self.peek(2) != "-]" and self.text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                self.pos += 1
                hi = self.class_char(ranges)
                if hi is None or hi < lo:
                    raise self.fail("a malformed range in a character class")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        if negated:
            return self.alphabet.negative(ranges)
        node = self.alphabet.positive(ranges)
        if node is None:
            raise self.fail("a character class of only quotes, backslashes or control characters")
        return node

    def class_char(self, ranges: list[tuple[str, str]]) -> str | None:
        """One class member; a class escape (`\\d`) is added to `ranges` at once (returns None)."""
        ch = self.peek()
        self.pos += 1
        if ch != "\\":
            return ch
        code = self.peek()
        self.pos += 1
        if code in _CLASS_ESCAPES:
            ranges.extend(_CLASS_ESCAPES[code])
            return None
        if code in ("D", "W", "S"):
            raise self.fail(f"a negated class escape \\{code} inside [...]")
        if code in ("x", "u"):
            return self.hex_char(code)
        if code == "b":
            return "\b"
        return _CHAR_ESCAPES.get(code, code)


def pattern_node(pattern: str, *, json: bool, path: str) -> Node:
    """The node for the strings (as written inside a JSON string when `json`, else as a plain line)
    that `pattern` matches somewhere, as `re.search` does; SchemaError naming `path` when it cannot be."""
    reader = _Reader(pattern, _Alphabet(json), path)
    node = reader.top()
    if reader.pos != len(pattern):
        raise reader.fail("an unbalanced parenthesis")
    return node
