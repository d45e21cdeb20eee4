"""A JSON-object input's arguments in a few words, for the prompt's tool list.

Why: a tool whose input is one JSON object (a several-parameter `@tool`, an MCP server's tool, a BFCL
function) is shown to the model by its description and one example. The example carries only the
required keys, so without this line a model never learns an optional argument exists, what a key
means, or which values an enum allows. The grammar still decides what can be written; this says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tether.engine.schema_json import follow_ref

__all__ = ["describe_arguments"]

_MAX_ENUM_SHOWN = 8
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    """Follow local `$ref`s (pydantic puts nested models in `$defs`), at most a few hops; None where one
    points to nothing."""
    for _hop in range(8):
        ref = schema.get("$ref") if isinstance(schema, Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        try:
            schema = follow_ref(root, ref)
        except LookupError:
            return None
    return schema


def _kind(spec: Any, root: Mapping[str, Any]) -> str:
    spec = _resolve(spec, root)
    if not isinstance(spec, Mapping):
        return "any"
    options = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(options, list) and options:
        return " or ".join(dict.fromkeys(_kind(o, root) for o in options))
    values = spec.get("enum")
    if "type" not in spec and isinstance(values, list) and values:
        return " or ".join(dict.fromkeys(_JSON_TYPES.get(type(v), "any") for v in values))
    kind = spec.get("type", "object" if "properties" in spec else "any")
    if isinstance(kind, list):
        kind = " or ".join(map(str, kind))
    if kind == "array" and "items" in spec:
        return f"array of {_kind(spec['items'], root)}"
    return str(kind)


def _argument(name: str, spec: Any, required: bool, root: Mapping[str, Any]) -> str:
    resolved = _resolve(spec, root)
    notes = [_kind(spec, root), "required" if required else "optional"]
    described = ""
    if isinstance(resolved, Mapping):
        values = resolved.get("enum")
        if isinstance(values, list) and values:
            shown = ", ".join(map(str, values[:_MAX_ENUM_SHOWN])) + (", ..." if len(values) > _MAX_ENUM_SHOWN else "")
            notes.append(f"one of {shown}")
        if resolved.get("default") is not None and not required:
            notes.append(f"default {resolved['default']}")
        described = str(resolved.get("description") or "").strip().rstrip(".")  # a title only echoes the key
    text = f"{name} ({', '.join(notes)})"
    return f"{text}: {described}" if described else text


def describe_arguments(schema: Mapping[str, Any] | None) -> str:
    """`base (integer, required): The base; unit (string, optional, default cm)` for an object schema's
    properties, in the schema's order; "" for any other schema (a number, a string, no schema)."""
    if not isinstance(schema, Mapping):
        return ""
    resolved = _resolve(schema, schema)
    properties = resolved.get("properties") if isinstance(resolved, Mapping) else None
    if not isinstance(properties, Mapping) or not properties:
        return ""
    required = set(resolved.get("required") or ())
    return "; ".join(_argument(str(n), s, n in required, schema) for n, s in properties.items())
