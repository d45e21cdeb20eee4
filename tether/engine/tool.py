"""The tool contract: what a tool is (a typed function with a name, a one-line description, an example
and a grammar), the registry an agent holds, and the one time-limited call every tool runs under.

The engine owns this contract; `tether.tools` holds built-in tools written against it, and imports
the engine, never the reverse.
"""

from __future__ import annotations

import contextvars
import importlib.util
import inspect
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

import lark
from pydantic import BaseModel, TypeAdapter, ValidationError

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
from tether.errors import GrammarError, ToolError, ToolInputError, ToolRegistrationError, ToolTimeout

__all__ = ["MAX_NESTED_REPEAT_SIZE", "Tool", "ToolRegistry", "run_with_time_limit", "tool"]

T = TypeVar("T")

_TOOL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
LINE_GRAMMAR = load_grammar_source("line")

MAX_NESTED_REPEAT_SIZE = 100
"""Largest product of nested repetition bounds an input grammar may have (see `nested_repeat_size`):
llama.cpp's per-token cost grows with it; three nested {0,9} (729) cost seconds per token."""


@dataclass(frozen=True, eq=False)
class Tool:
    """A registered tool. Construction checks everything, so a bad tool fails at registration.

    `grammar` is GBNF text for the input (start rule `root`); without it the input is one bounded
    line. `repeatable` marks a stateful tool (e.g. `lookup`, whose repeat gives the next match) that loop
    detection must not stop. `input_type` is what pydantic validates the input text into before `func` sees it: a
    plain type (str, int, float, Literal, ...) from the text itself, a BaseModel from JSON text.
    """

    name: str
    description: str
    func: Callable[[Any], object]
    example: str
    input_type: Any = str
    grammar: str | None = None
    timeout_s: float = 10.0
    repeatable: bool = False  # a stateful tool whose repeated call gives new results (loop detection skips it)
    _adapter: TypeAdapter[Any] = field(init=False, repr=False)
    _grammar: Grammar = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _TOOL_NAME.match(self.name) or self.name == ANSWER:
            raise ToolRegistrationError(
                f"tool name {self.name!r} must match [a-z][a-z0-9_]* (at most 32) and not be {ANSWER!r}"
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
        grammar = self._checked_grammar()
        object.__setattr__(self, "_grammar", grammar)
        object.__setattr__(self, "_adapter", TypeAdapter(self.input_type))
        if not self.accepts(self.example):
            raise ToolRegistrationError(
                f"tool {self.name!r}: its example {self.example!r} does not match its own input grammar"
            )
        try:
            self.validate_input(self.example)
        except ToolInputError as exc:
            raise ToolRegistrationError(
                f"tool {self.name!r}: its example {self.example!r} is refused by its input type: "
                f"{str(exc).partition(': ')[2]}"
            ) from None

    def _checked_grammar(self) -> Grammar:
        """The parsed input grammar, refused here if llama.cpp cannot decode it in one line at a bounded cost."""
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
        try:
            self._grammar.parser.parse(text)
        except lark.LarkError:
            return False
        return True

    def validate_input(self, text: str) -> Any:
        """The typed input for `text`, or ToolInputError naming what pydantic refused."""
        try:
            if isinstance(self.input_type, type) and issubclass(self.input_type, BaseModel):
                return self._adapter.validate_json(text)
            return self._adapter.validate_python(text)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
            raise ToolInputError(f"invalid input for {self.name}: {problems}") from None

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
    example: str,
    grammar: str | None = None,
    timeout_s: float = 10.0,
) -> Any:
    """Make a Tool from a one-argument function; its annotation is the typed input, its docstring's
    first line the description.

        @tool(example="Paris")
        def shout(text: str) -> str:
            '''Repeat the text in capitals.'''
            return text.upper()
    """

    def build(f: Callable[..., object]) -> Tool:
        params = list(inspect.signature(f).parameters.values())
        if len(params) != 1:
            raise ToolRegistrationError(f"tool function {f.__name__!r} must take exactly one argument")
        hints = get_type_hints(f)
        doc = (inspect.getdoc(f) or "").strip().splitlines()
        return Tool(
            name=name or f.__name__,
            description=description or (doc[0] if doc else ""),
            func=f,
            example=example,
            input_type=hints.get(params[0].name, str),
            grammar=grammar,
            timeout_s=timeout_s,
        )

    return build(func) if func is not None else build


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
