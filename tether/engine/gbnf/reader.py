"""Reading GBNF text (llama.cpp's grammar format) into the grammar AST, with errors that say where."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import lark

from tether.engine.gbnf.nodes import Alt, AnyChar, CharClass, Grammar, Lit, Node, Ref, Repeat, Seq
from tether.engine.gbnf.problems import syntax_problem
from tether.errors import GrammarError

__all__ = ["load_grammar_source", "parse_gbnf", "parse_gbnf_rules"]

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
        problem = syntax_problem(source, exc)
        raise GrammarError(
            f"malformed GBNF at {problem.where()}:\n{problem.context()}", line=problem.line, column=problem.column
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


def load_grammar_source(name: str) -> str:
    """The text of a grammar shipped in `tether/grammars/NAME.gbnf`."""
    return resources.files("tether.grammars").joinpath(f"{name}.gbnf").read_text("utf-8")
