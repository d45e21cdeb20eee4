"""The calculator: known answers, refusals, and Python's own parser as the reference for the rest."""

from __future__ import annotations

import ast
import math
import operator
import time
from collections.abc import Callable
from typing import Any

import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from tether.engine.gbnf import (
    LARK_PRELUDE,
    Alt,
    Grammar,
    Node,
    Ref,
    Repeat,
    Seq,
    load_grammar_source,
    parse_gbnf,
)
from tether.errors import ToolError
from tether.tools.calculate import MAX_INT_DIGITS, MAX_LENGTH, calculate, evaluate, format_number

Number = int | float

# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # precedence and associativity
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("100 / 10 / 5", 2.0),
        ("2 * 3 ** 2", 18),
        ("2 ** 3 ** 2", 512),
        ("(2 ** 3) ** 2", 64),
        ("7 - 2 * 3 + 8 // 3 % 2", 1),
        # unary minus binds looser than **, tighter than * and +
        ("-2 ** 2", -4),
        ("(-2) ** 2", 4),
        ("2 ** -1", 0.5),
        ("2 ** -2 ** 2", 0.0625),
        ("-3 * -2", 6),
        ("--3", 3),
        ("+-+3", -3),
        ("1 - -1", 2),
        ("-2 ** -2", -0.25),
        # // and % follow the sign of the divisor, like Python
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 // -2", -4),
        ("-7 % 3", 2),
        ("7 % -3", -2),
        ("-7.5 // 2", -4.0),
        ("7.5 % -2", -0.5),
        # ints stay ints, / gives a float
        ("17 * 23", 391),
        ("6 / 3", 2.0),
        ("2 ** 100", 2**100),
        (
            "123456789012345678901234567890 * 987654321098765432109876543210",
            123456789012345678901234567890 * 987654321098765432109876543210,
        ),
        ("0 ** 0", 1),
        ("0.17 * 2340", 0.17 * 2340),
        # scientific notation and float literals
        ("1.5e3", 1500.0),
        ("1E-3", 0.001),
        ("2.5e+2", 250.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("1.e2", 100.0),
        ("007", 7),
        # functions and constants
        ("sqrt(16)", 4.0),
        ("sqrt(2)", math.sqrt(2)),
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("round(2.5)", 2),
        ("round(3.5)", 4),
        ("round(2.675, 2)", 2.67),
        ("round(1234, -2)", 1200),
        ("round(1250, -2)", 1200),
        ("round(5, -100000000000000000000000000)", 0),
        ("round(1.5, 100000000000000000000000000)", 1.5),
        ("min(3, 2.5)", 2.5),
        ("max(3, 2.5)", 3),
        ("min(4)", 4),
        ("log(e)", 1.0),
        ("log(8, 2)", math.log(8, 2)),
        ("log(10 ** 400)", math.log(10**400)),
        ("exp(0)", 1.0),
        ("exp(1)", math.e),
        ("pi", math.pi),
        ("2 * pi", 2 * math.pi),
        ("e ** 2", math.e**2),
        ("sqrt(abs(-16)) + max(1, min(2, 3))", 6.0),
        # whitespace: up to two spaces wherever the grammar allows it
        ("  1  +  2  ", 3),
        ("sqrt ( 4 )", 2.0),
        ("max(  1 ,  2  )", 2),
        ("- 3", -3),
        ("2**3", 8),
        # deep nesting costs no recursion
        ("(" * 300 + "1" + ")" * 300, 1),
        ("-" * 300 + "1", 1),
    ],
)
def test_known_values(text: str, expected: Number) -> None:
    result = evaluate(text)
    assert type(result) is type(expected)
    assert result == expected


def test_huge_but_allowed_integers_are_exact() -> None:
    assert evaluate(f"10 ** {MAX_INT_DIGITS - 1}") == 10 ** (MAX_INT_DIGITS - 1)
    assert evaluate(f"10 ** {MAX_INT_DIGITS - 1} // 10 ** {MAX_INT_DIGITS - 2}") == 10
    assert evaluate("2 ** 14284") == 2**14284  # the largest power of two under the limit


@pytest.mark.parametrize(
    ("value", "text"),
    [(391, "391"), (-7, "-7"), (397.8, "397.8"), (2.0, "2.0"), (0.5, "0.5"), (1e16, "1e+16"), (-0.0, "-0.0")],
)
def test_format_number(value: Number, text: str) -> None:
    assert format_number(value) == text


def test_calculate_tool() -> None:
    assert calculate.name == "calculate"
    assert calculate.timeout_s == 2.0
    assert calculate.accepts(calculate.example)
    assert calculate("0.17 * 2340") == "397.8"
    assert calculate("17*23") == "391"
    assert calculate("4 / 2") == "2.0"
    with pytest.raises(ToolError, match="division by zero"):
        calculate("1 / 0")


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("1.5 / 0.0", "division by zero"),
        ("5 % (2 - 2)", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("10 ** 10 ** 10", "too large"),
        ("9 ** 999999", "too large"),
        ("2 ** 100000000000000000000000000000", "too large"),
        ("(-3) ** 999999", "too large"),
        (f"10 ** {MAX_INT_DIGITS}", "too large"),
        (f"10 ** {MAX_INT_DIGITS - 1} * 10 // 10", "too large"),  # an intermediate over the bound
        ("2.0 ** 10000", "too large"),
        ("1e308 * 10", "too large"),
        ("1e999", "too large"),
        ("exp(1000)", "too large"),
        ("sqrt(10 ** 400)", "too large"),
        ("10 ** 400 / 3", "too large"),
        ("10 ** 400 + 0.5", "too large"),
        ("sqrt(-1)", "sqrt of a negative number"),
        ("log(0)", "log needs a positive number"),
        ("log(-2.5)", "log needs a positive number"),
        ("log(8, 1)", "log base"),
        ("log(8, -2)", "log base"),
        ("(-8) ** 0.5", "fractional power"),
        ("abs(1, 2)", "abs takes 1 argument, got 2"),
        ("round(1.5, 0.5)", "must be an integer"),
        ("1 + " * (MAX_LENGTH // 4) + "1", "too long"),
    ],
)
def test_refusals(text: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(text)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("1 +* 2", "at column 4: unexpected '\\*'"),
        ("2 $ 3", "at column 3: unexpected '\\$'"),
        ("x", "at column 1: unexpected 'x'"),
        ("sqrt(1", "ends too early at column 7"),
        ("", "ends too early at column 1"),
        ("1   + 2", "at column 4"),  # at most two spaces in a row
        ("foo(1)", "at column 1"),
        ("2 3", "at column 3"),
        ("1\n+ x", "at line 1, column 2"),
    ],
)
def test_unparsable_input_names_the_position(text: str, where: str) -> None:
    with pytest.raises(ToolError, match=f"cannot parse the expression.*{where}"):
        evaluate(text)


# ---------------------------------------------------------------- Python's parser as the reference


class Refused(Exception):
    """The reference result is one the calculator must refuse (complex, or past its bounds)."""


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_REFUSED = (Refused, ZeroDivisionError, OverflowError, ValueError)


def reference(text: str) -> Number:
    """What Python makes of `text`, walking its AST (no eval), within the calculator's stated bounds."""
    return _walk(ast.parse(text, mode="eval").body)


def _walk(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.Name):
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        return _bounded(_UNARY[type(node.op)](_walk(node.operand)))
    if isinstance(node, ast.BinOp):
        return _bounded(_BINARY[type(node.op)](_walk(node.left), _walk(node.right)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _bounded(_FUNCTIONS[node.func.id](*map(_walk, node.args)))
    raise AssertionError(f"unexpected node {ast.dump(node)}")


def _bounded(value: object) -> Number:
    if isinstance(value, complex):
        raise Refused("complex result")
    if isinstance(value, int) and abs(value) >= 10**MAX_INT_DIGITS:
        raise Refused("too many digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise Refused("float overflow")
    assert isinstance(value, (int, float))
    return value


def check_against_reference(text: str) -> None:
    try:
        expected = reference(text)
    except _REFUSED:
        with pytest.raises(ToolError):
            evaluate(text)
        return
    actual = evaluate(text)
    assert type(actual) is type(expected), (text, actual, expected)
    if isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-9), (text, actual, expected)
    else:
        assert actual == expected, text


# Expressions as text, built bottom-up. Each is (text, is_atom): an atom may stand as the base of **
# unbracketed. Exponents are small literals and a non-atom base is bracketed, so no chain like
# a ** b ** c can form and the reference never meets a power it cannot compute at once.
Expr = tuple[str, bool]
_space = st.sampled_from(["", " "])
_numbers = st.one_of(
    st.integers(min_value=0, max_value=10**30 - 1).map(str),
    st.integers(min_value=0, max_value=20).map(str),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(lambda x: repr(abs(x))),
    st.floats(min_value=0, max_value=100, allow_nan=False).map(lambda x: repr(abs(x))),
)
_leaves: st.SearchStrategy[Expr] = st.one_of(
    _numbers.map(lambda t: (t, True)), st.sampled_from(["pi", "e"]).map(lambda t: (t, True))
)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    unary = st.tuples(st.sampled_from("-+"), _space, children).map(lambda t: (t[0] + t[1] + t[2][0], False))
    binary = st.tuples(
        children, _space, st.sampled_from(["+", "-", "*", "/", "//", "%"]), _space, children, st.booleans()
    ).map(lambda t: _maybe_bracket(f"{t[0][0]}{t[1]}{t[2]}{t[3]}{t[4][0]}", t[5]))
    power = st.tuples(children, _space, st.integers(-3, 4), _space).map(
        lambda t: (f"{t[0][0] if t[0][1] else '(' + t[0][0] + ')'}{t[1]}**{t[3]}{t[2]}", False)
    )
    one_arg = st.tuples(st.sampled_from(["sqrt", "abs", "round", "log", "exp"]), children).map(
        lambda t: (f"{t[0]}({t[1][0]})", True)
    )
    two_args = st.tuples(st.sampled_from(["min", "max", "log"]), children, _space, children).map(
        lambda t: (f"{t[0]}({t[1][0]},{t[2]}{t[3][0]})", True)
    )
    rounding = st.tuples(children, st.integers(-3, 3)).map(lambda t: (f"round({t[0][0]}, {t[1]})", True))
    return st.one_of(unary, binary, power, one_arg, two_args, rounding)


def _maybe_bracket(text: str, bracket: bool) -> Expr:
    return (f"({text})", True) if bracket else (text, False)


expressions = st.recursive(_leaves, _extend, max_leaves=10).map(lambda e: e[0])

_SETTINGS = settings(max_examples=200, deadline=None, database=None)


@_SETTINGS
@given(expressions)
def test_agrees_with_python(text: str) -> None:
    assert len(text) <= MAX_LENGTH
    check_against_reference(text)


@pytest.mark.parametrize(
    "text",
    [
        "-2**2",
        "2**-1",
        "2 ** 3 ** 2",
        "-7 // 2",
        "7 % -3",
        "(-2.5) ** 3",
        "round(2.5) + round(-0.5)",
        "1 / 3 * 3",
    ],
)
def test_reference_itself(text: str) -> None:
    check_against_reference(text)


_TEXT_ALPHABET = st.one_of(st.sampled_from("0123456789.eE+-*/%() ,\n\tpisqrtabsoundminaxlgxp"), st.characters())


@_SETTINGS
@given(st.text(_TEXT_ALPHABET, max_size=40))
def test_any_text_evaluates_or_raises_tool_error(text: str) -> None:
    try:
        result = evaluate(text)
    except ToolError:
        return
    assert type(result) in (int, float)


# ---------------------------------------------------------------- strings from the grammar itself
#
# from_lark cannot draw from the calculator's Lark grammar as it stands: every sum can hold several
# terms, every term several factors, every atom a bracketed sum, so a random derivation grows without
# bound and nearly every draw overruns (FailedHealthCheck, filter_too_much). So we hand it the same
# grammar unrolled to a fixed nesting depth: each rule copied once per level, a reference pointing one
# level down, and the last level keeping only the alternatives that need no further rule. Every string
# of the unrolled grammar is a string of the real one (asserted below through the tool's own parser).
# keep_all_tokens and the lexer do not matter to from_lark, which reads only the compiled rules.


def _without_refs(node: Node, available: dict[str, str]) -> Node | None:
    """`node` with references renamed to `available`; None where it needs a rule that is not."""
    match node:
        case Ref(name):
            return Ref(available[name]) if name in available else None
        case Seq(items):
            parts = [_without_refs(i, available) for i in items]
            return None if any(p is None for p in parts) else Seq(tuple(p for p in parts if p is not None))
        case Alt(options):
            kept = [o for o in (_without_refs(o, available) for o in options) if o is not None]
            return None if not kept else kept[0] if len(kept) == 1 else Alt(tuple(kept))
        case Repeat(item, lo, hi):
            inner = _without_refs(item, available)
            if inner is None:
                return Seq(()) if lo == 0 else None
            return Repeat(inner, lo, hi)
    return node


def unrolled(grammar: Grammar, depth: int) -> Grammar:
    rules: dict[str, Node] = {}
    below: dict[str, str] = {}
    for level in range(depth, -1, -1):
        here: dict[str, str] = {}
        for name, node in grammar.rules.items():
            bounded = _without_refs(node, below)
            if bounded is not None:
                rules[f"{name}-{level}"] = bounded
                here[name] = f"{name}-{level}"
        below = here
    return Grammar(rules, below[grammar.start])


_CALCULATE = parse_gbnf(load_grammar_source("calculate"))
_UNROLLED = unrolled(_CALCULATE, depth=8)
_UNROLLED_LARK = lark.Lark(
    LARK_PRELUDE + _UNROLLED.to_lark(), start=_UNROLLED.lark_start, parser="earley", lexer="dynamic"
)


def test_unrolled_grammar_is_the_calculator_grammar() -> None:
    assert calculate.input_grammar == _CALCULATE
    assert len(_UNROLLED.rules) > len(_CALCULATE.rules)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_lark(_UNROLLED_LARK))
def test_grammar_strings_evaluate_or_raise_tool_error(text: str) -> None:
    assert calculate.accepts(text), text
    try:
        result = evaluate(text)
    except ToolError as exc:
        assert "cannot parse" not in str(exc)
        return
    assert type(result) in (int, float)


# ---------------------------------------------------------------- ** and sign chains (S13, C10)
#
# `factor` is a repetition, not right recursion, so Earley's work grows linearly with a chain's
# length; the calculator groups the chain itself, right to left, as Python does.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-2**2", -4),
        ("2**-1", 0.5),
        ("-2**-2**2", -0.0625),
        ("2**3**2", 512),
        ("-(2)**2", -4),
        ("+-+2**2", -4),
        ("- -2 ** 2", 4),
        ("2 ** - - 2", 4),
        ("2**-1**2", 0.5),
        ("(-2)**3**0", -2),
        ("-0.0**1", -0.0),
        ("1**-" * 249 + "1", 1.0),
    ],
)
def test_power_chains_group_like_python(text: str, expected: Number) -> None:
    actual = evaluate(text)
    assert actual == expected and type(actual) is type(expected), (text, actual)
    assert math.copysign(1, actual) == math.copysign(1, expected)
    check_against_reference(text)


# No 3: Python's reference evaluates a tower before anyone can refuse it, and 3**3**3**3 has trillions of
# digits (it took 17 GB); the tallest tower here, 2**2**2**2**2, has 19,729.
_chain_operand = st.tuples(st.text(st.sampled_from("-+"), max_size=3), st.sampled_from(["0", "1", "2", "0.5"]))


@_SETTINGS
@given(st.lists(st.tuples(_chain_operand, _space), min_size=1, max_size=5))
def test_power_chains_agree_with_python(chain: list[tuple[tuple[str, str], str]]) -> None:
    text = "**".join(f"{signs}{space if signs else ''}{number}" for (signs, number), space in chain)
    check_against_reference(text)


class CountingEarleyItems:
    """Counts the Earley items Lark creates: the parser's work, independent of the machine's speed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from lark.parsers import earley_common

        self.count = 0
        original = earley_common.Item.__init__

        def counting(item: object, *args: object) -> None:
            self.count += 1
            original(item, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(earley_common.Item, "__init__", counting)

    def work(self, parse: Callable[[str], object], text: str) -> int:
        self.count = 0
        parse(text)
        return self.count


def test_c10_the_worst_case_chain_costs_what_an_ordinary_expression_does(monkeypatch: pytest.MonkeyPatch) -> None:
    items = CountingEarleyItems(monkeypatch)
    worst = items.work(evaluate, "1**-" * 249 + "1")  # 997 characters: 1.9-3.2 s before
    ordinary = items.work(evaluate, "1 + " * 249 + "1")
    assert worst < 2 * ordinary, (worst, ordinary)
    assert calculate("1**-" * 249 + "1") == "1.0"
    assert calculate("1**" * 333 + "1") == "1"


def test_s13_step_validation_of_a_power_chain_grows_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.engine.grammar import compose_step_grammar

    grammar = compose_step_grammar([calculate])
    items = CountingEarleyItems(monkeypatch)
    work = {kb: items.work(grammar.parse, "Thought: x\ncalculate: " + "1**-" * (256 * kb) + "1\n") for kb in (1, 2, 4)}
    # Linear: twice the text, about twice the items (right recursion made 4 KB cost 11x 1 KB's items).
    assert work[2] < 2.2 * work[1] and work[4] < 2.2 * work[2], work
    monkeypatch.undo()
    start = time.perf_counter()
    grammar.parse("Thought: x\ncalculate: " + "1**-" * 1024 + "1\n")
    assert time.perf_counter() - start < 10  # 41 s before (4 KB); the item count above is the real bound
