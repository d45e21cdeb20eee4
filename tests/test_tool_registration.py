"""Tool registration refuses, fast and in one line, what cannot work at run time (report rows R5-R12, B10).

Each refusal names the tool and the reason; each accepted shape registers in bounded work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import lark
import pytest

from tether import tool
from tether.engine.gbnf import LARK_PRELUDE, nested_repeat_size, parse_gbnf
from tether.engine.tool import MAX_NESTED_REPEAT_SIZE, Tool
from tether.errors import ToolRegistrationError


def make(grammar: str, example: str = "ab", **kwargs: object) -> Tool:
    return Tool(name="t", description="d", func=str, example=example, grammar=grammar, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- R5: the real reason for a repeat count


def test_r5_too_many_repetitions_says_so() -> None:
    with pytest.raises(ToolRegistrationError) as caught:
        make('root ::= "x"{100000}', example="x")
    message = str(caught.value)
    assert "'t'" in message and "rule 'root'" in message and "number of repetitions exceeds" in message
    assert "2000" in message and "left recursion" not in message


def test_r5_a_maximum_llama_cpp_would_ignore_is_refused_not_silently_unbounded() -> None:
    # llama.cpp reads a maximum above 2000 as no maximum: the decoder could write what Lark refuses.
    with pytest.raises(ToolRegistrationError, match=r"\{0,100000\}.*no maximum"):
        make('root ::= "x"{0,100000}', example="x")
    assert make('root ::= "x"{0,2000}', example="x" * 2000).accepts("x" * 1999)


# ---------------------------------------------------------------- R6: nested bounded repeats register fast


R6_SHAPES = [
    ('root ::= ([a-z]{1,9} " "){0,5}', "ab "),
    ('root ::= ("a"{0,9}){0,9}', "aa"),
    ('root ::= (("a"{0,9}){0,9}){0,9}', "aa"),
    ('root ::= ([a-z]{0,9} " "?){0,20}', "ab"),
    ('root ::= ("x"{0,9} "y"{0,9}){0,20}', "xy"),
    ('root ::= ([a-z]{0,9} " "?){0,3}', "ab"),
    ('root ::= ([a-z]{0,9} " "?){0,4}', "ab"),
]


@pytest.mark.parametrize(("source", "example"), R6_SHAPES)
def test_r6_nested_bounded_repeats_register_or_are_refused_fast(source: str, example: str) -> None:
    start = time.perf_counter()
    try:
        make(source, example=example)
    except ToolRegistrationError as exc:
        assert "nests bounded repetitions" in str(exc)
    assert time.perf_counter() - start < 2.0  # was minutes and gigabytes


@pytest.mark.parametrize(("source", "example"), R6_SHAPES)
def test_r6_the_lark_form_grows_linearly_and_means_the_same(source: str, example: str) -> None:
    # Even for shapes registration refuses (R7), the validator's form stays small: O(log n) helper
    # rules per repetition, each with at most four alternatives.
    grammar = parse_gbnf(source)
    text = grammar.to_lark()
    assert len(text) < 2000 and text.count("\n") < 40
    assert grammar.lark_source == LARK_PRELUDE + text
    grammar.parser.parse(example)


def test_r6_up_to_five_words_means_up_to_five_words() -> None:
    words = make('root ::= ([a-z]{1,9} " "){0,5}', example="ab ")
    assert words.accepts("") and words.accepts("a " * 5) and words.accepts("abcdefghi " * 5)
    assert not words.accepts("a " * 6) and not words.accepts("abcdefghij ") and not words.accepts("a")


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (0, 2), (1, 7), (3, 3), (2, 10), (0, 13), (5, 64), (0, 2000)])
def test_r6_bounded_repeats_count_exactly(lo: int, hi: int) -> None:
    grammar = parse_gbnf(f'root ::= "a"{{{lo},{hi}}} "b"')
    parser = grammar.parser
    for n in sorted({0, 1, lo - 1, lo, lo + 1, (lo + hi) // 2, hi - 1, hi, hi + 1}):
        if n < 0:
            continue
        try:
            parser.parse("a" * n + "b")
            accepted = True
        except lark.UnexpectedInput:
            accepted = False
        assert accepted is (lo <= n <= hi), n


# ---------------------------------------------------------------- R7: llama.cpp's decode-time cost


@pytest.mark.parametrize(
    ("source", "size"),
    [
        ('root ::= [0-9]+ ("." [0-9]+)?', 1),
        ("root ::= [^\\n]{0,199}", 1),
        ('root ::= ([a-z]{1,9} " "){0,5}', 45),
        ('root ::= ("a"{0,9}){0,9}', 81),
        ('root ::= (("a"{0,9}){0,9}){0,9}', 729),
        ('root ::= ([a-z]{0,9} " "?){0,20}', 180),
        ('root ::= word{0,9}\nword ::= "a"{0,9} x{0,9}\nx ::= "x"', 81),
        ('root ::= "(" root ")"{0,3} | "a"{0,9}', 1),
        ('root ::= "(" root ")"{0,3} | "a"{0,9} | ("b"{2}){3}', 6),
        ('root ::= ("a"{1,9})*', 9),
    ],
)
def test_r7_nested_repeat_size(source: str, size: int) -> None:
    assert nested_repeat_size(parse_gbnf(source))[0] == size


def test_r7_a_grammar_past_the_limit_is_refused_naming_the_rule_and_the_limit() -> None:
    with pytest.raises(ToolRegistrationError) as caught:
        make('root ::= "n" words\nwords ::= (("a"{0,9}){0,9}){0,9}', example="na")
    message = str(caught.value)
    assert "'t'" in message and "rule 'words'" in message and "729" in message
    assert str(MAX_NESTED_REPEAT_SIZE) in message
    # The same words, with an unbounded outer repetition, are fine.
    assert make('root ::= "n" words\nwords ::= ("a"{0,9})+', example="na").accepts("naaaa")


def test_r7_the_shipped_tools_are_within_the_limit() -> None:
    from tether.tools import default_tools

    for t in default_tools():
        assert nested_repeat_size(t.input_grammar)[0] <= MAX_NESTED_REPEAT_SIZE, t.name


# ---------------------------------------------------------------- R11: one line per command


@pytest.mark.parametrize(
    "source",
    ['root ::= "a" ("\\n" "b")?', "root ::= [^x]+", "root ::= .", 'root ::= "a" rest\nrest ::= [\\x00-\\x1F]?'],
)
def test_r11_a_grammar_that_can_produce_a_newline_is_refused(source: str) -> None:
    with pytest.raises(ToolRegistrationError) as caught:
        make(source, example="a")
    assert "'t'" in str(caught.value) and "newline" in str(caught.value)


def test_r11_a_newline_that_can_never_be_produced_is_fine() -> None:
    assert make('root ::= "a" "\\n"{0} [^\\n]*', example="ab").accepts("a b")


# ---------------------------------------------------------------- R12: the example fits the input type


def test_r12_an_example_the_input_type_refuses_is_refused() -> None:
    with pytest.raises(ToolRegistrationError) as caught:
        Tool(name="count", description="Count.", func=str, example="abc", input_type=int)
    message = str(caught.value)
    assert "'count'" in message and "'abc'" in message and "valid integer" in message
    assert Tool(name="count", description="Count.", func=str, example="12", input_type=int)("12") == "12"


def test_r12_the_decorator_checks_the_annotation_too() -> None:
    with pytest.raises(ToolRegistrationError, match="input type"):

        @tool(example="twelve")
        def double(n: int) -> int:
            """Double it."""
            return 2 * n


# ---------------------------------------------------------------- B10: async tools


async def _fetch(text: str) -> str:
    await asyncio.sleep(0)
    return text


async def _stream(text: str) -> AsyncIterator[str]:
    yield text


class _AsyncCallable:
    async def __call__(self, text: str) -> str:
        return text


@pytest.mark.parametrize("func", [_fetch, _stream, _AsyncCallable()])
def test_b10_async_functions_are_refused(func: object) -> None:
    with pytest.raises(ToolRegistrationError) as caught:
        Tool(name="fetch", description="Fetch.", func=func, example="x")  # type: ignore[arg-type]
    assert "'fetch'" in str(caught.value) and "async" in str(caught.value)


def test_b10_the_decorator_refuses_async_def() -> None:
    with pytest.raises(ToolRegistrationError, match="async"):

        @tool(example="x")
        async def fetch(text: str) -> str:
            """Fetch."""
            return text
