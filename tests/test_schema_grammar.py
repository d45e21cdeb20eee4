"""Grammars from JSON Schema (`tether.engine.schema`): for each schema shape, valid instances
(hypothesis-jsonschema) written as one line of JSON are in the grammar; texts drawn from the grammar
(its own Lark parser) are valid instances (jsonschema); near misses are refused; llama.cpp takes the
GBNF; what cannot be expressed is refused with an error naming the field."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from schema_instances import instances

from tether import Tool
from tether.engine.gbnf import Grammar, llama_cpp_accepts, may_produce, nested_repeat_size
from tether.engine.schema import MAX_NESTED_REPEAT_SIZE, grammar_from_schema
from tether.engine.schema_example import example_from_schema
from tether.engine.schema_json import shortest_text
from tether.errors import SchemaError, ToolRegistrationError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

PET = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "kind": {"enum": ["cat", "dog"]}},
    "required": ["name", "kind"],
    "additionalProperties": False,
}
SHAPES: dict[str, dict[str, Any]] = {
    "integer": {"type": "integer"},
    "bounded integer": {"type": "integer", "minimum": -40, "maximum": 1250},
    "exclusive integer": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
    "integer from 7": {"type": "integer", "minimum": 7},
    "integer to -3": {"type": "integer", "maximum": -3},
    "number": {"type": "number"},
    "non-negative number": {"type": "number", "minimum": 0},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "string": {"type": "string"},
    "short string": {"type": "string", "minLength": 2, "maxLength": 6},
    "pattern": {"type": "string", "pattern": "^[a-z]{2,8}@[a-z]+\\.(com|org)$"},
    "searched pattern": {"type": "string", "pattern": "[0-9]{3}"},
    "pattern and length": {"type": "string", "pattern": "^[A-Z][a-z]*$", "maxLength": 5},
    "mixed enum": {"enum": ["red", 3, True, None, 2.5]},
    "const": {"const": {"a": [1, "b"]}},
    "array": {"type": "array", "items": {"type": "integer"}},
    "bounded array": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
    "tuple": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "items": False},
    "object": {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "string", "maxLength": 5},
            "c": {"type": "boolean"},
            "d": {"type": "array", "items": {"type": "number"}, "maxItems": 2},
        },
        "required": ["b", "d"],
        "additionalProperties": False,
    },
    "all optional": {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "null"}},
        "additionalProperties": False,
    },
    "map": {"type": "object", "additionalProperties": {"type": "integer"}},
    "optional": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    "type list": {"type": ["string", "integer"]},
    "one of": {"oneOf": [{"type": "boolean"}, {"type": "string", "maxLength": 3}]},
    "all of one": {"allOf": [PET]},
    "typed any of": {"type": "integer", "anyOf": [{"minimum": 10, "maximum": 12}, {"enum": [0, "zero"]}]},
    "refs": {"$defs": {"Pet": PET}, "type": "array", "items": {"$ref": "#/$defs/Pet"}, "maxItems": 2},
    "recursive": {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
                "required": ["v"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/Node",
    },
    "any": {},
    "true": True,  # type: ignore[dict-item]
    "annotated": {"type": "string", "format": "date-time", "title": "When", "description": "A time."},
}


def compact(value: Any) -> str:
    """One line of JSON as a model writes it (DEL escaped: the grammar, as llama.cpp's, never writes it raw)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("\x7f", "\\u007f")


def spaced(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


@cache
def derived(name: str) -> Grammar:
    return grammar_from_schema(SHAPES[name])


@pytest.mark.parametrize("name", SHAPES)
def test_every_derived_grammar_is_one_bounded_line_llama_cpp_takes(name: str) -> None:
    grammar = derived(name)
    assert llama_cpp_accepts(grammar.to_gbnf())
    assert nested_repeat_size(grammar)[0] <= MAX_NESTED_REPEAT_SIZE
    assert not may_produce(grammar, "\n")
    assert grammar.start == "root"


@pytest.mark.parametrize("name", [n for n in SHAPES if n not in ("pattern", "searched pattern")])
@SETTINGS
@given(data=st.data())
def test_valid_instances_written_as_json_are_in_the_grammar(name: str, data: st.DataObject) -> None:
    schema = SHAPES[name]
    ordered = data.draw(instances(schema), label="instance")
    assert derived(name).accepts(compact(ordered)), compact(ordered)
    if name != "const":  # a const is written as it is given, compactly
        assert derived(name).accepts(spaced(ordered)), spaced(ordered)  # one space after : and ,


@pytest.mark.parametrize("name", SHAPES)
@SETTINGS
@given(data=st.data())
def test_texts_drawn_from_the_grammar_are_valid_instances(name: str, data: st.DataObject) -> None:
    grammar = derived(name)
    text = data.draw(from_lark(grammar.parser, start=grammar.lark_start), label="text")
    assume(len(text) < 2000)
    jsonschema.validate(json.loads(text), SHAPES[name])


@pytest.mark.parametrize("pattern", [r"^[a-z]{2,8}@[a-z]+\.(com|org)$", r"[0-9]{3}", r"^(ab|c)+x?$", r"^\d+-\w*$"])
@SETTINGS
@given(data=st.data())
def test_patterns_mean_what_the_regex_means(pattern: str, data: st.DataObject) -> None:
    grammar = grammar_from_schema({"type": "string", "pattern": pattern})
    text = data.draw(from_lark(grammar.parser, start=grammar.lark_start))
    assert re.search(pattern, json.loads(text))
    value = data.draw(st.from_regex(pattern).filter(lambda s: all(c.isascii() and c.isprintable() for c in s)))
    assume('"' not in value and "\\" not in value)  # the grammar writes no escapes for a pattern's characters
    assert grammar.accepts(compact(value))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("integer", "abc"),
        ("integer", "1.0"),
        ("integer", "01"),
        ("integer", "1\n"),
        ("bounded integer", "1251"),
        ("bounded integer", "-41"),
        ("exclusive integer", "0"),
        ("exclusive integer", "100"),
        ("integer from 7", "6"),
        ("integer to -3", "-2"),
        ("number", "1."),
        ("number", ".5"),
        ("non-negative number", "-1"),
        ("boolean", "True"),
        ("string", '"a\nb"'),
        ("string", '"a"b"'),
        ("short string", '"a"'),
        ("short string", '"abcdefg"'),
        ("pattern", '"ab@cd.net"'),
        ("searched pattern", '"12a"'),
        ("pattern and length", '"Abcdef"'),
        ("mixed enum", '"blue"'),
        ("array", "[1,]"),
        ("array", "[1 ,2]"),
        ("bounded array", "[]"),
        ("bounded array", "[true,true,true,true]"),
        ("tuple", '[1,"a",2]'),
        ("object", '{"d":[]}'),  # a required key missing
        ("object", '{"b":"x","d":[],"e":1}'),  # an undeclared key
        ("object", '{"d":[],"b":"x"}'),  # out of order
        ("object", '{"b":"x","d":[1,2,3]}'),
        ("object", '{"b": "x",  "d":[]}'),  # two spaces
        ("object", '{"b":"x",\n"d":[]}'),
        ("recursive", '{"kids":[]}'),
        ("refs", '[{"name":"a","kind":"cow"}]'),
        ("optional", '"1"'),
        ("typed any of", '"zero"'),
        ("typed any of", "13"),
    ],
)
def test_near_misses_are_refused(name: str, text: str) -> None:
    assert not derived(name).accepts(text)


@pytest.mark.parametrize(
    ("lo", "hi"), [(0, 9), (3, 3), (-15, 1234), (-1000, -999), (99, 101), (None, -7), (-7, None), (1, None)]
)
def test_integer_ranges_are_exact(lo: int | None, hi: int | None) -> None:
    schema: dict[str, Any] = {"type": "integer"}
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    grammar = grammar_from_schema(schema)
    for n in range((lo if lo is not None else hi - 1200) - 30, (hi if hi is not None else lo + 1200) + 30):  # type: ignore[operator]
        inside = (lo is None or n >= lo) and (hi is None or n <= hi)
        assert grammar.accepts(str(n)) == inside, n


@settings(max_examples=50, deadline=None)
@given(lo=st.integers(-(10**7), 10**7), width=st.integers(0, 10**6), probe=st.integers(-(10**8), 10**8))
def test_any_integer_range_is_exact(lo: int, width: int, probe: int) -> None:
    grammar = grammar_from_schema({"type": "integer", "minimum": lo, "maximum": lo + width})
    for n in (probe, lo, lo - 1, lo + width, lo + width + 1, lo + width // 2):
        assert grammar.accepts(str(n)) == (lo <= n <= lo + width), n


@pytest.mark.parametrize(
    ("schema", "path", "words"),
    [
        ({"properties": {"when": {"type": "string", "pattern": "(?=x)y"}}}, "properties.when.pattern", "lookahead"),
        ({"type": "string", "pattern": "^(a)\\1$"}, "pattern", "backreference"),
        ({"type": "string", "pattern": "\\bword"}, "pattern", "word boundary"),
        ({"type": "string", "pattern": "(?i)abc"}, "pattern", "inline flag"),
        ({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}, "properties.n.multipleOf", ""),
        ({"type": "number", "maximum": 10}, "maximum", "number"),
        ({"type": "number", "minimum": 1}, "minimum", "number"),
        ({"not": {"type": "null"}}, "not", ""),
        ({"allOf": [{"type": "integer"}, {"minimum": 3}]}, "allOf", "more than one"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems", ""),
        ({"$ref": "https://example.com/s.json"}, "$ref", "local"),
        ({"$ref": "#/$defs/Missing"}, "$ref", "points to nothing"),
        ({"type": "object", "properties": {"a": {"type": "date"}}}, "properties.a.type", "unknown type"),
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required", "'b'"),
        ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties", ""),
        (False, "input", "false"),
        ({"type": "boolean", "enum": ["True", "False"]}, "enum", "other keywords"),  # as in some BFCL schemas
        ({"type": "integer", "minimum": 3, "const": 2}, "const", "other keywords"),
        (
            {"properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 50}, "maxItems": 10}}},
            "properties.tags",
            "multiply",
        ),
    ],
)
def test_what_cannot_be_expressed_is_refused_naming_the_field(schema: Any, path: str, words: str) -> None:
    with pytest.raises(SchemaError) as caught:
        grammar_from_schema(schema)
    assert isinstance(caught.value, ToolRegistrationError)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value)


def test_the_lookahead_message_reads_as_the_issue_asks() -> None:
    with pytest.raises(SchemaError, match=r"^properties\.when\.pattern: lookahead \(\?=\.\.\.\) cannot be expressed"):
        grammar_from_schema({"type": "object", "properties": {"when": {"type": "string", "pattern": "^(?=2)\\d+$"}}})


@pytest.mark.parametrize("name", SHAPES)
def test_the_example_is_valid_and_in_the_grammar(name: str) -> None:
    value = example_from_schema(SHAPES[name])
    jsonschema.validate(value, SHAPES[name])
    assert derived(name).accepts(compact(value))
    assert derived(name).accepts(shortest_text(derived(name)))


def test_enum_values_outside_the_other_keywords_are_left_out() -> None:
    grammar = grammar_from_schema({"type": "string", "maxLength": 3, "enum": ["abc", "abcd", 1, None]})
    assert grammar.accepts('"abc"')
    assert not any(grammar.accepts(t) for t in ('"abcd"', "1", "null"))


def test_plain_strings_are_bare_text() -> None:
    grammar = grammar_from_schema({"enum": ["C", "F"]}, plain=True)
    assert grammar.accepts("C") and not grammar.accepts('"C"')
    line = grammar_from_schema({"type": "string", "maxLength": 4}, plain=True)
    assert line.accepts('a "b') and not line.accepts("") and not line.accepts("abcde")
    assert not may_produce(line, "\n")
    with pytest.raises(SchemaError, match="newline"):
        grammar_from_schema({"type": "string", "pattern": "a\\nb"}, plain=True)
    with pytest.raises(SchemaError, match=r"^enum\.1: .*newline"):
        grammar_from_schema({"enum": ["a", "b\nc"]}, plain=True)
    assert grammar_from_schema({"enum": ["b\nc"]}).accepts('"b\\nc"')  # in JSON, the newline is escaped


def _nested_objects(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_nested_objects_cost_the_validator_in_proportion_to_their_depth() -> None:
    """Each object is a rule of its own: inlined, Lark expanded 2**depth alternatives (9 levels: 14 s)."""
    shallow, deep = grammar_from_schema(_nested_objects(2)), grammar_from_schema(_nested_objects(24))
    assert len(deep.lark_source) < 12 * len(shallow.lark_source)
    text = '{"a":' * 24 + '"x"' + "}" * 24
    assert deep.accepts(text) and not deep.accepts(text[:-1])


def test_a_schema_nested_past_the_limit_is_one_schema_error_not_a_recursion_error() -> None:
    with pytest.raises(SchemaError, match="nests more than 64 objects and arrays deep"):
        Tool.from_schema("deep", "Deep.", _nested_objects(3000), lambda args: "")
    with pytest.raises(SchemaError, match="nests more than 64"):
        grammar_from_schema(_nested_objects(3000))
