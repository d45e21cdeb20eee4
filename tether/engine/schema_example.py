"""A small valid instance of a JSON Schema: the example a derived tool shows the model.

Why: every tool shows the model one example call, and a tool from an MCP server or a typed function
has none written by hand. The example is read from the schema the way a person would write one (the
schema's own `examples` or `default`, an enum's first value, the required keys only, one list item),
then checked against both the schema (jsonschema) and the derived grammar; where that fails, the
shortest text of the grammar is used instead, which is valid by construction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import lark
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

from tether.engine.schema import grammar_from_schema
from tether.engine.schema_json import follow_ref, shortest_text

__all__ = ["example_from_schema"]

_NONE = object()  # no example found on this branch
_MAX_DEPTH = 6  # recursive definitions stop here


def example_from_schema(schema: Mapping[str, Any] | bool, *, where: str = "input") -> Any:
    """A small value valid under `schema` (SchemaError when the schema has no grammar)."""
    grammar = grammar_from_schema(schema, where=where)
    value = _example(schema, schema, 0)
    if value is not _NONE:
        try:
            grammar.parser.parse(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        except (lark.LarkError, TypeError, ValueError):
            value = _NONE
    if value is not _NONE and validator_for(schema)(schema).is_valid(value):
        return value
    return json.loads(shortest_text(grammar))


def _example(schema: Any, root: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return _NONE
    if schema is True or not isinstance(schema, Mapping):
        return "text" if schema is True else _NONE
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("$ref"), str):
        try:
            return _example(follow_ref(root, schema["$ref"]), root, depth + 1)
        except LookupError:
            return _NONE
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            options = sorted(schema[key], key=lambda s: isinstance(s, Mapping) and s.get("type") == "null")
            return next((v for v in (_example(o, root, depth + 1) for o in options) if v is not _NONE), _NONE)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = next((k for k, keys in _IMPLIED if schema.keys() & keys), None)
    maker = _MAKERS.get(kind) if isinstance(kind, str) else None
    return "text" if maker is None else maker(schema, root, depth)


def _object(schema: Mapping[str, Any], root: Any, depth: int) -> Any:
    required = schema.get("required", [])
    found = {k: _example(v, root, depth + 1) for k, v in schema.get("properties", {}).items() if k in required}
    return _NONE if _NONE in found.values() else found


def _array(schema: Mapping[str, Any], root: Any, depth: int) -> Any:
    if "prefixItems" in schema:
        items = [_example(s, root, depth + 1) for s in schema["prefixItems"]]
        return _NONE if _NONE in items else items
    count = schema.get("minItems", 0) or (1 if schema.get("maxItems", 1) else 0)
    item = _example(schema.get("items", True), root, depth + 1) if count else None
    return [] if not count else _NONE if item is _NONE else [item] * int(count)


def _string(schema: Mapping[str, Any], root: Any, depth: int) -> Any:
    if "pattern" in schema:
        return _NONE  # the grammar's shortest text holds a matching one
    lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
    text = "text" + "x" * max(0, lo - 4)
    return text if hi is None else text[: int(hi)]


def _integer(schema: Mapping[str, Any], root: Any, depth: int) -> Any:
    lo = max([math.ceil(schema["minimum"])] if "minimum" in schema else [], default=None)
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        lo = max(lo if lo is not None else -math.inf, math.floor(schema["exclusiveMinimum"]) + 1)
    if lo is not None and lo > 0:
        return int(lo)
    hi = math.floor(schema["maximum"]) if isinstance(schema.get("maximum"), (int, float)) else None
    return 0 if hi is None or hi >= 0 else hi


_MAKERS: dict[str, Callable[[Mapping[str, Any], Any, int], Any]] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": lambda s, r, d: 0,
    "boolean": lambda s, r, d: True,
    "null": lambda s, r, d: None,
}
_IMPLIED = (
    ("object", {"properties", "required", "additionalProperties"}),
    ("array", {"items", "prefixItems", "minItems", "maxItems"}),
    ("string", {"minLength", "maxLength", "pattern"}),
    ("number", {"minimum", "maximum"}),
)
