"""A real MCP server for tests/test_mcp.py, written with the SDK's server API (mcp 2.x `MCPServer`).

`python tests/mcp_server_fixture.py` serves over stdio; `... --http PORT` over streamable HTTP on
127.0.0.1:PORT/mcp. `--unsupported` adds a tool whose schema has no grammar (uniqueItems), `--crash`
fails to start, `--stubborn` ignores SIGTERM and will not exit when its stdin closes. Its tools cover
the schema shapes tether derives grammars from (integers, an enum, a nested object, optional keys, a
list), and the failures a client must survive: a tool that reports an error (isError), one that
hangs, and one that ends the server mid-call.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("tether-fixture", log_level="WARNING")


class Person(BaseModel):
    name: str
    age: int


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def convert(value: float, unit: Literal["C", "F"]) -> str:
    """Convert a temperature to the other unit."""
    if unit == "C":
        return f"{value * 9 / 5 + 32:g} F"
    return f"{(value - 32) * 5 / 9:g} C"


@server.tool()
def greet(person: Person, greeting: str = "Hello") -> str:
    """Greet a person by name and age."""
    return f"{greeting}, {person.name} ({person.age})!"


@server.tool()
def total(numbers: list[int]) -> int:
    """Sum a list of integers."""
    return sum(numbers)


@server.tool(name="word-count")
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


@server.tool(name="2x")
def double(n: int) -> int:
    """Double an integer (a valid MCP name that tether's names refuse: it starts with a digit)."""
    return 2 * n


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason given."""
    raise ToolError(f"refused: {reason}")


@server.tool()
def hang(seconds: int) -> str:
    """Sleep for a number of seconds (blocks the whole server)."""
    time.sleep(seconds)
    return "woke"


@server.tool()
def die(code: int) -> str:
    """End the server process at once, mid-call."""
    sys.stdout.flush()
    os._exit(code)


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


def tags(names: set[str]) -> str:
    """Sort a set of tags (uniqueItems, which no grammar can express)."""
    return ",".join(sorted(names))


if __name__ == "__main__":
    if "--stubborn" in sys.argv:
        sys.argv.remove("--stubborn")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        atexit.register(time.sleep, 60)
    if "--unsupported" in sys.argv:
        sys.argv.remove("--unsupported")
        server.tool()(tags)
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "--crash":
        print("fixture: cannot start (asked to crash)", file=sys.stderr)
        sys.exit(3)
    else:
        server.run()
