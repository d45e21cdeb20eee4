"""A JSON Schema as a tool-input grammar: one line of compact JSON that can only hold a valid value.

Why: MCP servers, BFCL and pydantic describe a tool's arguments as JSON Schema. A grammar derived
from the schema lets even a 135M model write only arguments that validate, instead of learning from a
validation error one step later. The grammar is tether's own AST, so the decoder's GBNF and the
validator's Lark parser hold exactly the same language; llama.cpp's json-schema-to-grammar served as
the reference for the JSON rules (one optional space after `:` and `,`, as models write `{"a": 1}`).

The grammar may be narrower than the schema (keys in the schema's order, which is the order pydantic
writes them, an optional one may be left out; no undeclared keys; no `1.0` for an integer), but never
wider: a keyword that cannot be expressed (a lookahead in a `pattern`, `multipleOf`, `not`, a
`minimum` on a float) is refused with a `SchemaError` naming the field's JSON path. `oneOf` is read as
`anyOf` (pydantic's tagged unions are disjoint; a tool's jsonschema validation still judges the rest).
`format`, `title`, `description` and other annotations are ignored, as JSON Schema allows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

from tether.engine.gbnf import (
    LLAMA_MAX_REPETITIONS,
    Alt,
    CharClass,
    Grammar,
    Lit,
    Node,
    Ref,
    Repeat,
    Seq,
    check_llama_repetitions,
    nested_repeat_size,
)
from tether.engine.schema_json import (
    DIGIT,
    SEP,
    SHARED,
    SHARED_NEEDS,
    SPACE,
    compact,
    digits_between,
    fit_length,
    follow_ref,
)
from tether.engine.schema_pattern import pattern_node
from tether.errors import GrammarError, SchemaError

__all__ = ["MAX_NESTED_REPEAT_SIZE", "MAX_SCHEMA_DEPTH", "check_schema_depth", "grammar_from_schema"]

MAX_NESTED_REPEAT_SIZE = 100
"""Largest product of nested repetition bounds an input grammar may have (see `nested_repeat_size`):
llama.cpp's per-token cost grows with it; three nested {0,9} (729) cost seconds per token."""

_REFUSED: tuple[str, ...] = ("not", "if", "then", "else", "dependentSchemas", "dependentRequired", "dependencies")
_REFUSED += ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef")
_REFUSED_BY_TYPE = {
    "object": ("patternProperties", "propertyNames", "minProperties", "maxProperties"),
    "array": ("contains", "minContains", "maxContains"),
    "number": ("multipleOf", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    "integer": ("multipleOf",),
}
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


class _Converter:
    def __init__(self, root: Any, where: str) -> None:
        self.root = root
        self.where = where
        self.rules: dict[str, Node] = {}
        self.refs: dict[str, str] = {}  # $ref -> its rule
        self.paths: dict[str, str] = {}  # rule -> JSON path, for errors found once the grammar is whole

    def fail(self, path: str, problem: str) -> SchemaError:
        path = path or self.where
        return SchemaError(f"{path}: {problem}", path=path)

    def shared(self, name: str) -> Ref:
        if name not in self.rules:
            self.rules[name] = SHARED[name]
            for dep in SHARED_NEEDS.get(name, ()):
                self.shared(dep)
        return Ref(name)

    def rule(self, node: Node, path: str) -> Ref:
        name = f"j{len(self.paths)}"
        self.rules[name], self.paths[name] = node, path
        return Ref(name)

    def visit(self, schema: Any, path: str, plain: bool = False) -> Node:
        if schema is True or (isinstance(schema, Mapping) and not (schema.keys() & _MEANINGFUL)):
            return self.shared("jvalue")
        if schema is False:
            raise self.fail(path, "the schema false admits no value")
        if not isinstance(schema, Mapping):
            raise self.fail(path, f"a schema must be an object or a boolean, not {type(schema).__name__}")
        at = (path + ".") if path else ""
        for key in _REFUSED:
            if key in schema:
                raise self.fail(at + key, f"{key!r} cannot be expressed in a grammar")
        if "$ref" in schema:
            return self.ref(schema, at)
        for key in ("allOf", "anyOf", "oneOf"):
            if key in schema:
                return self.combined(schema, key, at)
        if "const" in schema or "enum" in schema:
            key = "const" if "const" in schema else "enum"
            values = [schema["const"]] if key == "const" else schema["enum"]
            if not isinstance(values, list) or not values:
                raise self.fail(at + "enum", "an enum must be a non-empty list")
            kept = [(i, v) for i, v in enumerate(values) if _fits_the_rest(schema, v)]
            if not kept:  # e.g. an enum of strings under "type": "array" (BFCL has a few)
                raise self.fail(at + key, "no value of it satisfies the schema's other keywords")
            options = tuple(dict.fromkeys(self.literal(v, plain, f"{at}{key}.{i}") for i, v in kept))
            return options[0] if len(options) == 1 else Alt(options)
        kind = schema.get("type", _implied_type(schema))
        if isinstance(kind, list):
            if not kind:
                raise self.fail(at + "type", "an empty list of types admits no value")
            options = tuple(self.typed(schema, t, at, plain and t == "string") for t in dict.fromkeys(kind))
            return options[0] if len(options) == 1 else Alt(options)
        return self.typed(schema, kind, at, plain)

    def ref(self, schema: Mapping[str, Any], at: str) -> Node:
        ref = schema["$ref"]
        extra = sorted(schema.keys() & _MEANINGFUL - {"$ref"})
        if extra:
            raise self.fail(at + extra[0], "keywords beside a $ref cannot be expressed in a grammar")
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise self.fail(at + "$ref", f"only local references (#/...) can be followed, not {ref!r}")
        if ref not in self.refs:
            try:
                target = follow_ref(self.root, ref)
            except LookupError:
                raise self.fail(at + "$ref", f"{ref!r} points to nothing") from None
            name = self.refs[ref] = f"j{len(self.paths)}"
            self.paths[name] = at + "$ref"
            self.rules[name] = Lit("")  # a placeholder while a recursive definition refers to itself
            self.rules[name] = self.visit(target, ref[2:].replace("/", "."))
        return Ref(self.refs[ref])

    def combined(self, schema: Mapping[str, Any], key: str, at: str) -> Node:
        parts = schema[key]
        extra = sorted(schema.keys() & _MEANINGFUL - {key, "type"})
        if not isinstance(parts, list) or not parts:
            raise self.fail(at + key, f"{key} must be a non-empty list")
        if extra:
            raise self.fail(at + extra[0], f"keywords beside {key} cannot be expressed in a grammar")
        if key == "allOf":
            if len(parts) != 1:
                raise self.fail(at + key, "allOf of more than one schema cannot be expressed in a grammar")
            return self.visit(parts[0], f"{at}allOf.0")
        if "type" in schema:  # each option holds the type as well (both apply)
            parts = [{"type": schema["type"], **p} if isinstance(p, Mapping) and "type" not in p else p for p in parts]
        options = tuple(dict.fromkeys(self.visit(p, f"{at}{key}.{i}") for i, p in enumerate(parts)))
        return options[0] if len(options) == 1 else Alt(options)

    def literal(self, value: Any, plain: bool, path: str) -> Node:
        try:
            text = value if plain and isinstance(value, str) else compact(value)
        except (TypeError, ValueError):
            raise self.fail(path, f"{value!r} is not a JSON value") from None
        if "\n" in text:
            raise self.fail(path, f"{value!r} holds a newline, but an input is one line")
        return Lit(text)

    def typed(self, schema: Mapping[str, Any], kind: Any, at: str, plain: bool) -> Node:
        if kind not in _TYPES and kind is not None:
            raise self.fail(at + "type", f"unknown type {kind!r} (use {', '.join(_TYPES)})")
        for key in _REFUSED_BY_TYPE.get(kind, ()):
            if key in schema:
                article = "an" if kind[0] in "aeiou" else "a"
                raise self.fail(at + key, f"{key!r} on {article} {kind} cannot be expressed in a grammar")
        if kind is None:
            return self.shared("jvalue")
        if kind == "object":
            return self.object(schema, at)
        if kind == "array":
            return self.array(schema, at)
        if kind == "string":
            return self.string(schema, at, plain)
        if kind == "integer":
            return self.integer(schema, at)
        if kind == "number":
            return self.number(schema, at)
        return Alt((Lit("true"), Lit("false"))) if kind == "boolean" else Lit("null")

    def object(self, schema: Mapping[str, Any], at: str) -> Node:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", True)
        if not isinstance(props, Mapping) or not isinstance(required, list):
            raise self.fail(at + "properties", "properties must be an object and required a list")
        missing = [k for k in required if k not in props]
        if missing:
            raise self.fail(f"{at}required", f"required key {missing[0]!r} is not in properties")
        if not props:
            if extra is False:
                return Lit("{}")
            value = self.shared("jvalue") if extra is True else self.visit(extra, at + "additionalProperties")
            member = Seq((self.shared("jstring"), Lit(":"), SPACE, value))
            return Seq((Lit("{"), Alt((Seq((member, Repeat(Seq((SEP, member)), 0, None))), Lit(""))), Lit("}")))
        members = [Seq((Lit(compact(k) + ":"), SPACE, self.visit(v, f"{at}properties.{k}"))) for k, v in props.items()]
        needed = [k in required for k in props]
        # after[-1]: the members from here on once one was written (each after a comma); first[-1]: before any
        after: list[Node] = [Lit("")]
        first: list[Node] = [Lit("")]
        for member, must in zip(reversed(members), reversed(needed), strict=True):
            rest = after[-1]
            if not isinstance(rest, (Lit, Ref)):
                rest = self.rule(rest, at + "properties")
            follow = Seq((SEP, member))
            after.append(Seq((follow, rest)) if must else Seq((Alt((follow, Lit(""))), rest)))
            first.append(Seq((member, rest)) if must else Alt((Seq((member, rest)), first[-1])))
        # a rule of its own, as an array's: inlined, the optional spaces of nested objects multiply the
        # alternatives Lark expands in one rule (2 to the depth: 9 levels took 14 s to build a parser)
        return self.rule(Seq((Lit("{"), first[-1], Lit("}"))), at.rstrip("."))

    def array(self, schema: Mapping[str, Any], at: str) -> Node:
        lo, hi = _whole(schema.get("minItems", 0)), schema.get("maxItems")
        hi = None if hi is None else _whole(hi)
        if lo is None or (hi is None and "maxItems" in schema):
            raise self.fail(at + "minItems", "minItems and maxItems must be whole numbers")
        if schema.get("uniqueItems") is True:
            raise self.fail(at + "uniqueItems", "uniqueItems cannot be expressed in a grammar")
        if "prefixItems" in schema:
            prefix = schema["prefixItems"]
            if schema.get("items", True) is not False and hi != len(prefix):
                raise self.fail(at + "prefixItems", "prefixItems followed by more items cannot be expressed")
            if lo > len(prefix):
                raise self.fail(at + "minItems", "minItems above the number of prefixItems admits no value")
            items = [self.visit(s, f"{at}prefixItems.{i}") for i, s in enumerate(prefix)]
            if not items:
                return Lit("[]")
            return Seq((Lit("["), items[0], *(Seq((SEP, i)) for i in items[1:]), Lit("]")))
        if hi is not None and hi < lo:
            raise self.fail(at + "maxItems", "maxItems below minItems admits no value")
        item = self.rule(self.visit(schema.get("items", True), at + "items"), at + "items")
        more = Seq((SEP, item))
        if hi == 0:
            return Lit("[]")
        body: Node = Seq((item, Repeat(more, max(lo - 1, 0), None if hi is None else hi - 1)))
        return self.rule(Seq((Lit("["), body if lo else Alt((body, Lit(""))), Lit("]"))), at.rstrip("."))

    def string(self, schema: Mapping[str, Any], at: str, plain: bool) -> Node:
        lo = _whole(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        hi = None if hi is None else _whole(hi)
        if lo is None or (hi is None and "maxLength" in schema):
            raise self.fail(at + "minLength", "minLength and maxLength must be whole numbers")
        if hi is not None and hi < lo:
            raise self.fail(at + "maxLength", "maxLength below minLength admits no value")
        hi = None if hi is None else min(hi, LLAMA_MAX_REPETITIONS)  # narrower, never wider
        if plain:  # a bare line, as the default line grammar: non-empty, at most 200 characters unless told
            lo, hi = max(lo, 1), 200 if hi is None else hi
            if hi < lo:
                raise self.fail(at + "maxLength", "an input line is never empty, so maxLength 0 admits none")
        if "pattern" in schema:
            if not isinstance(schema["pattern"], str):
                raise self.fail(at + "pattern", "a pattern must be a string")
            body = pattern_node(schema["pattern"], json=not plain, path=at + "pattern")
            lo, hi = _whole(schema.get("minLength", 0)) or 0, schema.get("maxLength")  # the schema's own bounds
            fitted = fit_length(body, lo, None if hi is None else min(int(hi), LLAMA_MAX_REPETITIONS))
            if fitted is None:
                raise self.fail(at + "pattern", "this pattern together with minLength/maxLength cannot be expressed")
            body = fitted
        else:
            body = Repeat(CharClass((("\n", "\n"),), negated=True) if plain else self.shared("jchar"), lo, hi)
        return body if plain else Seq((Lit('"'), body, Lit('"')))

    def integer(self, schema: Mapping[str, Any], at: str) -> Node:
        lo, hi = (
            _bound(schema, "minimum", "exclusiveMinimum", math.ceil, 1),
            _bound(schema, "maximum", "exclusiveMaximum", math.floor, -1),
        )
        if isinstance(lo, str) or isinstance(hi, str):
            raise self.fail(at + str(lo if isinstance(lo, str) else hi), "must be a number")
        if lo is None and hi is None:
            return self.shared("jint")
        if lo is not None and hi is not None and hi < lo:
            raise self.fail(at + "maximum", "maximum below minimum admits no value")
        options: list[Node] = []
        if lo is None or lo < 0:  # the negative part, written as "-" and its magnitude
            options.append(
                Seq((Lit("-"), digits_between(max(1, -hi) if hi is not None else 1, None if lo is None else -lo)))
            )
        if hi is None or hi >= 0:
            options.append(digits_between(max(0, lo) if lo is not None else 0, hi))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def number(self, schema: Mapping[str, Any], at: str) -> Node:
        if "minimum" not in schema:
            return self.shared("jnumber")
        if schema["minimum"] != 0 or isinstance(schema["minimum"], bool):
            raise self.fail(at + "minimum", "a minimum other than 0 on a number cannot be expressed")
        digits = Alt((Lit("0"), Seq((CharClass((("1", "9"),)), Repeat(DIGIT, 0, None)))))
        return Seq((digits, self.shared("jfrac"), self.shared("jexp")))


_MEANINGFUL = frozenset(_REFUSED).union(  # the keywords that constrain a value (the rest are annotations, ignored)
    ("type", "$ref", "allOf", "anyOf", "oneOf", "const", "enum", "properties", "required", "additionalProperties"),
    ("items", "prefixItems", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "pattern"),
    ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "patternProperties"),
    ("propertyNames", "minProperties", "maxProperties", "contains", "minContains", "maxContains"),
)


def _fits_the_rest(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether an enum's or const's value also satisfies the schema's other keywords (its `type`,
    bounds, ...): the grammar writes only those, never a value the schema refuses."""
    rest = {k: v for k, v in schema.items() if k not in ("enum", "const", "$defs", "definitions")}
    if rest.keys() & {"$ref", "allOf", "anyOf", "oneOf"}:  # the literal alone decides (rare beside an enum)
        rest = {k: v for k, v in rest.items() if k == "type"}
    try:
        return bool(validator_for(rest)(rest).is_valid(value))
    except jsonschema.exceptions.SchemaError:
        return False


def _implied_type(schema: Mapping[str, Any]) -> str | None:
    """The type a schema without `type` constrains (JSON Schema applies each keyword to its own type;
    a schema whose keywords all belong to one type is read as that type), or None for any value."""
    for kind, keys in (
        ("object", ("properties", "required", "additionalProperties")),
        ("array", ("items", "prefixItems", "minItems", "maxItems")),
        ("string", ("minLength", "maxLength", "pattern")),
        ("number", ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")),
    ):
        if schema.keys() & set(keys):
            return kind
    return None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        return None
    return int(value)


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, rounding: Any, step: int) -> int | str | None:
    """An integer bound from `minimum`/`exclusiveMinimum` (or the maximum pair): the tighter of the
    two, or the name of the keyword that is not a number."""
    found: list[int] = []
    for key, shift in ((inclusive, 0), (exclusive, step)):
        if key in schema:
            value = schema[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return key
            whole = rounding(value)
            found.append(whole + shift if whole == value else whole)
    if not found:
        return None
    return max(found) if step > 0 else min(found)


MAX_SCHEMA_DEPTH = 64
"""Most objects and arrays a schema may nest (real tool schemas: at most 7 in all of BFCL's); deeper, the
JSON Schema validator and the converter would run out of recursion (a hostile MCP server's schema)."""


def check_schema_depth(schema: Any, where: str = "input") -> None:
    """SchemaError when `schema` nests objects and arrays more than MAX_SCHEMA_DEPTH deep (measured
    without recursion, so any depth is measured)."""
    stack = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (Mapping, list)):
            if depth > MAX_SCHEMA_DEPTH:
                raise SchemaError(
                    f"{where}: the schema nests more than {MAX_SCHEMA_DEPTH} objects and arrays deep", path=where
                )
            children = value.values() if isinstance(value, Mapping) else value
            stack.extend((child, depth + 1) for child in children)


def grammar_from_schema(schema: Mapping[str, Any] | bool, *, where: str = "input", plain: bool = False) -> Grammar:
    """The grammar (start rule `root`) of one line of compact JSON holding a value valid under `schema`.

    `plain`: a string at the top (a `string` type, a string enum or const) is the bare text of the
    line, not a quoted JSON string (how a tool typed `Literal["C", "F"]` or a constrained `str` is
    called). SchemaError, naming the field's JSON path (or `where` for the whole schema), for what
    cannot be expressed, or what llama.cpp could not decode at a bounded cost."""
    check_schema_depth(schema, where)
    converter = _Converter(schema, where)
    converter.rules["root"] = Lit("")
    converter.rules["root"] = converter.visit(schema, "", plain)
    grammar = Grammar(converter.rules, "root")
    size, _ = nested_repeat_size(grammar)
    if size > MAX_NESTED_REPEAT_SIZE:  # name the innermost field whose rule nests too much (rules go inner first)
        path = next((p for r, p in converter.paths.items() if _nesting(grammar, r) > MAX_NESTED_REPEAT_SIZE), "")
        path = path or where
        raise SchemaError(
            f"{path}: bounds (maxLength, maxItems, ...) nested inside one another multiply to {size}, more than "
            f"{MAX_NESTED_REPEAT_SIZE}; llama.cpp would slow to seconds per token",
            path=path,
        )
    try:
        check_llama_repetitions(grammar)
    except GrammarError as exc:
        raise SchemaError(f"{where}: {exc}", path=where) from None
    return grammar


def _nesting(grammar: Grammar, start: str) -> int:
    """`nested_repeat_size` of the rules reachable from `start` alone."""
    reached, todo = {start}, [grammar.rules[start]]
    while todo:
        node = todo.pop()
        match node:
            case Ref(name) if name not in reached:
                reached.add(name)
                todo.append(grammar.rules[name])
            case Seq(items) | Alt(items):
                todo.extend(items)
            case Repeat(item, _, _):
                todo.append(item)
    return nested_repeat_size(Grammar({r: grammar.rules[r] for r in reached}, start))[0]
