"""Typed final answers, on the scripted backend: `Agent(output_type=T)` narrows the answer grammar to
T's on every path that answers (the model's own answer, a forced one, closed-book mode, the fallback)
and puts the validated value on `trace.output`."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, field_validator

from tether import (
    Agent,
    AnswerSource,
    ConfigError,
    Limits,
    Mode,
    ParseError,
    Restriction,
    SchemaError,
    ScriptedBackend,
    StopReason,
    Tool,
    Trace,
)
from tether.engine.gbnf import llama_cpp_accepts
from tether.engine.typed import TypedText
from tether.testing import actions

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class City(BaseModel):
    name: str = Field(max_length=30)
    population: int = Field(ge=0)
    capital: bool = False


class Even(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def even(cls, n: int) -> int:
        if n % 2:
            raise ValueError("odd")
        return n


def step(command: str, text: str, thought: str = "go") -> str:
    return f"Thought: {thought}\n{command}: {text}\n"


def run(output_type: Any, *outputs: str, tools: list[Tool] | None = None, **options: Any) -> tuple[Trace, Agent]:
    limits = options.pop("limits", Limits(act_first=False, fallback=False))
    agent = Agent(ScriptedBackend(*outputs), tools or [], limits=limits, output_type=output_type, **options)
    return agent.run("q"), agent


@pytest.mark.parametrize(
    ("output_type", "text", "value"),
    [
        (int, "42", 42),
        (float, "-2.5e3", -2500.0),
        (bool, "false", False),
        (Literal["yes", "no"], "no", "no"),
        (Color, "green", Color.GREEN),
        (list[int], "[1, 2]", [1, 2]),
        (City, '{"name": "Oslo", "population": 709000}', City(name="Oslo", population=709000)),
        (int | None, "null", None),
    ],
)
def test_the_answer_is_typed_on_the_trace(output_type: Any, text: str, value: Any) -> None:
    trace, agent = run(output_type, step("answer", text))
    assert trace.answer == text and trace.output == value
    assert trace.stop_reason is StopReason.ANSWER and trace.answer_source is AnswerSource.AGENT
    for grammar in agent.grammars.values():
        assert llama_cpp_accepts(grammar.gbnf)
    Trace.model_validate_json(trace.model_dump_json())  # still JSON


@pytest.mark.parametrize(
    ("output_type", "text"),
    [
        (int, "forty-two"),
        (int, "42 apples"),
        (bool, "yes"),
        (Color, "blue"),
        (City, '{"name": "Oslo"}'),
        (City, '{"name": "Oslo", "population": -1}'),
        (City, "Oslo"),
    ],
)
def test_an_answer_outside_the_type_is_refused_by_the_grammar(output_type: Any, text: str) -> None:
    good = TypedText(output_type).example
    agent = Agent(ScriptedBackend(), [], output_type=output_type)
    with pytest.raises(ParseError):
        agent.grammars[Restriction.ALL].parse(step("answer", text))
    # a model that ignores the grammar (free mode) is told, and the run goes on
    trace, _ = run(output_type, step("answer", text), step("answer", good), mode=Mode.FREE)
    assert (trace.steps[0].observation or "").startswith("error: invalid step")
    assert trace.answer == good and trace.output == TypedText(output_type).parse(good)


def test_a_value_the_validator_refuses_leaves_the_output_empty() -> None:
    trace, _ = run(Even, step("answer", '{"n": 3}'))
    assert trace.answer == '{"n": 3}' and trace.output is None
    trace, _ = run(Even, step("answer", '{"n": 4}'))
    assert trace.output == Even(n=4)


def test_a_forced_answer_is_typed_too() -> None:
    echo = Tool(name="echo", description="Echo.", func=str, example="x")
    limits = Limits(max_steps=2, act_first=False, fallback=False)
    trace, agent = run(int, step("echo", "a"), step("answer", "7"), tools=[echo], limits=limits)
    assert trace.answer_source is AnswerSource.FORCED and trace.stop_reason is StopReason.STEP_LIMIT
    assert trace.output == 7
    forced = agent.grammars[Restriction.ANSWER_ONLY_LAST_STEP]
    assert forced.commands == ("answer",)
    with pytest.raises(ParseError):
        forced.parse(step("answer", "seven"))


def test_closed_book_mode_uses_the_typed_answer() -> None:
    backend = ScriptedBackend("Oslo has about 709k people.\nanswer: " + '{"name":"Oslo","population":709000}\n')
    trace = Agent(backend, [], mode="closed-book", output_type=City).run("q")
    assert trace.answer_source is AnswerSource.CLOSED_BOOK
    assert trace.output == City(name="Oslo", population=709000)
    grammar = backend.grammars[0]
    assert grammar is not None and '"\\"population\\":"' in grammar
    assert "JSON, e.g." in backend.prompts[0]  # the prompt says what the answer line holds


def test_the_fallback_uses_the_typed_answer() -> None:
    echo = Tool(name="echo", description="Echo.", func=str, example="x")
    backend = ScriptedBackend(step("echo", "a"), "I am sure.\nanswer: red\n")
    limits = Limits(max_steps=2, act_first=False, fallback=True)
    trace = Agent(backend, [echo], limits=limits, output_type=Color).run("q")
    assert trace.answer_source is AnswerSource.FALLBACK and trace.output is Color.RED
    fallback_grammar = backend.grammars[-1]
    assert fallback_grammar is not None and '"red" | "green"' in fallback_grammar
    assert "one of: red, green" in backend.prompts[-1]


def test_a_cut_fallback_pass_continues_into_the_typed_answer() -> None:
    echo = Tool(name="echo", description="Echo.", func=str, example="x")
    backend = ScriptedBackend(step("echo", "a"), "thinking " * 200, " 12\n")
    limits = Limits(max_steps=2, act_first=False, fallback=True, max_reasoning_tokens=16)
    trace = Agent(backend, [echo], limits=limits, output_type=int).run("q")
    assert trace.answer == "12" and trace.output == 12
    assert backend.grammars[-1] is not None and "jint" in backend.grammars[-1]


def test_output_type_and_answer_type_together_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="output_type"):
        Agent(ScriptedBackend(), [], output_type=int, answer_type="number")


def test_an_output_type_with_no_grammar_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"^output_type set\[int\]: uniqueItems: "):
        Agent(ScriptedBackend(), [], output_type=set[int])


def test_a_str_output_keeps_the_text_answer() -> None:
    trace, agent = run(str, step("answer", "Oslo, Norway"))
    assert trace.output == "Oslo, Norway"
    plain = Agent(ScriptedBackend(), [], limits=Limits(act_first=False))
    assert agent.grammars[Restriction.ALL].gbnf == plain.grammars[Restriction.ALL].gbnf


def test_without_an_output_type_the_output_is_none() -> None:
    trace = Agent(ScriptedBackend(step("answer", "42")), [], limits=Limits(act_first=False)).run("q")
    assert trace.answer == "42" and trace.output is None


@pytest.mark.parametrize("output_type", [int, Color, City, list[bool]])
@SETTINGS
@given(data=st.data())
def test_every_answer_the_grammar_admits_validates(output_type: Any, data: st.DataObject) -> None:
    agent = Agent(ScriptedBackend(), [], limits=Limits(act_first=False), output_type=output_type)
    grammar = agent.grammars[Restriction.ALL]
    action = data.draw(actions(grammar, max_repeat=4))
    assert grammar.parse(action.to_text()) == action
    typed = TypedText(output_type)
    typed.parse(action.input.strip())


@pytest.mark.parametrize("output_type", [int, Color, City])
@SETTINGS
@given(data=st.data())
def test_every_value_can_be_answered(output_type: Any, data: st.DataObject) -> None:
    typed = TypedText(output_type)
    if output_type is City:
        value = data.draw(st.builds(City, name=st.text(max_size=30), population=st.integers(0, 10**9)))
    else:
        value = data.draw(st.from_type(output_type))
    trace, _ = run(output_type, step("answer", typed.format(value)))
    assert trace.output == value
    assert json.loads(trace.model_dump_json())["answer"] == typed.format(value).strip()
