"""The grammar AST, and the two texts it emits: GBNF for the decoder, Lark for the validator.

Every grammar in tether is one of these ASTs, so the decoder and the validator never see a grammar
that was written twice, and the two cannot drift. The Lark side keeps GBNF's exact semantics:
literals become string terminals and every character class a one-character terminal, so no greedy
regex can reject a string that the decoder would have produced. Each grammar has one Lark parser,
built once and shared by everything that validates against it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import lark

from tether.errors import GrammarError

__all__ = [
    "LARK_PRELUDE", "Alt", "AnyChar", "CharClass", "Grammar", "Lit", "Node", "Ref", "Repeat", "Seq", "either_case",
]  # fmt: skip


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class CharClass:
    ranges: tuple[tuple[str, str], ...]
    negated: bool = False

    @classmethod
    def of(cls, chars: Iterable[str], *, negated: bool = False) -> CharClass:
        """The class of these single characters (or of every other one, `negated`), in sorted order."""
        return cls(tuple((c, c) for c in sorted(set(chars))), negated)


@dataclass(frozen=True)
class AnyChar:
    pass


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    min: int
    max: int | None  # None: unbounded


Node = Lit | CharClass | AnyChar | Ref | Seq | Alt | Repeat


def either_case(ch: str) -> Node:
    """One character in either case: a class of its two cases, or the character itself if it has one."""
    cases = {ch.lower(), ch.upper()}
    return Lit(ch) if len(cases) == 1 else CharClass.of(cases)


_NAME = re.compile(r"[a-zA-Z0-9-]+\Z")  # llama.cpp's rule-name alphabet


@dataclass(frozen=True)
class Grammar:
    """Named rules plus the start rule; immutable, composable, and emits both dialects."""

    rules: dict[str, Node] = field(hash=False)
    start: str = "root"

    def __post_init__(self) -> None:
        for name in self.rules:
            if not _NAME.match(name):
                raise GrammarError(f"rule name {name!r} must use only letters, digits and '-'")
        if self.start not in self.rules:
            raise GrammarError(f"grammar has no start rule {self.start!r}")
        for name, node in self.rules.items():
            for ref in _refs(node):
                if ref not in self.rules:
                    raise GrammarError(f"rule {name!r} refers to undefined rule {ref!r}")
        lark_names: dict[str, str] = {}
        for name in self.rules:
            clash = lark_names.setdefault(_lark_name(name), name)
            if clash != name:
                raise GrammarError(f"rule names {clash!r} and {name!r} differ only in case")

    def prefixed(self, prefix: str) -> Grammar:
        """The same grammar with every rule renamed `prefix-name`, for safe composition."""
        rename = {name: f"{prefix}-{name}" for name in self.rules}
        return Grammar(
            {rename[name]: _rename(node, rename) for name, node in self.rules.items()},
            rename[self.start],
        )

    def to_gbnf(self) -> str:
        order = [self.start, *(n for n in self.rules if n != self.start)]
        return "".join(f"{name} ::= {_gbnf(self.rules[name], top=True)}\n" for name in order)

    def to_lark(self) -> str:
        order = [self.start, *(n for n in self.rules if n != self.start)]
        emitter = _LarkEmitter()
        text = "".join(f"{_lark_name(n)}: {emitter.emit(self.rules[n], top=True)}\n" for n in order)
        return text + emitter.rules()

    @property
    def lark_start(self) -> str:
        return _lark_name(self.start)

    def lark_rule(self, name: str) -> str:
        """The name rule `name` has in the Lark text (where parse trees and `from_lark` know it)."""
        return _lark_name(name)

    @cached_property
    def lark_source(self) -> str:
        """The whole Lark text: the emitted rules and the prelude they rely on."""
        return LARK_PRELUDE + self.to_lark()

    @cached_property
    def parser(self) -> lark.Lark:
        """The validator's parser, shared by every grammar with the same Lark text (building one is slow)."""
        return _lark_parser(self.lark_source, self.lark_start)

    def accepts(self, text: str) -> bool:
        """Whether `text` is in the language (the validator's answer)."""
        try:
            self.parser.parse(text)
        except lark.LarkError:
            return False
        return True


def _refs(node: Node) -> set[str]:
    match node:
        case Ref(name):
            return {name}
        case Seq(items) | Alt(items):
            return set().union(*map(_refs, items)) if items else set()
        case Repeat(item, _, _):
            return _refs(item)
    return set()


def _rename(node: Node, rename: dict[str, str]) -> Node:
    match node:
        case Ref(name):
            return Ref(rename[name])
        case Seq(items):
            return Seq(tuple(_rename(i, rename) for i in items))
        case Alt(options):
            return Alt(tuple(_rename(o, rename) for o in options))
        case Repeat(item, lo, hi):
            return Repeat(_rename(item, rename), lo, hi)
    return node


# ---------------------------------------------------------------- emitting GBNF


def _gbnf_char(ch: str, special: str) -> str:
    if ch == "^" and "^" in special:
        return "\\x5E"  # llama.cpp knows no `\^` escape
    if ch in special or ch == "\\":
        return "\\" + ch
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\x{ord(ch):02X}"
    return ch


def _gbnf(node: Node, top: bool = False) -> str:
    match node:
        case Lit(text):
            return '"' + "".join(_gbnf_char(c, '"') for c in text) + '"'
        case CharClass(ranges, negated):
            body = "".join(_gbnf_char(a, "]^-[") + ("" if a == b else "-" + _gbnf_char(b, "]^-[")) for a, b in ranges)
            return f"[{'^' if negated else ''}{body}]"
        case AnyChar():
            return "."
        case Ref(name):
            return name
        case Seq(items):
            if not items:
                return '""'
            text = " ".join(_gbnf(i) for i in items)
            return text if top or len(items) == 1 else f"({text})"
        case Alt(options):
            text = " | ".join(_gbnf(o, top=True) for o in options)
            return text if top else f"({text})"
        case Repeat(item, lo, hi):
            inner = _gbnf(item)
            if isinstance(item, Repeat):
                inner = f"({inner})"
            return inner + quantifier(lo, hi)
    raise TypeError(node)


def quantifier(lo: int, hi: int | None) -> str:
    """A repetition bound as GBNF writes it: `*`, `+`, `?`, `{n}`, `{n,}` or `{n,m}`."""
    known = {(0, None): "*", (1, None): "+", (0, 1): "?"}
    if (lo, hi) in known:
        return known[(lo, hi)]
    if hi is None:
        return f"{{{lo},}}"
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


# ---------------------------------------------------------------- emitting Lark


def _lark_name(name: str) -> str:
    return "r_" + name.lower().replace("-", "_")


def _regex_char(ch: str) -> str:
    if ch.isalnum() or ch in " _":
        return ch
    if ch == "/":
        return "\\/"
    if 0x21 <= ord(ch) <= 0x7E:
        return "\\" + ch  # Lark would turn a \u escape of punctuation back into a bare metachar
    if ord(ch) > 0xFFFF:
        return f"\\U{ord(ch):08x}"
    return f"\\u{ord(ch):04x}"


def _lark_literal(text: str) -> str:
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    body = "".join(named.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in text)
    return f'"{body}"'


class _LarkEmitter:
    """Lark text for AST nodes, plus the helper rules that bounded repetitions need.

    Lark expands `X ~ lo..hi` (and every `X?` in a rule) by enumerating alternatives, so nested
    bounded repeats grow multiplicatively. Here each repetition becomes its own helper rule built
    by halving (`X{0,5}` -> `X? P{0,2}` with `P: X X`), O(log n) rules of at most four alternatives
    each. Helper names start with `_`, so Lark inlines them and the parse tree keeps its shape.
    """

    def __init__(self) -> None:
        self.helpers: dict[str, str] = {}  # body -> name

    def rules(self) -> str:
        return "".join(f"{name}: {body}\n" for body, name in self.helpers.items())

    def _helper(self, body: str) -> str:
        name = self.helpers.get(body)
        if name is None:
            name = self.helpers[body] = f"_rep{len(self.helpers)}"
        return name

    def emit(self, node: Node, top: bool = False) -> str:
        match node:
            case Lit(text):
                return _lark_literal(text) if text else "_empty"
            case CharClass(ranges, negated):
                body = "".join(_regex_char(a) + ("" if a == b else "-" + _regex_char(b)) for a, b in ranges)
                return f"/[{'^' if negated else ''}{body}]/s"
            case AnyChar():
                return r"/[\s\S]/"
            case Ref(name):
                return _lark_name(name)
            case Seq(items):
                parts = [self.emit(i) for i in items if i != Lit("")]
                if not parts:
                    return "_empty"
                text = " ".join(parts)
                return text if top or len(parts) == 1 else f"({text})"
            case Alt(options):
                text = " | ".join(self.emit(o, top=True) for o in options)
                return text if top else f"({text})"
            case Repeat(item, lo, hi):
                return self._repeat(item, lo, hi)
        raise TypeError(node)

    def _repeat(self, item: Node, lo: int, hi: int | None) -> str:
        if hi == 0:
            return "_empty"
        symbol = self.emit(item, top=True)
        if not isinstance(item, (Lit, CharClass, AnyChar, Ref, Repeat)):
            symbol = self._helper(symbol)  # one symbol, so that `X X` below means two of it
        parts = self._times(symbol, lo)
        if hi is None:
            parts.append(f"{symbol}*")
        elif hi > lo:
            parts.append(self._up_to(symbol, hi - lo))
        return self._helper(" ".join(parts))

    def _times(self, symbol: str, n: int) -> list[str]:
        """Exactly n of `symbol`, as symbols for 1, 2, 4, ... of it (binary)."""
        parts = []
        while n:
            if n & 1:
                parts.append(symbol)
            n >>= 1
            if n:
                symbol = self._helper(f"{symbol} {symbol}")
        return parts

    def _up_to(self, symbol: str, n: int) -> str:
        """0 to n (n >= 1) of `symbol`: one way to split each count, so no extra ambiguity."""
        if n == 1:
            return f"{symbol}?"
        if n % 2:  # 2k+1: one optional, then 0..k pairs
            return self._helper(f"{symbol}? {self._up_to(self._helper(f'{symbol} {symbol}'), n // 2)}")
        return self._helper(f"({symbol} {self._up_to(symbol, n - 1)})?")  # 2k: none, or one then 0..2k-1


LARK_PRELUDE = "_empty:\n"


@lru_cache(maxsize=64)
def _lark_parser(source: str, start: str) -> lark.Lark:
    """One parser for every use: positions for the step validator's spans, every token kept for the
    calculator's operators (neither changes which texts parse)."""
    return lark.Lark(
        source,
        start=start,
        parser="earley",
        lexer="dynamic",
        ambiguity="resolve",
        propagate_positions=True,
        keep_all_tokens=True,
    )
