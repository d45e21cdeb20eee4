"""A Python type as one line of text: its grammar, how a text validates into a value, and back.

Why: a tool typed `int`, `Literal["C", "F"]` or a pydantic model should be callable only with input
of that type, and an agent asked for a typed answer should only be able to write one. pydantic gives
each type a JSON Schema and a validator; `tether.engine.schema` turns the schema into the grammar, so
the decoder, the Lark validator and pydantic all judge the same text.

A value is written in the form a small model writes most easily:

- `line`: a plain `str` (no constraints; `datetime` and other strings with only a `format`): the text
  itself, in the default one-line grammar;
- `text`: a constrained string (`max_length`, `pattern`), a `Literal` or `Enum` of strings: the bare text;
- `scalar`: `int`, `float`, `bool`, a `Literal` or `Enum` of numbers: its JSON text (`42`, `2.5`, `true`);
- `json`: everything else (`list[...]`, pydantic models, dataclasses, TypedDicts, unions, `Optional`):
  one line of compact JSON.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter, create_model

from tether.engine.gbnf import Grammar
from tether.engine.schema import grammar_from_schema
from tether.engine.schema_example import example_from_schema
from tether.errors import SchemaError, ToolRegistrationError

__all__ = ["Form", "TypedText", "signature_model"]

Form = Literal["line", "text", "scalar", "json"]
_CONSTRAINTS = ("minLength", "maxLength", "pattern", "enum", "const")


def _compact(value: Any) -> str:
    """One line of compact JSON; DEL escaped, as the grammar (like llama.cpp's) never writes it raw."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("\x7f", "\\u007f")


def _form(schema: Mapping[str, Any]) -> Form:
    kind = schema.get("type")
    values = schema["enum"] if "enum" in schema else [schema["const"]] if "const" in schema else None
    if kind == "string" and values is None and not schema.keys() & set(_CONSTRAINTS):
        return "line"
    if kind == "string" or (values is not None and all(isinstance(v, str) for v in values)):
        return "text"
    if kind in ("integer", "number", "boolean"):
        return "scalar"
    if values is not None and all(isinstance(v, (int, float)) for v in values):
        return "scalar"
    return "json"


class TypedText:
    """How values of the type `tp` are written as one line: `grammar` (None: the default line
    grammar), `parse(text)` (pydantic's ValidationError when refused), `format(value)`, `example`.

    SchemaError, naming `where` and the field, when the type has no grammar."""

    def __init__(self, tp: Any, *, where: str = "input") -> None:
        self.type = tp
        self.where = where
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(tp)
        except PydanticUserError as exc:  # an unknown class: pydantic cannot validate it
            raise SchemaError(f"{where}: pydantic cannot validate type {tp!r} ({exc.code})", path=where) from None
        try:
            self.schema: dict[str, Any] | None = self.adapter.json_schema()
        except PydanticUserError:  # e.g. a callable: it validates, but has no schema (so no grammar)
            self.schema = None
        self.form: Form = "line" if self.schema is None else _form(self.schema)

    @cached_property
    def grammar(self) -> Grammar | None:
        """The grammar of the text (None: the default line grammar); SchemaError where there is none."""
        if self.schema is None:
            raise SchemaError(f"{self.where}: type {self.type!r} has no JSON Schema, so no grammar", path=self.where)
        if self.form == "line":
            return None
        return grammar_from_schema(self.schema, where=self.where, plain=self.form == "text")

    def parse(self, text: str) -> Any:
        """The value `text` stands for; pydantic's ValidationError when it is not a valid one."""
        if self.form == "json":
            return self.adapter.validate_json(text)
        if self.form == "scalar":
            try:
                value: Any = json.loads(text)
            except ValueError:
                value = text  # pydantic then says what it expected ("a valid integer")
            return self.adapter.validate_python(value)
        return self.adapter.validate_python(text)

    def format(self, value: Any) -> str:
        """The text for `value` (the inverse of `parse`)."""
        data = self.adapter.dump_python(value, mode="json")
        if self.form in ("line", "text"):
            return str(data)
        return _compact(data)

    @cached_property
    def example(self) -> str | None:
        """A small valid text, from the schema (None for a plain string: any line would do, so none says much)."""
        if self.form == "line" or self.schema is None:
            return None
        value = example_from_schema(self.schema, where=self.where)
        if self.form == "text":
            return str(value)
        return _compact(value)

    def describe(self) -> str:
        """A few words for a prompt: what a text of this type looks like."""
        if self.form == "line" or self.schema is None:
            return "<text>"
        if isinstance(self.schema.get("enum"), list):
            return "one of: " + ", ".join(self.format(self.adapter.validate_python(v)) for v in self.schema["enum"])
        kind = {"text": "text", "scalar": str(self.schema.get("type", "value")), "json": "JSON"}[self.form]
        return f"<{kind}, e.g. {self.example}>"


def signature_model(func: Callable[..., object]) -> tuple[type[BaseModel], Callable[[BaseModel], object]]:
    """A pydantic model of `func`'s parameters (their annotations and defaults; `str` where none), and
    the function that calls `func` with a validated instance's fields as its arguments."""
    try:
        signature = inspect.signature(func)
        hints = get_type_hints(func, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolRegistrationError(f"tool function {func.__name__!r}: cannot read its signature: {exc}") from None
    fields: dict[str, Any] = {}
    positional: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolRegistrationError(f"tool function {func.__name__!r}: *args and **kwargs cannot be typed inputs")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, str), default)
        if param.kind is param.POSITIONAL_ONLY:
            positional.append(param.name)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    model = create_model(f"{func.__name__}_input", __config__=config, **fields)

    def call(arguments: BaseModel) -> object:
        values = {name: getattr(arguments, name) for name in fields}
        leading = [values.pop(name) for name in positional]
        return func(*leading, **values)

    return model, call
