"""Typed answers: each narrowed answer grammar, through the same property tests as the step grammar
(what the grammar can produce parses, and means what the type says; near misses are refused), and
the closed-book grammar built on them; llama.cpp accepts every emitted GBNF."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from tether import Agent, Restriction, ScriptedBackend, compose_step_grammar
from tether.engine.answer import ANSWER_MAX_WORDS, ANSWER_TYPES, SHORT_ANSWER_MAX_WORDS, AnswerType, answer_grammar
from tether.engine.closed_book import closed_book_grammar
from tether.engine.gbnf import llama_cpp_accepts
from tether.engine.grammar import StepGrammar
from tether.errors import ParseError
from tether.testing import valid_steps
from tether.tools import resolve_tools

NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)
PLAIN_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3}){1,5}|\d{1,18})(?:\.\d{1,10})?", re.ASCII)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def means_its_type(answer: str, answer_type: AnswerType) -> bool:
    """An independent reading of each type's promise, to hold every generated answer against."""
    words = [w for w in answer.split(" ") if w]  # the grammar separates words by spaces only
    return {
        "number": lambda: NUMBER.fullmatch(answer) is not None,
        "yes-no": lambda: answer.casefold() in ("yes", "no"),
        "short": lambda: 1 <= len(words) <= SHORT_ANSWER_MAX_WORDS,
        "text": lambda: 1 <= len(words) <= ANSWER_MAX_WORDS,
    }[answer_type]()


@pytest.fixture(scope="module")
def typed() -> dict[str, StepGrammar]:
    tools = resolve_tools(["calculate"])
    return {t: compose_step_grammar(tools, allowed=["answer"], answer_type=t) for t in ANSWER_TYPES}


@pytest.mark.parametrize("answer_type", ANSWER_TYPES)
def test_every_step_the_typed_grammar_produces_parses_as_its_type(answer_type: AnswerType) -> None:
    grammar = compose_step_grammar(resolve_tools(["calculate"]), allowed=["answer"], answer_type=answer_type)

    @SETTINGS
    @given(valid_steps(grammar))
    def check(text: str) -> None:
        action = grammar.parse(text)
        assert action.command == "answer" and means_its_type(
            action.input.strip(" "), answer_type
        )  # spaces pad an answer

    check()


@pytest.mark.parametrize("answer_type", ANSWER_TYPES)
def test_every_closed_book_text_is_reasoning_then_one_answer_on_the_last_line(answer_type: AnswerType) -> None:
    grammars = closed_book_grammar(answer_type)
    parser = grammars.grammar.parser

    @SETTINGS
    @given(from_lark(parser, start=grammars.grammar.lark_start))
    def check(text: str) -> None:
        action = grammars.parse(text)
        assert means_its_type(action.input, answer_type)
        folded = text.casefold()
        assert folded.count("answer:") == 1 + action.input.casefold().count("answer:")
        assert "\n" not in text[folded.index("answer:") : -1] and text.endswith("\n")
        assert text.startswith(action.thought)

    check()


def test_every_plain_number_is_a_number_answer(typed: dict[str, StepGrammar]) -> None:
    grammar = typed["number"]

    @SETTINGS
    @given(
        st.from_regex(re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3}){1,5}|\d{1,18})(?:\.\d{1,10})?", re.ASCII), fullmatch=True)
    )
    def check(number: str) -> None:
        assert grammar.parse(f"Thought: done\nanswer: {number}\n").input == number

    check()


@pytest.mark.parametrize(
    ("answer_type", "answer"),
    [
        ("number", "57 stickers"),
        ("number", "$57"),
        ("number", "57%"),
        ("number", "fifty-seven"),
        ("number", "1,0000"),
        ("number", "1,00"),
        ("number", "1.5.2"),
        ("number", "2 + 2"),
        ("number", "9" * 19),
        ("yes-no", "maybe"),
        ("yes-no", "yes, it is"),
        ("yes-no", "y"),
        ("short", " ".join(["word"] * (SHORT_ANSWER_MAX_WORDS + 1))),
        ("short", "42 answer: 42"),
        ("text", "1,000 answer: 1,000"),
        ("short", "answer to the question is: Jack Lemmon"),
        ("short", '"Texas Tech University". The question asks'),
        ("short", "2009. The English local newspaper"),
        ("short", "2009.0.0.0"),
        ("short", "Kansas. Both schools"),
        ("short", "Texas \u201cTech\u201d"),
        ("short", "Erika Jayne was born first"),  # a clause, not a phrase
        ("short", "It Is Paris"),
        ("short", "they are here"),
        ("short", "is"),
        ("short", "Lush Ltd. WERE"),
        ("short", "Suicide Squad (film)"),  # a title's disambiguation is not the answer
        ("short", "is. Paris"),  # a verb is no abbreviation
        ("short", "Yolanda Adams) Step 1"),  # a parenthesis closes the answer
        ("text", "ANSWER is Paris"),
        ("text", "Answer"),
    ],
)
def test_typed_near_misses_are_refused(typed: dict[str, StepGrammar], answer_type: str, answer: str) -> None:
    with pytest.raises(ParseError):
        typed[answer_type].parse(f"Thought: done\nanswer: {answer}\n")
    with pytest.raises(ParseError):
        closed_book_grammar(answer_type).parse(f"Some reasoning.\nanswer: {answer}\n")


@pytest.mark.parametrize(("answer_type", "answer"), [("number", "57."), ("yes-no", "yes.")])
def test_a_step_answer_with_a_closing_point_is_refused(
    typed: dict[str, StepGrammar], answer_type: str, answer: str
) -> None:
    with pytest.raises(ParseError):  # a closed-book answer may end with one (below); a step's may not
        typed[answer_type].parse(f"Thought: done\nanswer: {answer}\n")


@pytest.mark.parametrize(
    ("line", "answer_type", "answer"),
    [
        ("So (answer: 63)", "number", "63"),
        ("answer: 57.", "number", "57"),
        ("answer: 2.5).", "number", "2.5"),
        ("Thus (answer: yes).", "yes-no", "yes"),
        ('answer: "The Wall"', "short", "The Wall"),
        ('answer: "The Wall"', "text", '"The Wall"'),
        ("answer: C. W. Grafton.", "short", "C. W. Grafton"),
        ("answer: Kansas.", "short", "Kansas"),
        ("answer: Yolanda Adams)", "short", "Yolanda Adams"),
    ],
)
def test_closing_marks_after_a_closed_book_answer_are_not_part_of_it(
    line: str, answer_type: AnswerType, answer: str
) -> None:
    assert closed_book_grammar(answer_type).parse(f"Reasoning.\n{line}\n").input == answer


@pytest.mark.parametrize(
    ("answer_type", "answer"),
    [
        *[("number", "57"), ("number", "-1,234.5"), ("number", "+0.25"), ("yes-no", "Yes"), ("yes-no", "NO")],
        *[("short", "the Glass Orchard"), ("short", " ".join(["w"] * SHORT_ANSWER_MAX_WORDS))],
        *[("short", "Answers Unlimited"), ("short", "an answer"), ("short", "The answer")],
        *[("short", "C. W. Grafton"), ("short", "U.S. Navy"), ("short", "$10.5 million")],
        *[("short", "Rear Adm. J. Snyder")],
        *[("short", "Isle of Wight"), ("short", "wash"), ("short", "Wasps"), ("short", "Areas Where Ants Live")],
        *[("short", "This Time"), ("short", "wasn't"), ("short", "Isaac")],
    ],
)
def test_typed_answers_are_in_their_grammar(typed: dict[str, StepGrammar], answer_type: str, answer: str) -> None:
    assert typed[answer_type].parse(f"Thought: done\nanswer: {answer}\n").input.strip() == answer


@pytest.mark.parametrize("answer_type", ANSWER_TYPES)
def test_llama_cpp_accepts_every_typed_grammar(answer_type: AnswerType) -> None:
    tools = resolve_tools(["calculate", "wikipedia", "lookup"])
    assert llama_cpp_accepts(compose_step_grammar(tools, answer_type=answer_type).gbnf)
    assert llama_cpp_accepts(closed_book_grammar(answer_type).gbnf)
    assert llama_cpp_accepts(closed_book_grammar(answer_type).continuation_gbnf)


def test_the_agent_threads_its_answer_type_into_every_step_grammar() -> None:
    script = ["Thought: go\ncalculate: 1+1\n", "Thought: done\nanswer: 2 apples\n", "Thought: done\nanswer: 2\n"]
    backend = ScriptedBackend(*script)
    agent = Agent(backend, resolve_tools(["calculate"]), answer_type="number")
    trace = agent.run("q")
    assert trace.steps[1].action is None and trace.answer == "2"  # the validator holds the type too
    number = answer_grammar((), "number").to_gbnf().split(" ::= ", 1)[1].strip()  # the number rule's body
    answering = [g for g in agent.grammars.values() if "answer" in g.commands]
    assert len(answering) == 3 and all(number in g.gbnf for g in answering)
    assert backend.grammars[1] == agent.grammars[Restriction.ALL].gbnf
