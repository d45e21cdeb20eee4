"""The GBNF front end: parse/emit round trips, Lark that means what the GBNF means, errors that say where.

The Lark side is judged against an independent oracle: for grammars without recursion, a Python
regular expression built here from the AST, matched with `re.fullmatch` (which backtracks, so it
decides membership exactly, unlike the greedy regex terminals the emitter must avoid).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from tether.engine.gbnf import (
    LARK_PRELUDE,
    Alt,
    AnyChar,
    CharClass,
    Grammar,
    Lit,
    Node,
    Ref,
    Repeat,
    Seq,
    load_grammar_source,
    parse_gbnf,
    syntax_problem,
)
from tether.engine.grammar import compose_step_grammar
from tether.engine.tool import Tool
from tether.errors import GrammarError, ToolRegistrationError

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- grammars used throughout

HAND_WRITTEN = {
    "greedy-trap": 'root ::= [a-z]* "x"',
    "escapes": r'root ::= "a\n\t\"\\b" "\x41\u00e9\U0001F600" [\x00-\x1F] "\r"',
    "classes": r"root ::= [^\]\-a-c] [\[\]] [-+] [a-] [+--] [0-9a-fA-F_] [à-ö]",
    "any-char": 'root ::= . "." .?',
    "quantifiers": 'root ::= ("ab" | "c")* ("d" "e")+ "f"? "g"{2} "h"{1,} "i"{1,3} ("j" | "k"){0,2} "l"{ 0 , 1 }',
    "nested-groups": 'root ::= ((("a" | "b") "c")? "d" | "e" ("f"+ | "g"))+',
    "empty-alternative": 'root ::= "" | "a" | "b" ""',
    "zero-repeat": 'root ::= "a"{0} "b" ("c"?)*',
    "multi-line": """
# A comma-separated list, one rule spread over lines.
root ::= item ("," ws item)*   # trailing comment
item ::=
    word
  | number     # either kind
word ::= [a-zA-Z]+
number ::= [0-9]+ ("." [0-9]+)?
ws ::= " "?
""",
    "hash-in-literal": 'root ::= "#not a comment" [#] # a comment',
    "recursive": 'root ::= "(" root ")" | "x" tail\ntail ::= ("," root)?',
}
NON_RECURSIVE = [name for name in HAND_WRITTEN if name != "recursive"]


def echo_tool() -> Tool:
    return Tool(name="echo", description="Echo.", func=lambda s: s, example="hi")


def calculate_tool() -> Tool:
    grammar = load_grammar_source("calculate")
    return Tool(name="calculate", description="Arithmetic.", func=lambda s: s, example="1 + 2", grammar=grammar)


@cache
def shipped_grammars() -> dict[str, Grammar]:
    step = compose_step_grammar([calculate_tool(), echo_tool()])
    answer_only = compose_step_grammar([calculate_tool(), echo_tool()], allowed=["answer"])
    return {
        "line": parse_gbnf(load_grammar_source("line")),
        "calculate": parse_gbnf(load_grammar_source("calculate")),
        "step": step.grammar,
        "step-answer-only": answer_only.grammar,
    }


@cache
def all_grammars() -> dict[str, Grammar]:
    return {**shipped_grammars(), **{name: parse_gbnf(source) for name, source in HAND_WRITTEN.items()}}


def lark_parser(grammar: Grammar) -> lark.Lark:
    """The validator's own parser for `grammar` (the one every caller shares)."""
    return grammar.parser


def lark_accepts(grammar: Grammar, text: str) -> bool:
    try:
        lark_parser(grammar).parse(text)
    except lark.UnexpectedInput:
        return False
    return True


# ---------------------------------------------------------------- the regex oracle


def _rx_char(ch: str) -> str:
    return f"\\U{ord(ch):08x}"


def oracle(grammar: Grammar) -> re.Pattern[str]:
    """A regex with exactly the grammar's language (grammars without recursion only)."""

    def rx(node: Node, active: frozenset[str]) -> str:
        match node:
            case Lit(text):
                return "".join(map(_rx_char, text))
            case CharClass(ranges, negated):
                body = "".join(_rx_char(a) + ("" if a == b else "-" + _rx_char(b)) for a, b in ranges)
                return f"[{'^' if negated else ''}{body}]"
            case AnyChar():
                return r"[\s\S]"
            case Ref(name):
                assert name not in active, "the oracle handles grammars without recursion only"
                return f"(?:{rx(grammar.rules[name], active | {name})})"
            case Seq(items):
                return "".join(f"(?:{rx(i, active)})" for i in items)
            case Alt(options):
                return "(?:" + "|".join(rx(o, active) for o in options) + ")"
            case Repeat(item, lo, hi):
                return f"(?:{rx(item, active)}){{{lo},{'' if hi is None else hi}}}"
        raise TypeError(node)

    return re.compile(rx(Ref(grammar.start), frozenset()))


def alphabet_of(grammar: Grammar) -> list[str]:
    """Characters that matter to the grammar, plus a few that do not."""
    chars = set("az09 \n\x00é😀")

    def walk(node: Node) -> Iterator[str]:
        match node:
            case Lit(text):
                yield from text
            case CharClass(ranges, _):
                for a, b in ranges:
                    yield from (a, b, chr(ord(a) - 1) if ord(a) else a, chr(min(ord(b) + 1, 0x10FFFF)))
            case Seq(items) | Alt(items):
                for i in items:
                    yield from walk(i)
            case Repeat(item, _, _):
                yield from walk(item)

    for node in grammar.rules.values():
        chars.update(walk(node))
    return sorted(chars)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", list(all_grammars()))
def test_parse_emit_round_trip(name: str) -> None:
    grammar = all_grammars()[name]
    assert parse_gbnf(grammar.to_gbnf(), grammar.start) == grammar
    assert parse_gbnf(grammar.to_gbnf(), grammar.start).to_gbnf() == grammar.to_gbnf()


def test_escapes_mean_what_they_say() -> None:
    grammar = parse_gbnf(HAND_WRITTEN["escapes"])
    assert grammar.rules["root"] == Seq(
        (Lit('a\n\t"\\b'), Lit("A\u00e9\U0001f600"), CharClass((("\x00", "\x1f"),)), Lit("\r"))
    )


def test_character_classes_mean_what_they_say() -> None:
    root = parse_gbnf(HAND_WRITTEN["classes"]).rules["root"]
    assert isinstance(root, Seq)
    assert root.items == (
        CharClass(((("]", "]")), ("-", "-"), ("a", "c")), negated=True),
        CharClass((("[", "["), ("]", "]"))),
        CharClass((("-", "-"), ("+", "+"))),
        CharClass((("a", "a"), ("-", "-"))),
        CharClass((("+", "-"),)),
        CharClass((("0", "9"), ("a", "f"), ("A", "F"), ("_", "_"))),
        CharClass((("à", "ö"),)),
    )


def test_quantifiers_mean_what_they_say() -> None:
    root = parse_gbnf(HAND_WRITTEN["quantifiers"]).rules["root"]
    assert isinstance(root, Seq)
    assert [(r.min, r.max) for r in root.items if isinstance(r, Repeat)] == [
        (0, None),
        (1, None),
        (0, 1),
        (2, 2),
        (1, None),
        (1, 3),
        (0, 2),
        (0, 1),
    ]


def test_comments_and_multi_line_rules() -> None:
    grammar = parse_gbnf(HAND_WRITTEN["multi-line"])
    assert list(grammar.rules) == ["root", "item", "word", "number", "ws"]
    assert grammar.rules["item"] == Alt((Ref("word"), Ref("number")))
    assert parse_gbnf(HAND_WRITTEN["hash-in-literal"]).rules["root"] == Seq(
        (Lit("#not a comment"), CharClass((("#", "#"),)))
    )


# ---------------------------------------------------------------- random grammars

_CHARS = st.sampled_from(list('ab-^]["\\\n.é😀 \x01\x7f'))
# Class endpoints span few code points: Hypothesis enumerates a range to draw from it.
_CLASS_CHARS = st.sampled_from(list('ab-^]["\\\n.é \x01\x7f'))


def _class(pairs: list[tuple[str, str]], negated: bool) -> CharClass:
    return CharClass(tuple((min(a, b), max(a, b)) for a, b in pairs), negated)


def _repeat(item: Node, lo: int, extra: int | None) -> Repeat:
    return Repeat(item, lo, None if extra is None else lo + extra)


_LEAVES = st.one_of(
    st.text(_CHARS, min_size=1, max_size=3).map(Lit),
    st.builds(_class, st.lists(st.tuples(_CLASS_CHARS, _CLASS_CHARS), min_size=1, max_size=3), st.booleans()),
    st.just(AnyChar()),
)


def _compound(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    # Canonical trees, as the parser builds them: an alternative is never itself an alternation (the
    # emitter flattens `a | (b | c)`, which means the same). Never a Repeat directly inside a Repeat
    # either: see test_lark_for_a_repeated_repetition_is_well_formed.
    repeatable = children.filter(lambda n: not isinstance(n, Repeat))
    alternatives = children.filter(lambda n: not isinstance(n, Alt))
    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Seq(tuple(xs))),
        st.lists(alternatives, min_size=2, max_size=3).map(lambda xs: Alt(tuple(xs))),
        st.builds(_repeat, repeatable, st.integers(0, 2), st.one_of(st.none(), st.integers(0, 2))),
    )


NODES: st.SearchStrategy[Node] = st.recursive(_LEAVES, _compound, max_leaves=6)
GRAMMARS = st.builds(lambda node: Grammar({"root": node}), NODES)


@PROPERTY
@given(GRAMMARS)
def test_random_grammars_round_trip(grammar: Grammar) -> None:
    assert parse_gbnf(grammar.to_gbnf()) == grammar


@PROPERTY
@given(GRAMMARS, st.data())
def test_random_grammars_lark_accepts_exactly_the_language(grammar: Grammar, data: st.DataObject) -> None:
    pattern = oracle(grammar)
    chars = st.sampled_from(alphabet_of(grammar))
    for text in data.draw(st.lists(st.text(chars, max_size=8), max_size=6), label="arbitrary"):
        assert lark_accepts(grammar, text) == bool(pattern.fullmatch(text)), text
    member = data.draw(st.from_regex(pattern, fullmatch=True), label="from the oracle")
    assert lark_accepts(grammar, member)
    generated = data.draw(from_lark(lark_parser(grammar), start=grammar.lark_start), label="from the Lark")
    assert pattern.fullmatch(generated)


# ---------------------------------------------------------------- the emitted Lark means the GBNF


@pytest.mark.parametrize("name", [*NON_RECURSIVE, "line"])
@PROPERTY
@given(data=st.data())
def test_lark_accepts_exactly_the_language(name: str, data: st.DataObject) -> None:
    grammar = all_grammars()[name]
    pattern = oracle(grammar)
    text = data.draw(st.text(st.sampled_from(alphabet_of(grammar)), max_size=12), label="arbitrary")
    assert lark_accepts(grammar, text) == bool(pattern.fullmatch(text))
    member = data.draw(st.from_regex(pattern, fullmatch=True), label="from the oracle")
    assert lark_accepts(grammar, member)
    generated = data.draw(from_lark(lark_parser(grammar), start=grammar.lark_start), label="from the Lark")
    assert pattern.fullmatch(generated)


@pytest.mark.parametrize(
    ("name", "text", "accepted"),
    [
        ("greedy-trap", "abx", True),  # a greedy [a-z]* would eat the x and reject this
        ("greedy-trap", "x", True),
        ("greedy-trap", "xxx", True),
        ("greedy-trap", "ab", False),
        ("greedy-trap", "abX", False),
        ("any-char", "\n.\n", True),
        ("any-char", "a.", True),
        ("any-char", "ab", False),
        ("classes", "d]+a+Fé", True),
        ("classes", "]]+a+Fé", False),  # the negated class refuses ]
        ("classes", "-]+a+Fé", False),  # ... and an escaped -
        ("classes", "d[-a,Fé", True),  # , lies in +--
        ("classes", "d]+b+Fé", False),  # [a-] is a and -, no range
        ("zero-repeat", "b", True),
        ("zero-repeat", "ab", False),
        ("zero-repeat", "bccc", True),
        ("empty-alternative", "", True),
        ("multi-line", "ab, 12.5,7", True),
        ("multi-line", "ab,  12", False),
        ("multi-line", "12.", False),
        ("recursive", "((x,x))", True),
        ("recursive", "(x,(x,x))", True),
        ("recursive", "((x)", False),
        ("recursive", "x,", False),
        ("calculate", "1 + 2", True),
        ("calculate", "  -2**-1 ", True),
        ("calculate", "sqrt(2) * pi // e % 3", True),
        ("calculate", "min(1, max(2,3))", True),
        ("calculate", "1.e5 + .5E-3 - 1.", True),
        ("calculate", "((1))", True),
        ("calculate", "min(1,2,3)", False),
        ("calculate", "1   + 2", False),  # ws is at most two spaces
        ("calculate", "1 +", False),
        ("calculate", ".", False),
        ("calculate", "", False),
        ("calculate", "1_000", False),
        ("calculate", "2 ** ** 3", False),
        ("line", "x" * 200, True),
        ("line", "x" * 201, False),
        ("line", "", False),
        ("line", "a\nb", False),
        ("line", "\r", True),
    ],
)
def test_hand_picked_strings(name: str, text: str, accepted: bool) -> None:
    grammar = all_grammars()[name]
    assert lark_accepts(grammar, text) is accepted
    if name not in ("recursive", "calculate"):
        assert bool(oracle(grammar).fullmatch(text)) is accepted


@PROPERTY
@given(data=st.data())
def test_a_recursive_grammar_generates_only_what_it_accepts(data: st.DataObject) -> None:
    # (calculate is drawn from, bounded, in test_step_grammar.py: unbounded it is slow to draw)
    grammar = all_grammars()["recursive"]
    text = data.draw(from_lark(lark_parser(grammar), start=grammar.lark_start))
    assert lark_accepts(grammar, text)


def test_lark_for_a_repeated_repetition_is_well_formed() -> None:
    # Emits `("a" | "b") ~ 1..3*`, which Lark refuses; it must be `(("a" | "b") ~ 1..3)*`.
    grammar = parse_gbnf('root ::= (("a" | "b"){1,3})* "c"')
    assert grammar.rules["root"] == Seq((Repeat(Repeat(Alt((Lit("a"), Lit("b"))), 1, 3), 0, None), Lit("c")))
    for text, accepted in [("c", True), ("abac", True), ("ac", True), ("aaaac", True), ("ab", False)]:
        assert lark_accepts(grammar, text) is accepted


def test_lark_for_two_optionals_is_well_formed() -> None:
    # `[X] [X]` expands to `X` twice (once per placeholder position); `X? X?` does not.
    grammar = parse_gbnf('root ::= "x" [ \\t]? [ \\t]? "y"')
    for text, accepted in [("xy", True), ("x y", True), ("x \ty", True), ("x   y", False)]:
        assert lark_accepts(grammar, text) is accepted


# ---------------------------------------------------------------- one parser per grammar, one reading of its errors


def test_each_grammar_gets_one_parser_shared_by_every_use(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    class CountingLark(lark.Lark):
        def __init__(self, grammar: str, **options: Any) -> None:
            built.append(grammar)
            super().__init__(grammar, **options)

    monkeypatch.setattr(lark, "Lark", CountingLark)
    source = 'root ::= "tally-" [0-9]{1,3}'  # no other test uses it, so no parser for it is cached yet
    counted = Tool(name="tally", description="Count.", func=str, example="tally-1", grammar=source)
    composed = [compose_step_grammar([counted]) for _ in range(3)]
    for i in range(30):
        assert counted.accepts(f"tally-{i}")
        assert composed[i % 3].parse(f"Thought: t\ntally: tally-{i}\n").input == f"tally-{i}"
    assert parse_gbnf(source).parser is counted.input_grammar.parser
    assert len({id(step.parser) for step in composed}) == 1
    assert len([g for g in built if g.startswith(LARK_PRELUDE)]) == 2  # the tool's input, the step grammar


@pytest.mark.parametrize(
    ("text", "line", "column", "found", "expected"),
    [
        ("ax", 1, 1, "'a'", "'ab'"),
        ("ab", 1, 3, "end of text", "/[0-9]/"),
        ("ab1\n", 1, 4, "'\\n'", "end of text"),
    ],
)
def test_a_parse_error_reads_as_where_what_was_found_and_what_was_expected(
    text: str, line: int, column: int, found: str, expected: str
) -> None:
    grammar = parse_gbnf('root ::= "ab" [0-9]')
    with pytest.raises(lark.UnexpectedInput) as caught:
        grammar.parser.parse(text)
    problem = syntax_problem(text, caught.value, grammar.parser)
    assert (problem.line, problem.column, problem.position) == (line, column, column - 1)
    assert str(problem) == f"at line {line}, column {column}: found {found}, expected {expected}"
    assert problem.context().splitlines()[-1] == " " * (column - 1) + "^"


# ---------------------------------------------------------------- errors say where


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        pytest.param('root ::= ("a" "b"', 1, 18, id="unclosed-paren"),
        pytest.param('root ::= "a"\nnext ::= ("b" | "c"\n', 3, 1, id="unclosed-paren-at-end"),
        pytest.param('root ::= "abc', 1, 10, id="unterminated-string"),
        pytest.param('root ::= x\nx ::= "a\n', 2, 7, id="unterminated-string-line-2"),
        pytest.param("root ::= [a-z", 1, 10, id="unterminated-class"),
        pytest.param('root ::= "a" |\n  | "b" ::=', 2, 9, id="stray-definition"),
        pytest.param('root ::= "a" undefined-rule', 1, 14, id="undefined-rule"),
        pytest.param('root ::= item\nitem ::= "a"\nitem ::= "b"\n', 3, 1, id="duplicate-rule"),
        pytest.param('root ::= "a"\n  | [z-a]\n', 2, 5, id="bad-range"),
        pytest.param('root ::= "a"{3,1}', 1, 13, id="max-below-min"),
        pytest.param('root ::= "\\q"', 1, 10, id="unknown-escape"),
        pytest.param("", 1, 1, id="empty-source"),
        pytest.param("# nothing here\n", 2, 1, id="only-a-comment"),
    ],
)
def test_errors_name_line_and_column(source: str, line: int, column: int) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_gbnf(source)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert f"line {line}, column {column}" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ('root ::= "a" undefined-rule', ["undefined", "undefined-rule"]),
        ('root ::= item\nitem ::= "a"\nitem ::= "b"\n', ["twice", "item"]),
        ("root ::= [z-a]", ["range", "z", "a"]),
        ("", ["no rules"]),
        ('other ::= "a"', ["root"]),
        ('Root ::= "a"\nroot ::= "b"', ["case"]),
    ],
)
def test_semantic_errors_are_grammar_errors_that_say_what(source: str, words: list[str]) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_gbnf(source)
    for word in words:
        assert word in str(caught.value)


def test_a_tool_with_a_malformed_grammar_is_refused_saying_where() -> None:
    with pytest.raises(ToolRegistrationError, match=r"'broken'.*line 3, column 1"):
        Tool(name="broken", description="B.", func=str, example="a", grammar='root ::= x\nx ::= ("a"\n')


def test_a_tool_whose_grammar_refers_to_an_undefined_rule_is_refused_saying_where() -> None:
    with pytest.raises(ToolRegistrationError, match=r"line 1, column 10"):
        Tool(name="broken", description="B.", func=str, example="a", grammar="root ::= missing")


def test_a_tool_whose_example_does_not_match_its_grammar_is_refused() -> None:
    with pytest.raises(ToolRegistrationError, match="example"):
        Tool(name="digits", description="D.", func=int, example="twelve", grammar="root ::= [0-9]+")
    with pytest.raises(ToolRegistrationError, match="example"):
        Tool(name="echo", description="E.", func=str, example="two\nlines")
    assert Tool(name="digits", description="D.", func=int, example="12", grammar="root ::= [0-9]+").accepts("7")


# ---------------------------------------------------------------- llama.cpp accepts what we emit


class LlamaCheck:
    """Whether llama.cpp's own GBNF parser accepts a grammar.

    `LlamaGrammar.from_string` only stores the text (llama-cpp-python >= 0.3 parses it when a sampler
    is made), so this also builds the grammar sampler itself; no vocabulary is needed to parse.
    """

    def __init__(self) -> None:
        import llama_cpp

        self._lib = llama_cpp

    def accepts(self, gbnf: str) -> bool:
        llama_cpp = self._lib
        assert llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False) is not None
        sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode(), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True


@pytest.fixture(scope="module")
def llama_check() -> LlamaCheck:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not installed")
    return LlamaCheck()


def test_llama_check_can_refuse(llama_check: LlamaCheck) -> None:
    assert not llama_check.accepts("root ::= (")
    assert not llama_check.accepts("root ::= missing")


@pytest.mark.parametrize("name", list(all_grammars()))
def test_llama_cpp_accepts_every_emitted_grammar(name: str, llama_check: LlamaCheck) -> None:
    assert llama_check.accepts(all_grammars()[name].to_gbnf())


def _llama_compatible(grammar: Grammar) -> bool:
    # Leave out {0}, which can leave an empty alternative under a repetition: a nullable left
    # recursion that llama.cpp refuses (and Tool registration refuses too, see below).
    return "{0}" not in grammar.to_gbnf()


def _nodes(grammar: Grammar) -> Iterator[Node]:
    stack = list(grammar.rules.values())
    while stack:
        node = stack.pop()
        yield node
        match node:
            case Seq(items) | Alt(items):
                stack.extend(items)
            case Repeat(item, _, _):
                stack.append(item)


@settings(max_examples=150, deadline=None)
@given(GRAMMARS.filter(_llama_compatible))
def test_llama_cpp_accepts_random_emitted_grammars(llama_check: LlamaCheck, grammar: Grammar) -> None:
    assert llama_check.accepts(grammar.to_gbnf()), grammar.to_gbnf()


def test_llama_cpp_accepts_a_class_with_a_caret(llama_check: LlamaCheck) -> None:
    grammar = parse_gbnf(r"root ::= [\^a] [a^]")
    assert grammar.rules["root"] == Seq((CharClass((("^", "^"), ("a", "a"))), CharClass((("a", "a"), ("^", "^")))))
    assert llama_check.accepts(grammar.to_gbnf()), grammar.to_gbnf()


@pytest.mark.parametrize(
    ("source", "example"),
    [
        ('root ::= root "a" | "a"', "aa"),
        ('root ::= "a" x\nx ::= x "b" | ""', "abb"),
        ('root ::= ("a" | "")*', "aa"),
        ('root ::= ("a"{0} | "b")*', "bb"),
    ],
)
def test_a_tool_with_a_grammar_llama_cpp_refuses_is_refused(llama_check: LlamaCheck, source: str, example: str) -> None:
    assert parse_gbnf(source).to_gbnf()  # our parser takes it ...
    assert not llama_check.accepts(parse_gbnf(source).to_gbnf())  # ... llama.cpp does not
    assert parse_gbnf(source) and lark_accepts(parse_gbnf(source), example)
    with pytest.raises(ToolRegistrationError):
        Tool(name="lr", description="Refused by llama.cpp.", func=str, example=example, grammar=source)
