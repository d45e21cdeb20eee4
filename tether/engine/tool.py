"""The tool contract: what a tool is (a typed function with a name, a one-line description, an example
and a grammar), the registry an agent holds, and the one time-limited call every tool runs under.

A tool's input grammar is written by hand, or derived: from its input type (`tether.engine.typed`:
`int` is `42`, a pydantic model one line of JSON) or from a JSON Schema (`Tool.from_schema`, for MCP
servers' and BFCL's tools), so that a model can only call it with input that validates.

The engine owns this contract; `tether.tools` holds built-in tools written against it, and imports
the engine, never the reverse.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib.util
import inspect
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

import jsonschema  # type: ignore[import-untyped]
from pydantic import BaseModel, ValidationError

from tether.engine.gbnf import (
    Grammar,
    check_llama_repetitions,
    llama_cpp_accepts,
    load_grammar_source,
    may_produce,
    nested_repeat_size,
    parse_gbnf,
)
from tether.engine.protocol import ANSWER
from tether.engine.run_state import RunState, bind_run_state
from tether.engine.schema import MAX_NESTED_REPEAT_SIZE, check_schema_depth, grammar_from_schema
from tether.engine.schema_describe import describe_arguments
from tether.engine.schema_example import example_from_schema
from tether.engine.typed import TypedText, signature_model
from tether.errors import (
    GrammarError,
    SchemaError,
    ToolError,
    ToolInputError,
    ToolRegistrationError,
    ToolTimeout,
)

__all__ = [
    "MAX_NESTED_REPEAT_SIZE",
    "TOOL_NAME_PATTERN",
    "Tool",
    "ToolRegistry",
    "run_with_time_limit",
    "safe_tool_name",
    "tool",
]

T = TypeVar("T")

TOOL_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"
"""What a tool name may be: MCP's and BFCL's names (`get_weather`, `math.factorial`, `Search-Docs`)
fit as they are; `safe_tool_name` makes any other name fit."""
_TOOL_NAME = re.compile(TOOL_NAME_PATTERN + r"\Z")
LINE_GRAMMAR = load_grammar_source("line")


@dataclass(frozen=True, eq=False)
class Tool:
    """A registered tool. Construction checks everything, so a bad tool fails at registration.

    `grammar` is GBNF text for the input (start rule `root`). Without it the grammar is derived:
    from `input_schema` (a JSON Schema: the input is one line of JSON, validated with jsonschema, and
    `func` gets the dict; see `Tool.from_schema`), else from `input_type` (`tether.engine.typed`: `int`
    is `42`, `Literal["C", "F"]` is `C`, a pydantic model or dataclass one line of JSON); a plain `str`
    input is one bounded line. `input_type` is what pydantic validates the text into before `func`
    sees it. `example` (shown to the model) may be left empty where the type or schema gives one.
    `repeatable` marks a stateful tool (e.g. `lookup`, whose repeat gives the next match) that loop
    detection must not stop. `arguments` is how the prompt lists a JSON input's keys; left None it is
    derived from the input's JSON Schema (`describe_arguments`: names, types, required or not, enums,
    descriptions), and "" shows none.
    """

    name: str
    description: str
    func: Callable[[Any], object]
    example: str = ""
    input_type: Any = str
    grammar: str | None = None
    timeout_s: float = 10.0
    repeatable: bool = False  # a stateful tool whose repeated call gives new results (loop detection skips it)
    input_schema: Mapping[str, Any] | None = None
    arguments: str | None = None
    _typed: TypedText | None = field(init=False, repr=False)
    _grammar: Grammar = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOOL_NAME.match(self.name) or self.name.casefold() == ANSWER:
            raise ToolRegistrationError(
                f"tool name {self.name!r} must match {TOOL_NAME_PATTERN} and not be {ANSWER!r} "
                "(safe_tool_name makes any name fit)"
            )
        if not self.description.strip() or "\n" in self.description.strip():
            raise ToolRegistrationError(f"tool {self.name!r} needs a one-line description")
        if not self.timeout_s > 0:
            raise ToolRegistrationError(f"tool {self.name!r} needs a positive timeout_s")
        if _is_async(self.func):
            raise ToolRegistrationError(
                f"tool {self.name!r}: its function is async (async def); tools are called synchronously, "
                "so pass a plain function (e.g. one that calls asyncio.run)"
            )
        try:
            typed = None if self.input_schema is not None else TypedText(self.input_type, where="input")
            derived = self._derived_grammar(typed)
            example = self.example or self._derived_example(typed)
        except SchemaError as exc:
            raise SchemaError(f"tool {self.name!r}: {exc}", path=exc.path) from None
        object.__setattr__(self, "_typed", typed)
        object.__setattr__(self, "_grammar", self._checked_grammar(derived))
        object.__setattr__(self, "example", example)
        if self.arguments is None:
            schema = self.input_schema if typed is None else typed.schema if typed.form == "json" else None
            object.__setattr__(self, "arguments", describe_arguments(schema))
        try:
            self.validate_input(self.example)
        except ToolInputError as exc:
            raise ToolRegistrationError(
                f"tool {self.name!r}: its example {self.example!r} is refused by its input type: "
                f"{str(exc).partition(': ')[2]}"
            ) from None
        if not self.accepts(self.example):
            raise ToolRegistrationError(
                f"tool {self.name!r}: its example {self.example!r} does not match its own input grammar"
            )

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        input_schema: Mapping[str, Any],
        func: Callable[[dict[str, Any]], object],
        *,
        timeout_s: float = 10.0,
        example: str | None = None,
        repeatable: bool = False,
        arguments: str | None = None,
    ) -> Tool:
        """A tool whose input is one line of JSON valid under `input_schema` (an MCP tool's
        `inputSchema`, a BFCL function's `parameters`): the grammar comes from the schema, the text is
        validated with jsonschema, and `func` receives the parsed value (a dict for an object schema).
        SchemaError, naming the field, for a schema that has no grammar."""
        return cls(
            name=name,
            description=description,
            func=func,
            example=example or "",
            input_type=dict[str, Any],
            timeout_s=timeout_s,
            repeatable=repeatable,
            input_schema=input_schema,
            arguments=arguments,
        )

    def _derived_grammar(self, typed: TypedText | None) -> Grammar | None:
        """The input grammar from the schema or the type (None: the grammar text, or the line grammar)."""
        if self.grammar is not None:
            return None
        if self.input_schema is not None:
            check_schema_depth(self.input_schema)  # before the validator, which recurses
            try:
                jsonschema.validators.validator_for(self.input_schema).check_schema(self.input_schema)
            except jsonschema.SchemaError as exc:
                path = ".".join(map(str, exc.path)) or "input"
                raise SchemaError(f"{path}: not a valid JSON Schema: {exc.message}", path=path) from None
            return grammar_from_schema(self.input_schema, where="input")
        return typed.grammar if typed is not None else None

    def _derived_example(self, typed: TypedText | None) -> str:
        if self.input_schema is not None:
            value = example_from_schema(self.input_schema)
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        found = typed.example if typed is not None and self.grammar is None else None
        if found is None:
            raise ToolRegistrationError(
                f"tool {self.name!r} needs an example (one its input type cannot give: pass example=...)"
            )
        return found

    def _checked_grammar(self, derived: Grammar | None) -> Grammar:
        """The parsed input grammar, refused here if llama.cpp cannot decode it in one line at a bounded cost."""
        if derived is not None:
            grammar = derived
        else:
            try:
                grammar = parse_gbnf(self.grammar if self.grammar is not None else LINE_GRAMMAR)
            except GrammarError as exc:
                raise ToolRegistrationError(f"tool {self.name!r} has a malformed input grammar: {exc}") from None
        try:
            check_llama_repetitions(grammar)
        except GrammarError as exc:
            raise ToolRegistrationError(f"tool {self.name!r}: {exc}") from None
        size, rule = nested_repeat_size(grammar)
        if size > MAX_NESTED_REPEAT_SIZE:
            raise ToolRegistrationError(
                f"tool {self.name!r}: rule {rule!r} nests bounded repetitions whose bounds multiply to {size}, "
                f"more than {MAX_NESTED_REPEAT_SIZE} (llama.cpp would slow to seconds per token); write * for "
                "an outer bound (the step's token budget bounds the line)"
            )
        # llama.cpp's own parser where llama-cpp-python is installed (the `llama` extra); a server checks its own
        if importlib.util.find_spec("llama_cpp") is not None and not llama_cpp_accepts(grammar.to_gbnf()):
            raise ToolRegistrationError(
                f"tool {self.name!r}: llama.cpp refuses its input grammar (left recursion, or a repetition "
                "of something that can be empty?)"
            )
        if may_produce(grammar, "\n"):
            raise ToolRegistrationError(
                f"tool {self.name!r}: its input grammar can produce a newline, but a command's input is one "
                "line (exclude \\n, e.g. [^\\n] rather than . or [^x])"
            )
        return grammar

    @property
    def input_grammar(self) -> Grammar:
        return self._grammar

    def accepts(self, text: str) -> bool:
        """Whether `text` is in this tool's input grammar."""
        return self._grammar.accepts(text)

    def validate_input(self, text: str) -> Any:
        """The typed input for `text`, or ToolInputError naming what was refused (pydantic's or
        jsonschema's finding, with the field's path)."""
        if self.input_schema is not None:
            return self._validate_json_schema(text)
        assert self._typed is not None
        try:
            if isinstance(self.input_type, type) and issubclass(self.input_type, BaseModel):
                return self._typed.adapter.validate_json(text)
            return self._typed.parse(text)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
            raise ToolInputError(f"invalid input for {self.name}: {problems}") from None

    def _validate_json_schema(self, text: str) -> Any:
        assert self.input_schema is not None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ToolInputError(f"invalid input for {self.name}: input: not JSON ({exc})") from None
        validator = jsonschema.validators.validator_for(self.input_schema)(self.input_schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            problems = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or 'input'}: {e.message}" for e in errors[:3])
            raise ToolInputError(f"invalid input for {self.name}: {problems}")
        return value

    def __call__(self, text: str) -> str:
        """Validate the text, run the tool, and return its result as text (no time limit here)."""
        return str(self.func(self.validate_input(text)))


def _is_async(func: object) -> bool:
    """Whether calling `func` gives a coroutine or async generator instead of a result."""
    call = getattr(func, "__call__", None)  # noqa: B004 -- an object whose __call__ is async
    return any(inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (func, call) if f is not None)


def tool(
    func: Callable[..., object] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    example: str | None = None,
    grammar: str | None = None,
    timeout_s: float = 10.0,
    repeatable: bool = False,
) -> Any:
    """Make a Tool from a function; its docstring's first line is the description.

    A function of one parameter takes the input as that parameter's type (`str`: the line itself;
    `int`: `42`; a pydantic model: one line of JSON). A function of several parameters (or none)
    takes one JSON object of them, `{"city": "Paris", "days": 3}`, validated against their
    annotations and defaults, and is called with them as keyword arguments. `example` may be left
    out where the type gives one (not for a plain `str`).

        @tool(example="Paris")
        def shout(text: str) -> str:
            '''Repeat the text in capitals.'''
            return text.upper()

        @tool
        def forecast(city: str, days: int = 1) -> str:
            '''The weather forecast for a city.'''
            ...
    """

    def build(f: Callable[..., object]) -> Tool:
        if _is_async(f):
            raise ToolRegistrationError(
                f"tool {name or f.__name__!r}: its function is async (async def); tools are called synchronously, "
                "so pass a plain function (e.g. one that calls asyncio.run)"
            )
        params = list(inspect.signature(f).parameters.values())
        doc = (inspect.getdoc(f) or "").strip().splitlines()
        call: Callable[[Any], object] = f
        if len(params) == 1 and params[0].kind not in (params[0].VAR_POSITIONAL, params[0].VAR_KEYWORD):
            input_type = get_type_hints(f, include_extras=True).get(params[0].name, str)
        else:
            input_type, call = signature_model(f)
        return Tool(
            name=name or f.__name__,
            description=description or (doc[0] if doc else ""),
            func=call,
            example=example or "",
            input_type=input_type,
            grammar=grammar,
            timeout_s=timeout_s,
            repeatable=repeatable,
        )

    return build(func) if func is not None else build


def safe_tool_name(name: str) -> str:
    """`name` as a valid tool name (`TOOL_NAME_PATTERN`): itself where it fits. Otherwise each character
    outside [A-Za-z0-9_.-] becomes `_`, a name that does not start with a letter gets `t_` before it,
    `answer` becomes `answer_`, and a name past 64 characters is cut to 55 plus `_` and 8 hex digits
    of its hash, so long names that share a beginning stay apart. Two names may still meet (`a b`,
    `a_b`): the registry refuses the second, never silently."""
    if _TOOL_NAME.match(name) and name.casefold() != ANSWER:
        return name
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if not re.match(r"[A-Za-z]", safe):
        safe = "t_" + safe
    if safe.casefold() == ANSWER:
        safe += "_"
    if len(safe) > 64:
        safe = f"{safe[:55]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


class ToolRegistry:
    """The tools an agent may call, in a fixed order (the order of the prompt and the grammar)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, t: Tool) -> Tool:
        if not isinstance(t, Tool):
            raise ToolRegistrationError(f"expected a Tool (use @tool), got {type(t).__name__}")
        if t.name in self._tools:
            raise ToolRegistrationError(f"tool {t.name!r} is already registered")
        self._tools[t.name] = t
        return t

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)


def run_with_time_limit(
    func: Callable[[], T],
    timeout_s: float,
    *,
    name: str,
    timeout_message: str | None = None,
    state: RunState | None = None,
) -> T:
    """`func()` in a daemon thread; past `timeout_s` raise ToolTimeout and leave the thread behind
    (Python cannot stop a thread). The thread sees `state` as the run's tool state, or, without it, the
    caller's (so a tool's own time-limited work inside a run stays in that run).

    The controller calls every tool through it, and a network tool its own work, to bound what a
    socket timeout cannot (a blocking DNS lookup, a library that retries). A call that tries to end
    the process (`sys.exit`, argparse, a KeyboardInterrupt of its own) gets a ToolError instead.
    """
    outcome: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()

    def target() -> None:
        if state is not None:
            bind_run_state(state)
        try:
            outcome.append((True, func()))
        except (SystemExit, KeyboardInterrupt) as exc:
            code = f" {exc.code}" if isinstance(exc, SystemExit) and exc.code is not None else ""
            outcome.append((False, ToolError(f"{name} tried to end the process ({type(exc).__name__}{code})")))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    worker = threading.Thread(target=context.run, args=(target,), name=f"tether-tool-{name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        raise ToolTimeout(timeout_message or f"{name} timed out after {timeout_s:.1f}s")
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
