"""One connection to an MCP server: the thread and event loop that own its session, its tools, a
call under the time limit, and closing it (see the package docstring)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shlex
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any

import anyio
import mcp_types
from mcp import Client
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from tether.engine.tool import Tool, safe_tool_name
from tether.errors import ConfigError, ToolError, ToolRegistrationError, ToolTimeout
from tether.mcp._convert import describe, list_tools, reason, result_text, stdio_params
from tether.text import one_line

__all__ = ["CLOSE_TIMEOUT_S", "MCPServer", "mcp_tools"]

CLOSE_TIMEOUT_S = 15.0
"""How long `close` waits for the session to end; the SDK's own stdio shutdown closes the server's
stdin, waits 2 s, then SIGTERMs its process group and SIGKILLs it 2 s later, so this is never reached
but by a loop that is stuck."""


class MCPServer:
    """A connection to one MCP server, and its tools as tether Tools (`tools`, in the server's order).

    `server` is a stdio command line (`"python server.py"`, split like a shell would, or an argv list)
    or an `http://`/`https://` URL of a streamable HTTP endpoint. Construction connects and lists the
    tools, and raises ConfigError naming the server if it cannot; use the object as a context manager,
    or call `close()` (a stdio server is stopped, killed if it will not exit).

    Each tool calls the server's tool of the same name (`names` maps a tool's tether name to it: a name
    tether refuses, e.g. `2x`, is made to fit by `safe_tool_name`) and gives up after `timeout_s`. A
    tool whose schema tether cannot express is refused (ToolRegistrationError naming the tool and the
    field), or, with `skip_unsupported`, left out and its reason kept in `skipped`. `prefix` goes before
    every tool name (e.g. "fs_"), for two servers with tools of the same name. `env` adds environment
    variables for a stdio server (it inherits only HOME, PATH, SHELL, TERM, USER and LOGNAME otherwise,
    as the SDK decides), `cwd` is its working directory.
    """

    def __init__(
        self,
        server: str | Sequence[str],
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 30.0,
        prefix: str = "",
        skip_unsupported: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self._params = stdio_params(server, env, cwd)
        self.target = server if isinstance(server, str) else shlex.join(server)
        if not timeout_s > 0 or not connect_timeout_s > 0:
            raise ConfigError(f"MCP server {self.target!r}: timeouts must be positive")
        self.timeout_s = timeout_s
        self.tools: tuple[Tool, ...] = ()
        self.names: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self._closed = False
        self._client: Client | None = None
        self._stop = asyncio.Event()
        self._scope: anyio.CancelScope | None = None  # the session's, on the loop thread
        # the server's stderr, kept for error messages (not the terminal's: the CLI's live view owns that)
        self._stderr = (
            tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 -- closed by close()
            if self._params
            else None
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="tether-mcp", daemon=True)
        self._thread.start()
        self._listed: concurrent.futures.Future[list[mcp_types.Tool]] = concurrent.futures.Future()
        self._session = asyncio.run_coroutine_threadsafe(self._hold_session(), self._loop)
        try:
            listing = self._listed.result(timeout=connect_timeout_s)
        except concurrent.futures.TimeoutError:
            problem = f"did not answer within {connect_timeout_s:g}s"
        except Exception as exc:
            problem = f"failed to start: {reason(exc)}"
        except BaseException:  # Ctrl-C while connecting
            self.close()
            raise
        else:
            problem = ""
        if problem:
            problem += self._stderr_tail()
            self.close()
            raise ConfigError(f"MCP server {self.target!r} {problem}")
        try:
            self._register(listing, prefix=prefix, skip_unsupported=skip_unsupported)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ the loop thread and its session

    def _run_loop(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _client_for(self) -> Client:
        if self._params is None:
            return Client(self.target)
        assert self._stderr is not None
        return Client(stdio_client(self._params, errlog=self._stderr))

    async def _hold_session(self) -> None:
        """Enter the session, list the tools, and hold the session open until `close` (the SDK wants a
        session entered and exited by one task). `close` cancels a connection still being made through
        an anyio scope, never `task.cancel()`, which would defeat the SDK's shielded shutdown and leave
        the server's process behind."""
        try:
            with anyio.CancelScope() as self._scope:
                if self._stop.is_set():  # closed before this task first ran
                    self._scope.cancel()
                async with self._client_for() as client:
                    listing = await list_tools(client)
                    self._client = client
                    self._listed.set_result(listing)
                    await self._stop.wait()
            if not self._listed.done():
                self._listed.set_exception(ConnectionError("closed while connecting"))
        except BaseException as exc:  # a failure after the listing reaches the calls as a closed connection
            if not self._listed.done():
                self._listed.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._client = None

    # ------------------------------------------------------------------ tools

    def _register(self, listing: list[mcp_types.Tool], *, prefix: str, skip_unsupported: bool) -> None:
        tools: list[Tool] = []
        for spec in listing:
            name = safe_tool_name(prefix + spec.name)
            if name in self.names:
                raise ToolRegistrationError(
                    f"MCP server {self.target!r}: tools {self.names[name]!r} and {spec.name!r} both become "
                    f"tether tool {name!r}"
                )
            try:
                tool = Tool.from_schema(
                    name, describe(spec, self.target), spec.input_schema, self._caller(spec.name),
                    timeout_s=self.timeout_s,
                )  # fmt: skip
            except ToolRegistrationError as exc:
                if skip_unsupported:
                    self.skipped[spec.name] = str(exc).removeprefix(f"tool {name!r}: ")
                    continue
                raise ToolRegistrationError(f"MCP server {self.target!r}: {exc}") from exc
            self.names[name] = spec.name
            tools.append(tool)
        self.tools = tuple(tools)

    def _caller(self, name: str) -> Callable[[dict[str, Any]], str]:
        def call(arguments: dict[str, Any]) -> str:
            return self.call(name, arguments)

        return call

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Call the server's tool `name` (its own name) and return its text; past `timeout_s` ToolTimeout,
        and any failure (an `isError` result, a dead server, a closed connection) ToolError."""
        if self._closed:
            raise ToolError(f"{name} failed: the connection to MCP server {self.target!r} is closed")
        try:
            future = asyncio.run_coroutine_threadsafe(self._call(name, dict(arguments)), self._loop)
        except RuntimeError:  # closed between the check and here
            raise ToolError(f"{name} failed: the connection to MCP server {self.target!r} is closed") from None
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolTimeout(f"{name} timed out after {self.timeout_s:.1f}s") from None
        except concurrent.futures.CancelledError:
            raise ToolError(f"{name} failed: the connection to MCP server {self.target!r} was closed") from None
        except ToolError:
            raise
        except Exception as exc:
            dead = isinstance(exc, MCPError) and exc.code == mcp_types.CONNECTION_CLOSED
            raise ToolError(f"{name} failed: {reason(exc)}{self._stderr_tail() if dead else ''}") from None

    async def _call(self, name: str, arguments: dict[str, Any]) -> str:
        client = self._client
        if client is None:
            raise ToolError(f"{name} failed: the connection to MCP server {self.target!r} is closed")
        # the SDK's own limit only backs ours up: past ours the call is cancelled and reads as a ToolTimeout
        result = await client.call_tool(name, arguments, read_timeout_seconds=self.timeout_s + 1.0)
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or f"{name} failed (the server gave no reason)")
        return text

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """End the session (a stdio server is stopped, and killed if it will not exit); idempotent."""
        if self._closed:
            return
        self._closed = True

        def stop() -> None:
            self._stop.set()
            if not self._listed.done() and self._scope is not None:  # still connecting: abandon it
                self._scope.cancel()

        with suppress(RuntimeError):  # RuntimeError: the loop has already ended
            self._loop.call_soon_threadsafe(stop)
        with suppress(Exception):  # its failure was reported at connection, or reaches the calls
            self._session.result(timeout=CLOSE_TIMEOUT_S)
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._stderr is not None:
            self._stderr.close()

    def __enter__(self) -> MCPServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.tools)} tools"
        return f"MCPServer({self.target!r}, {state})"

    def _stderr_tail(self) -> str:
        """The last line the server wrote to stderr, as the end of an error message."""
        if self._stderr is None or self._stderr.closed:
            return ""
        try:  # pread: the server shares the file's offset, which a seek would move under it
            fd = self._stderr.fileno()
            size = os.fstat(fd).st_size
            tail = os.pread(fd, min(size, 4000), max(0, size - 4000)).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [line for line in tail.splitlines() if line.strip()]
        return f" (its stderr ends: {one_line(lines[-1], 200)})" if lines else ""


@contextmanager
def mcp_tools(server: str | Sequence[str], **options: Any) -> Iterator[list[Tool]]:
    """The tools of one MCP server, for the `with` block (options as MCPServer's):

    with mcp_tools("python server.py") as tools:
        agent = Agent(backend, tools=[*tools, calculate])
    """
    with MCPServer(server, **options) as connection:
        yield list(connection.tools)
