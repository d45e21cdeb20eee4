"""GBNF, parsed into one small AST that emits both GBNF (for the decoder) and Lark (for the validator).

This module is the single source of truth: the decoder and the validator never see a grammar that
was written twice, so the two cannot drift. The Lark side keeps GBNF's exact semantics: literals
become string terminals and every character class a one-character terminal, so no greedy regex
can reject a string that the decoder would have produced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import lark

from tether.errors import GrammarError

__all__ = [
    "LARK_PRELUDE",
    "LLAMA_MAX_REPETITIONS",
    "Alt",
    "AnyChar",
    "CharClass",
    "Grammar",
    "Lit",
    "Node",
    "Ref",
    "Repeat",
    "Seq",
    "check_llama_repetitions",
    "describe_terminals",
    "error_location",
    "llama_cpp_accepts",
    "load_grammar_source",
    "may_produce",
    "nested_repeat_size",
    "parse_gbnf",
    "parse_gbnf_rules",
]


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class CharClass:
    ranges: tuple[tuple[str, str], ...]
    negated: bool = False


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

    def merged(self, other: Grammar, **extra: Node) -> Grammar:
        """This grammar with the rules of `other` and `extra` added; names must not collide."""
        rules = dict(self.rules)
        for name, node in [*other.rules.items(), *extra.items()]:
            if name in rules:
                raise GrammarError(f"rule {name!r} is defined twice")
            rules[name] = node
        return Grammar(rules, self.start)

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
            return inner + _quantifier(lo, hi)
    raise TypeError(node)


def _quantifier(lo: int, hi: int | None) -> str:
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


# ---------------------------------------------------------------- parsing GBNF

_GBNF_SYNTAX = r"""
grammar: rule*
rule: NAME "::=" alternation
alternation: sequence ("|" sequence)*
sequence: repetition*
repetition: atom QUANT?
?atom: STRING -> literal
     | CLASS -> charclass
     | "." -> any
     | NAME -> ref
     | "(" alternation ")"
QUANT: "*" | "+" | "?" | /\{[ \t]*[0-9]+[ \t]*(,[ \t]*[0-9]*[ \t]*)?\}/
NAME: /[a-zA-Z0-9-]+/
STRING: /"(\\.|[^"\\\n])*"/
CLASS: /\[(\\.|[^\]\\\n])*\]/
COMMENT: /#[^\n]*/
%ignore /[ \t\r\n]+/
%ignore COMMENT
"""


@cache
def _gbnf_parser() -> lark.Lark:
    return lark.Lark(_GBNF_SYNTAX, start="grammar", parser="earley", lexer="dynamic")


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "^": "^"}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)


def _at(token: lark.Token, message: str) -> GrammarError:
    """A GrammarError for `token`'s text, naming where it starts."""
    return GrammarError(f"{message} at line {token.line}, column {token.column}", line=token.line, column=token.column)


def _unescaped(token: lark.Token, body: str) -> list[tuple[str, bool]]:
    """Characters of a literal/class body, each flagged True when it was escaped."""
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(body):
        m = _ESCAPE_RE.match(body, i)
        if m:
            code = m.group(1)
            if code[0] in "xuU" and len(code) > 1:
                out.append((chr(int(code[1:], 16)), True))
            elif code in _ESCAPES:
                out.append((_ESCAPES[code], True))
            else:
                raise _at(token, f"unknown escape \\{code} in {token}")
            i = m.end()
        else:
            out.append((body[i], False))
            i += 1
    return out


def _char_class(token: lark.Token) -> CharClass:
    chars = _unescaped(token, token[1:-1])
    negated = bool(chars) and chars[0] == ("^", False)
    if negated:
        chars = chars[1:]
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == ("-", False):
            lo, hi = chars[i][0], chars[i + 2][0]
            if lo > hi:
                raise _at(token, f"empty range {lo!r}-{hi!r} in character class {token}")
            ranges.append((lo, hi))
            i += 3
        else:
            ranges.append((chars[i][0], chars[i][0]))
            i += 1
    if not ranges:
        raise _at(token, f"empty character class {token}")
    return CharClass(tuple(ranges), negated)


def _quant(token: lark.Token) -> tuple[int, int | None]:
    if token in ("*", "+", "?"):
        return {"*": (0, None), "+": (1, None), "?": (0, 1)}[token]
    body = token.strip("{} \t").replace(" ", "").replace("\t", "")
    if "," not in body:
        return int(body), int(body)
    lo, hi = body.split(",")
    if hi and int(hi) < int(lo):
        raise _at(token, f"repetition {token} has max below min")
    return int(lo), (int(hi) if hi else None)


class _ToAst(lark.Transformer[lark.Token, Node]):
    """Builds the AST, recording where each rule is first referred to (for errors that say where)."""

    def __init__(self) -> None:
        super().__init__()
        self.referred_at: dict[str, lark.Token] = {}

    def literal(self, items: list[lark.Token]) -> Node:
        return Lit("".join(c for c, _ in _unescaped(items[0], items[0][1:-1])))

    def charclass(self, items: list[lark.Token]) -> Node:
        return _char_class(items[0])

    def any(self, items: list[lark.Token]) -> Node:
        return AnyChar()

    def ref(self, items: list[lark.Token]) -> Node:
        self.referred_at.setdefault(str(items[0]), items[0])
        return Ref(str(items[0]))

    def repetition(self, items: list[object]) -> Node:
        node = items[0]
        assert not isinstance(node, lark.Token)
        if len(items) == 1:
            return node  # type: ignore[return-value]
        assert isinstance(items[1], lark.Token)
        lo, hi = _quant(items[1])
        return Repeat(node, lo, hi)  # type: ignore[arg-type]

    def sequence(self, items: list[Node]) -> Node:
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def alternation(self, items: list[Node]) -> Node:
        return items[0] if len(items) == 1 else Alt(tuple(items))

    def rule(self, items: list[object]) -> tuple[lark.Token, Node]:
        return items[0], items[1]  # type: ignore[return-value]

    def grammar(self, items: list[tuple[lark.Token, Node]]) -> dict[str, Node]:
        rules: dict[str, Node] = {}
        for name, node in items:
            if name in rules:
                raise _at(name, f"rule {str(name)!r} is defined twice")
            rules[str(name)] = node
        return rules


def parse_gbnf(source: str, start: str = "root") -> Grammar:
    """Parse GBNF text; a malformed source raises GrammarError naming line and column."""
    rules, referred_at = _parse(source)
    for name, token in referred_at.items():
        if name not in rules:
            raise _at(token, f"reference to undefined rule {name!r}")
    return Grammar(rules, start)


def parse_gbnf_rules(source: str) -> dict[str, Node]:
    """The rules of a GBNF source, not yet checked as a whole (templates may leave holes)."""
    return _parse(source)[0]


def _parse(source: str) -> tuple[dict[str, Node], dict[str, lark.Token]]:
    try:
        tree = _gbnf_parser().parse(source)
    except lark.UnexpectedInput as exc:
        line, column, position = error_location(source, exc)
        last_line = source[source.rfind("\n", 0, position) + 1 : position]
        context = (
            exc.get_context(source).rstrip("\n")
            if position < len(source)
            else last_line + "\n" + " " * len(last_line) + "^"
        )
        raise GrammarError(
            f"malformed GBNF at line {line}, column {column}:\n{context}", line=line, column=column
        ) from None
    to_ast = _ToAst()
    try:
        rules: dict[str, Node] = to_ast.transform(tree)  # type: ignore[assignment]
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, GrammarError):
            raise exc.orig_exc from None
        raise
    if not rules:
        line, column = source.count("\n") + 1, len(source) - source.rfind("\n")
        raise GrammarError(f"GBNF source defines no rules (at line {line}, column {column})", line=line, column=column)
    return rules, to_ast.referred_at


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


def load_grammar_source(name: str) -> str:
    """The text of a grammar shipped in `tether/grammars/NAME.gbnf`."""
    return resources.files("tether.grammars").joinpath(f"{name}.gbnf").read_text("utf-8")


LLAMA_MAX_REPETITIONS = 2000
"""llama.cpp's MAX_REPETITION_THRESHOLD: it refuses a larger minimum and reads a larger maximum as no maximum."""


def check_llama_repetitions(grammar: Grammar) -> None:
    """GrammarError naming the rule for a repetition bound llama.cpp refuses, or silently makes unbounded
    (which would let the decoder write more than the validator accepts)."""
    for name, node in grammar.rules.items():
        for lo, hi in _bounds(node):
            shown = _quantifier(lo, hi)
            if lo > LLAMA_MAX_REPETITIONS:
                raise GrammarError(
                    f"rule {name!r}: repetition {shown} needs {lo} repetitions, more than llama.cpp allows "
                    f"({LLAMA_MAX_REPETITIONS}; 'number of repetitions exceeds sane defaults')"
                )
            if hi is not None and hi > LLAMA_MAX_REPETITIONS:
                raise GrammarError(
                    f"rule {name!r}: repetition {shown} has a maximum above {LLAMA_MAX_REPETITIONS}, which llama.cpp "
                    "reads as no maximum; write * (or a smaller bound)"
                )


def _bounds(node: Node) -> Iterable[tuple[int, int | None]]:
    match node:
        case Seq(items) | Alt(items):
            for item in items:
                yield from _bounds(item)
        case Repeat(item, lo, hi):
            yield lo, hi
            yield from _bounds(item)


def nested_repeat_size(grammar: Grammar) -> tuple[int, str]:
    """The largest product of the bounds of repetitions nested inside one another (through rule
    references, recursion counted once; 1 without nesting), and the rule where that nesting starts.

    Why: llama.cpp keeps one grammar stack per way of having read the text so far. A lone `X{0,199}`
    has one way (its count), but `(("a"{0,9}){0,9}){0,9}` has up to 9*9*9, and llama.cpp's per-token
    cost grows with that (seconds per token at 729). An unbounded `X*` is one recursive rule: it
    counts as 1 (as `X{3,}` counts 3).
    """
    memo: dict[str, tuple[int, int]] = {}

    def size(node: Node, active: frozenset[str]) -> tuple[int, int]:
        """(largest product over paths through >= 1 repetition, ... through >= 2), 0 where none."""
        match node:
            case Ref(name):
                if name in active:
                    return 0, 0
                if name not in memo:
                    memo[name] = size(grammar.rules[name], active | {name})
                return memo[name]
            case Seq(items) | Alt(items):
                sizes = [size(i, active) for i in items]
                return max((a for a, _ in sizes), default=0), max((b for _, b in sizes), default=0)
            case Repeat(item, lo, hi):
                bound = max(lo, 1) if hi is None else max(hi, 1)
                one, _ = size(item, active)
                return bound * max(one, 1), bound * one
        return 0, 0

    # Of the rules reaching the largest product, the last defined: usually the one that holds it.
    worst, _, rule = max((size(Ref(name), frozenset())[1], i, name) for i, name in enumerate(grammar.rules))
    return max(worst, 1), rule


def may_produce(grammar: Grammar, char: str) -> bool:
    """Whether some string of the language may contain `char`: any reachable literal or class that
    can produce it (an over-estimate only where a rule can never finish)."""
    seen: set[str] = set()
    todo: list[Node] = [Ref(grammar.start)]
    while todo:
        match todo.pop():
            case Lit(text) if char in text:
                return True
            case AnyChar():
                return True
            case CharClass(ranges, negated) if any(a <= char <= b for a, b in ranges) != negated:
                return True
            case Ref(name) if name not in seen:
                seen.add(name)
                todo.append(grammar.rules[name])
            case Seq(items) | Alt(items):
                todo.extend(items)
            case Repeat(item, _, hi) if hi != 0:
                todo.append(item)
    return False


def llama_cpp_accepts(gbnf: str) -> bool:
    """Whether llama.cpp's own GBNF parser takes `gbnf` (it refuses e.g. left recursion, which Lark allows).

    Builds a vocabulary-free grammar sampler, the only step that parses: `LlamaGrammar.from_string`
    merely stores the text, so a bad grammar would otherwise surface at the first decode.
    """
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True
