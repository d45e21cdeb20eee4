"""Valid instances of a JSON Schema, for property tests: hypothesis-jsonschema's `from_schema` for
everything but objects, which are drawn here (hypothesis-jsonschema 0.23.1's object strategy calls a
Hypothesis internal that Hypothesis 6.170 no longer has: `'many' object has no attribute 'more'`).
Each object's keys come in its `properties` order, the order a derived grammar writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

__all__ = ["instances"]


def _resolve(ref: str, root: Any) -> Any:
    target = root
    for part in ref[2:].split("/"):
        target = target[part]
    return target


def instances(schema: Any, root: Any = None, depth: int = 0) -> st.SearchStrategy[Any]:
    """Small values valid under `schema` (recursive definitions stop after a few levels)."""
    root = schema if root is None else root
    if not isinstance(schema, Mapping):
        return from_schema(schema)
    if "$ref" in schema:
        return instances(_resolve(schema["$ref"], root), root, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            kind = {"type": schema["type"]} if "type" in schema else {}
            return st.one_of([instances({**kind, **option}, root, depth + 1) for option in schema[key]])
    if "allOf" in schema:
        return instances(schema["allOf"][0], root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "object" and "enum" not in schema and "const" not in schema:
        props = schema.get("properties", {})
        if not props:
            values = schema.get("additionalProperties", True)
            inner = instances(values if isinstance(values, Mapping) else {}, root, depth + 1)
            return st.dictionaries(st.text(max_size=4), inner, max_size=0 if values is False else 3)
        required = set(schema.get("required", []))
        if depth > 3:  # deep enough: only what must be there
            props = {k: v for k, v in props.items() if k in required}
        parts = {k: instances(v, root, depth + 1) for k, v in props.items()}
        drawn = st.fixed_dictionaries(
            {k: s for k, s in parts.items() if k in required},
            optional={k: s for k, s in parts.items() if k not in required},
        )
        return drawn.map(lambda d: {k: d[k] for k in props if k in d})
    if "prefixItems" in schema:
        return st.tuples(*(instances(s, root, depth + 1) for s in schema["prefixItems"])).map(list)
    if kind == "array" and _holds_objects(schema, root):
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", low + (0 if depth > 3 else 3))
        return st.lists(instances(schema.get("items", {}), root, depth + 1), min_size=low, max_size=high)
    leaf = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    return from_schema(leaf)


def _holds_objects(schema: Any, root: Any, seen: frozenset[str] = frozenset()) -> bool:
    if not isinstance(schema, Mapping):
        return False
    if "$ref" in schema:
        ref = schema["$ref"]
        return ref not in seen and _holds_objects(_resolve(ref, root), root, seen | {ref})
    if schema.get("type") == "object" or "properties" in schema:
        return True
    parts = [schema.get("items"), *schema.get("prefixItems", []), *schema.get("anyOf", []), *schema.get("oneOf", [])]
    return any(_holds_objects(p, root, seen) for p in parts)
