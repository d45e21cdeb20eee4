"""The error contract: only RecoverableErrors (the model's and the tools' failures) and a tool's own bugs
become observations; a ConfigError ends the run, and a tool's missing package is found when it is built."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import pytest

from tether import Agent, ScriptedBackend, default_tools, resolve_tools
from tether.engine.run_state import RunLocal, RunState
from tether.engine.tool import run_with_time_limit, tool
from tether.errors import (
    BackendError,
    ConfigError,
    ContextOverflow,
    ModelError,
    ModelFileError,
    ParseError,
    RecoverableError,
    TetherError,
    ToolError,
    ToolInputError,
    ToolTimeout,
)
from tether.tools.search import SearchHit, make_search_tool
from tether.tools.wikipedia import make_wikipedia_tools


def step(command: str, text: str) -> str:
    return f"Thought: go\n{command}: {text}\n"


def test_recoverable_errors_are_exactly_the_models_and_the_tools() -> None:
    for error in (ModelError, ParseError, ToolInputError, ToolError, ToolTimeout):
        assert issubclass(error, RecoverableError)
    for error in (ConfigError, ModelFileError, BackendError, ContextOverflow):
        assert issubclass(error, TetherError) and not issubclass(error, RecoverableError)


def test_a_tool_error_and_a_tool_bug_become_observations() -> None:
    @tool(example="x")
    def refuses(text: str) -> str:
        """Refuse."""
        raise ToolError("no such thing")

    @tool(example="x")
    def buggy(text: str) -> str:
        """Crash."""
        return str(1 // 0)

    backend = ScriptedBackend(step("refuses", "x"), step("buggy", "x"), step("answer", "done"))
    trace = Agent(backend, [refuses, buggy]).run("q")
    assert [s.observation for s in trace.steps[:2]] == [
        "error: no such thing",
        "error: buggy failed: ZeroDivisionError: integer division or modulo by zero",
    ]
    assert trace.answer == "done"


def test_a_config_error_inside_a_tool_ends_the_run_and_reaches_the_caller() -> None:
    @tool(example="x")
    def misconfigured(text: str) -> str:
        """Needs setup."""
        raise ConfigError("misconfigured needs the 'thing' package")

    backend = ScriptedBackend(step("misconfigured", "x"), step("answer", "guessed"))
    with pytest.raises(ConfigError, match="needs the 'thing' package"):
        Agent(backend, [misconfigured]).run("q")


def test_agent_tools_are_explicit() -> None:
    """The engine does not default to the built-ins; no tools is a valid choice."""
    with pytest.raises(TypeError):
        Agent(ScriptedBackend())  # type: ignore[call-arg]
    assert Agent(ScriptedBackend(), []).tools.names == ()
    assert Agent(ScriptedBackend(), default_tools()).tools.names == ("calculate",)


def test_wikipedia_without_its_package_fails_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wikipedia", None)
    monkeypatch.setitem(sys.modules, "wikipedia.wikipedia", None)
    with pytest.raises(ConfigError, match="needs the 'wikipedia' package"):
        make_wikipedia_tools()
    with pytest.raises(ConfigError, match="needs the 'wikipedia' package"):
        resolve_tools(["lookup"])


def test_search_without_ddgs_fails_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ddgs", None)
    with pytest.raises(ConfigError, match="needs the 'ddgs' package"):
        make_search_tool()
    with pytest.raises(ConfigError, match="needs the 'ddgs' package"):
        resolve_tools(["search"])

    class Fixed:
        def search(self, query: str, *, max_results: int, timeout_s: float) -> Sequence[SearchHit]:
            return [SearchHit("A", "first")]

    assert make_search_tool(client=Fixed())("q") == "A: first"  # a custom client needs no ddgs


def test_a_network_tools_backstop_is_a_tool_timeout() -> None:
    """One time-limited call, one error: the network tools' backstop raises ToolTimeout too."""
    release = threading.Event()

    class Stuck:
        def search(self, query: str, *, max_results: int, timeout_s: float) -> Sequence[SearchHit]:
            release.wait(10)
            return []

    try:
        with pytest.raises(ToolTimeout, match=r"^search: no answer within"):
            make_search_tool(0.5, client=Stuck())("anything")
    finally:
        release.set()


def test_time_limited_work_inside_a_tool_stays_in_its_run() -> None:
    """The time-limited call binds the given run state, or else keeps the caller's."""
    seen = RunLocal(list[str])
    first, second = RunState(), RunState()

    def inner() -> int:
        seen.get().append("x")
        return len(seen.get())

    def outer() -> int:
        return run_with_time_limit(inner, 5, name="inner")

    assert run_with_time_limit(outer, 5, name="outer", state=first) == 1
    assert run_with_time_limit(outer, 5, name="outer", state=first) == 2
    assert run_with_time_limit(outer, 5, name="outer", state=second) == 1


def test_a_tool_that_ends_the_process_gets_a_tool_error() -> None:
    def leave() -> None:
        sys.exit(3)

    with pytest.raises(ToolError, match=r"^quitter tried to end the process \(SystemExit 3\)$"):
        run_with_time_limit(leave, 5, name="quitter")
