"""Typed tools: an input grammar derived from the tool's Python type (`int` is `42`, a pydantic model
one line of JSON), `@tool` on a function of several parameters, `Tool.from_schema`, and the widened
tool names. For each type, valid values (Hypothesis) written as text are in the grammar and validate
back to the same value, near misses are refused, and texts drawn from the grammar validate."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from pydantic import BaseModel, Field, StringConstraints
from schema_instances import instances
from typing_extensions import TypedDict

from tether import Agent, Limits, ScriptedBackend, Tool, compose_step_grammar, safe_tool_name, tool
from tether.engine.gbnf import llama_cpp_accepts, may_produce, nested_repeat_size
from tether.engine.schema import MAX_NESTED_REPEAT_SIZE
from tether.engine.typed import TypedText
from tether.errors import SchemaError, ToolInputError, ToolRegistrationError
from tether.testing import actions
from tether.tools import default_tools

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


class Unit(enum.Enum):
    C = "C"
    F = "F"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(BaseModel):
    city: str = Field(max_length=20)
    zip: Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")]


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)
    unit: Unit = Unit.C
    address: Address | None = None
    tags: list[str] = Field(default_factory=list, max_length=3)


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Move(TypedDict):
    piece: Literal["king", "queen", "pawn"]
    to: str


WORD = Annotated[str, StringConstraints(min_length=2, max_length=8, pattern=r"^[a-z]+$")]
TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": bool,
    "literal": Literal["C", "F"],
    "int literal": Literal[1, 2, 3],
    "enum": Unit,
    "int enum": Level,
    "constrained str": WORD,
    "short str": Annotated[str, StringConstraints(max_length=10)],
    "list": list[int],
    "optional": int | None,
    "model": Person,
    "dataclass": Point,
    "typeddict": Move,
    "tuple": tuple[int, str],
}


def typed(name: str) -> TypedText:
    return TypedText(TYPES[name])


def make(input_type: Any, **extra: Any) -> Tool:
    return Tool(name="t", description="A typed tool.", func=repr, input_type=input_type, **extra)


@pytest.mark.parametrize("name", TYPES)
def test_each_type_makes_a_tool_with_a_derived_grammar_and_example(name: str) -> None:
    t = make(TYPES[name])
    grammar = t.input_grammar
    assert llama_cpp_accepts(grammar.to_gbnf())
    assert nested_repeat_size(grammar)[0] <= MAX_NESTED_REPEAT_SIZE
    assert not may_produce(grammar, "\n")
    assert t.accepts(t.example)
    t.validate_input(t.example)


def values(name: str) -> st.SearchStrategy[Any]:
    tp = TYPES[name]
    if name in ("model", "dataclass", "typeddict"):
        return instances(TypedText(tp).schema).map(TypedText(tp).adapter.validate_python)
    if name == "constrained str":
        return st.from_regex(r"[a-z]{2,8}", fullmatch=True)
    if name == "float":
        return st.floats(allow_nan=False, allow_infinity=False)
    return st.from_type(tp)


@pytest.mark.parametrize("name", TYPES)
@SETTINGS
@given(data=st.data())
def test_valid_values_written_as_text_are_accepted_and_read_back(name: str, data: st.DataObject) -> None:
    t = typed(name)
    value = data.draw(values(name), label="value")
    if name == "short str":
        assume(len(value) <= 10 and value and "\n" not in value)
    text = t.format(value)
    t2 = make(TYPES[name])
    assert t2.accepts(text), text
    back = t2.validate_input(text)
    assert back == value or (isinstance(value, float) and math.isclose(back, value))
    assert t.format(back) == text  # text -> value -> text


@pytest.mark.parametrize("name", TYPES)
@SETTINGS
@given(data=st.data())
def test_texts_drawn_from_the_grammar_validate(name: str, data: st.DataObject) -> None:
    t = make(TYPES[name])
    grammar = t.input_grammar
    text = data.draw(from_lark(grammar.parser, start=grammar.lark_start), label="text")
    assume(len(text) < 1000 and not any("\ud800" <= c <= "\udfff" for c in text))  # no decoder writes a lone surrogate
    t.validate_input(text)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("int", "abc"),
        ("int", "1.5"),
        ("int", "4 2"),
        ("int", "42\n"),
        ("float", "one"),
        ("float", "1,5"),
        ("bool", "yes"),
        ("bool", "True"),
        ("literal", "K"),
        ("literal", '"C"'),
        ("int literal", "4"),
        ("enum", "c"),
        ("int enum", "3"),
        ("constrained str", "a"),
        ("constrained str", "Abc"),
        ("constrained str", "abcdefghi"),
        ("short str", ""),
        ("short str", "12345678901"),
        ("list", "[1,2,]"),
        ("list", "1,2"),
        ("optional", "none"),
        ("model", '{"age":3}'),  # a required key missing
        ("model", '{"name":"a","age":3,"nickname":"b"}'),  # an undeclared key
        ("model", '{"name":"a","age":151}'),
        ("model", '{"name":"a","age":3,"address":{"city":"x","zip":"1234"}}'),
        ("model", '{"name":"a","age":3,"unit":"K"}'),
        ("model", '{"name":"a",\n"age":3}'),
        ("model", "{'name':'a','age':3}"),
        ("dataclass", '{"y":1}'),
        ("typeddict", '{"piece":"rook","to":"e4"}'),
        ("tuple", '[1,"a",2]'),
    ],
)
def test_near_misses_are_refused_by_the_grammar(name: str, text: str) -> None:
    assert not make(TYPES[name]).accepts(text)


def test_an_int_tool_is_called_with_an_int() -> None:
    seen: list[Any] = []

    @tool
    def double(n: int) -> int:
        """Double a whole number."""
        seen.append(n)
        return 2 * n

    assert double.example == "0"
    assert double("21") == "42" and seen == [21]
    with pytest.raises(ToolInputError, match="valid integer"):
        double("many")  # past the grammar (a server that ignores it): pydantic says what it expected


def test_a_model_tool_gets_the_model() -> None:
    @tool
    def greet(person: Person) -> str:
        """Greet someone."""
        return f"hello {person.name}, {person.age}"

    assert greet('{"name": "Ada", "age": 36}') == "hello Ada, 36"
    assert json.loads(greet.example) == {"name": "text", "age": 0}


def test_a_function_of_several_parameters_takes_one_json_object() -> None:
    calls: list[tuple[Any, ...]] = []

    @tool
    def forecast(city: str, days: Annotated[int, Field(ge=1, le=7)] = 1, unit: Unit = Unit.C, /) -> str:
        """The weather forecast for a city."""
        calls.append((city, days, unit))
        return f"{city}: sunny for {days} days"

    @tool(description="Convert between units.")
    def convert(value: float, unit: Literal["C", "F"]) -> str:
        return f"{value}{unit}"

    assert forecast.example == '{"city":"text"}'
    assert forecast('{"city": "Paris", "days": 3}') == "Paris: sunny for 3 days"
    assert calls[-1] == ("Paris", 3, Unit.C)
    assert forecast.accepts('{"city":"Oslo","days":7,"unit":"F"}')
    assert not forecast.accepts('{"days":3}') and not forecast.accepts('{"city":"Oslo","days":8}')
    assert not forecast.accepts('{"city":"Oslo","weeks":1}')
    assert convert('{"value": 21.5, "unit": "C"}') == "21.5C"
    assert convert.description == "Convert between units."
    with pytest.raises(ToolInputError, match="unit"):
        convert('{"value": 1, "unit": "K"}')


def test_a_function_of_no_parameters_takes_an_empty_object() -> None:
    @tool
    def now() -> str:
        """The time."""
        return "noon"

    assert now.example == "{}" and now("{}") == "noon" and not now.accepts("")


def test_star_args_are_refused() -> None:
    with pytest.raises(ToolRegistrationError, match=r"\*args"):

        @tool
        def many(*words: str) -> str:
            """Join words."""
            return " ".join(words)


def test_a_plain_str_tool_still_needs_an_example_and_keeps_the_line_grammar() -> None:
    with pytest.raises(ToolRegistrationError, match="needs an example"):

        @tool
        def shout(text: str) -> str:
            """Shout."""
            return text.upper()

    t = make(str, example="anything at all")
    assert t.accepts("a line with \"quotes\" and 'more'") and not t.accepts("")


def test_the_built_in_tools_are_unchanged() -> None:
    for t in default_tools():
        assert t.input_type is str and t.input_schema is None
        assert t.accepts(t.example)


def test_a_type_with_no_grammar_is_refused_naming_the_tool_and_field() -> None:
    class Reading(BaseModel):
        when: Annotated[str, StringConstraints(pattern=r"\bcat\b")]  # pydantic itself refuses lookarounds

    with pytest.raises(SchemaError) as caught:
        make(Reading)
    assert str(caught.value).startswith("tool 't': properties.when.pattern: word boundary")
    assert caught.value.path == "properties.when.pattern"
    with pytest.raises(SchemaError, match=r"^tool 't': uniqueItems: "):
        make(set[int])


def test_a_hand_written_grammar_still_wins() -> None:
    t = make(int, example="7", grammar="root ::= [0-9]")
    assert t.accepts("7") and not t.accepts("42")


# ---------------------------------------------------------------- Tool.from_schema

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}


def test_from_schema_validates_with_jsonschema_and_passes_a_dict() -> None:
    got: list[Any] = []
    t = Tool.from_schema("weather.get-Forecast", "The forecast.", WEATHER, lambda d: got.append(d) or "ok")
    assert t.example == '{"city":"text"}'
    assert t('{"city": "Rome", "days": 2}') == "ok" and got == [{"city": "Rome", "days": 2}]
    assert t.accepts('{"city":"Rome","unit":"celsius"}') and not t.accepts('{"days":2}')
    with pytest.raises(ToolInputError, match=r"invalid input for weather.get-Forecast: days: 0 is less than"):
        t('{"city": "Rome", "days": 0}')
    with pytest.raises(ToolInputError, match="not JSON"):
        t("Rome")


@SETTINGS
@given(data=st.data())
def test_from_schema_texts_from_the_grammar_validate(data: st.DataObject) -> None:
    t = Tool.from_schema("weather", "The forecast.", WEATHER, lambda d: "ok")
    text = data.draw(from_lark(t.input_grammar.parser, start=t.input_grammar.lark_start))
    assert isinstance(t.validate_input(text), dict)


def test_from_schema_refusals_name_the_tool_and_field() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.5}}}
    with pytest.raises(SchemaError, match=r"^tool 'half': properties\.n\.multipleOf: "):
        Tool.from_schema("half", "Halves.", schema, lambda d: "ok")
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        Tool.from_schema("bad", "Bad.", {"type": 5}, lambda d: "ok")


def test_a_schema_tool_error_is_an_observation_in_a_run() -> None:
    t = Tool.from_schema("weather", "The forecast.", WEATHER, lambda d: f"sunny in {d['city']}")
    steps = [
        'Thought: a\nweather: {"city": "Rome"}\n',
        'Thought: b\nweather: {"town": "Rome"}\n',  # outside the grammar: an unconstrained model's mistake
        "Thought: c\nanswer: sunny\n",
    ]
    trace = Agent(ScriptedBackend(*steps), [t], limits=Limits(max_steps=4)).run("q")
    assert trace.steps[0].observation == "sunny in Rome"
    assert (trace.steps[1].observation or "").startswith("error: invalid step")
    assert trace.answer == "sunny"


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name", ["get_weather", "math.factorial", "Search-Docs", "a", "A" * 64, "x.y_z-W9", "thought", "Observation"]
)
def test_mcp_and_bfcl_names_are_tool_names(name: str) -> None:
    t = Tool(name=name, description="d", func=str, example="x")
    grammar = compose_step_grammar([t])
    assert grammar.parse(f"Thought: go\n{name}: x\n").command == name
    assert llama_cpp_accepts(grammar.gbnf)


@pytest.mark.parametrize("name", ["", "1st", "_x", "a b", "a/b", "é", "A" * 65, "answer", "Answer", "ANSWER"])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(ToolRegistrationError, match="safe_tool_name"):
        Tool(name=name, description="d", func=str, example="x")


def test_names_that_differ_only_in_punctuation_or_case_stay_apart() -> None:
    names = ["a_b", "a-b", "a.b", "A_b", "a_B", "ab", "a_b_", "a--b", "cmd", "x0"]
    tools = [Tool(name=n, description="d", func=str, example="x") for n in names]
    grammar = compose_step_grammar(tools)
    assert len({grammar.input_rules[n] for n in names}) == len(names)
    for n in names:
        assert grammar.parse(f"Thought: go\n{n}: x\n").command == n
    assert llama_cpp_accepts(grammar.gbnf)


@pytest.mark.parametrize("name", ["get weather", "1st-tool", "_private", "answer", "é-tool", "x" * 80, "ok.name"])
def test_safe_tool_name_makes_any_name_fit(name: str) -> None:
    safe = safe_tool_name(name)
    Tool(name=safe, description="d", func=str, example="x")
    assert safe_tool_name(safe) == safe
    if name == "ok.name":
        assert safe == name
    assert safe_tool_name("x" * 80) != safe_tool_name("x" * 79 + "y")


@SETTINGS
@given(data=st.data())
def test_tether_testing_draws_steps_whose_typed_inputs_validate(data: st.DataObject) -> None:
    person = Tool(name="person", description="A person.", func=repr, input_type=Person)
    tools = [person, Tool.from_schema("weather.get", "The forecast.", WEATHER, lambda d: "ok")]
    grammar = compose_step_grammar(tools)
    action = data.draw(actions(grammar, max_repeat=3))
    assert grammar.parse(action.to_text()) == action
    if not action.is_answer:
        next(t for t in tools if t.name == action.command).validate_input(action.input)
