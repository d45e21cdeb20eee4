"""Property tests over real tool schemas: every function of BFCL's simple_python and multiple sets
(753 distinct definitions, from the bfcl-eval wheel that scripts/bootstrap fetches), converted to JSON
Schema as BFCL converts them. All of them go through registration (at least 95% must register); a
fixed-seed sample goes through the round trip both ways: valid instances (hypothesis-jsonschema,
through tests/schema_instances.py) written as compact or default-spaced JSON are in the derived
grammar, and texts drawn from the grammar are valid instances (jsonschema)."""

from __future__ import annotations

import json
import random
from functools import cache
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from schema_instances import instances

from tether.engine.gbnf import Grammar
from tether.engine.schema import grammar_from_schema
from tether.engine.tool import Tool
from tether.errors import ToolRegistrationError
from tether.evaluation.bfcl import json_schema
from tether.evaluation.bfcl_data import open_category, read_items

CATEGORIES = ("simple_python", "multiple")
SAMPLE = 64  # schemas in the round-trip tests (of 753), drawn with a fixed seed
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@cache
def functions() -> dict[str, dict[str, Any]]:
    """Every distinct function definition of the two sets, keyed `<name>#<n>` (names repeat)."""
    found: dict[str, dict[str, Any]] = {}
    for category in CATEGORIES:
        path, questions, answers = open_category(category)
        for item in read_items(path, questions, answers):
            for function in item.functions:
                found.setdefault(json.dumps(function, sort_keys=True), function)
    counts: dict[str, int] = {}
    keyed = {}
    for function in found.values():
        counts[function["name"]] = counts.get(function["name"], 0) + 1
        keyed[f"{function['name']}#{counts[function['name']]}"] = function
    return keyed


def sample() -> list[str]:
    supported = [k for k in sorted(functions()) if derived(k) is not None]
    return random.Random(0).sample(supported, SAMPLE)


@cache
def derived(key: str) -> Grammar | None:
    try:
        return grammar_from_schema(schema(key))
    except ToolRegistrationError:
        return None


def schema(key: str) -> dict[str, Any]:
    return json_schema(functions()[key]["parameters"])


def test_the_sets_hold_the_expected_functions() -> None:
    assert len(functions()) == 753


def test_at_least_95_percent_of_the_schemas_register_as_tools() -> None:
    refused = {}
    for key in functions():
        try:
            Tool.from_schema("f", "A function.", schema(key), lambda args: args)
        except ToolRegistrationError as exc:
            refused[key] = str(exc)
    assert len(refused) <= 0.05 * len(functions()), refused


@pytest.mark.parametrize("key", sample())
@SETTINGS
@given(data=st.data())
def test_valid_arguments_written_as_json_are_in_the_grammar(key: str, data: st.DataObject) -> None:
    grammar = derived(key)
    assert grammar is not None
    value = data.draw(instances(schema(key)), label="arguments")
    for text in (json.dumps(value, ensure_ascii=False, separators=(",", ":")), json.dumps(value, ensure_ascii=False)):
        assume("\x7f" not in text)  # the grammar (as llama.cpp's) never writes DEL raw
        assert grammar.accepts(text), text


@pytest.mark.parametrize("key", sample())
@SETTINGS
@given(data=st.data())
def test_texts_drawn_from_the_grammar_are_valid_arguments(key: str, data: st.DataObject) -> None:
    grammar = derived(key)
    assert grammar is not None
    text = data.draw(from_lark(grammar.parser, start=grammar.lark_start), label="text")
    assume(len(text) < 2000)
    jsonschema.validate(json.loads(text), schema(key))
