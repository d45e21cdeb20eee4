"""Per-run state for stateful tools, so that nothing one run did can leak into the next.

A tool such as `lookup` remembers what an earlier call opened. That memory belongs to one agent run:
an Agent reused for a second question (as `tether eval` does), or shared by concurrent runs (`arun`),
must not see the first run's page. A stateful tool keeps such state in a `RunLocal`; the controller
gives every run a fresh `RunState` and binds it in the worker thread that calls the tool.

    class Session:
        def __init__(self) -> None:
            self._open = RunLocal(OpenPage)       # each run starts with a fresh OpenPage

        def search(self, query: str) -> str:
            self._open.set(OpenPage(...))         # visible to later calls of the same run only
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

__all__ = ["RunLocal", "RunState", "bind_run_state"]

T = TypeVar("T")


class RunState:
    """The values of every RunLocal for one run (created by the controller, one per run)."""

    def __init__(self) -> None:
        self._values: dict[RunLocal[Any], Any] = {}
        self._lock = threading.Lock()


_CURRENT: ContextVar[RunState | None] = ContextVar("tether_run_state", default=None)


def bind_run_state(state: RunState) -> None:
    """Make `state` the current run's state in this thread (call it first in a tool's worker thread)."""
    _CURRENT.set(state)


class RunLocal(Generic[T]):
    """A value that every agent run gets fresh from `factory`. Outside any run (a tool called
    directly, as in a test or a script) all calls share one value."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._outside = RunState()

    def _state(self) -> RunState:
        return _CURRENT.get() or self._outside

    def get(self) -> T:
        state = self._state()
        with state._lock:
            if self not in state._values:
                state._values[self] = self._factory()
            return state._values[self]  # type: ignore[no-any-return]

    def set(self, value: T) -> None:
        state = self._state()
        with state._lock:
            state._values[self] = value
