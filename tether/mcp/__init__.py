"""Tools from MCP servers: connect with the official `mcp` SDK (a stdio command or a streamable HTTP
URL), list the server's tools, and make each a tether Tool whose input grammar comes from its
`inputSchema` (a one-line JSON object, validated against the schema before the call).

    with MCPServer("python server.py") as server:
        agent = Agent(backend, tools=[*server.tools, calculate])

The SDK is async and tether calls tools synchronously from a worker thread, under the tool's time
limit. So each connection owns one background thread running its own event loop, in which the
SDK's client session is entered and exited; a tool call submits `call_tool` to that loop and waits
for it under the time limit (cancelling it past the limit). What the server answers is data: an
`isError` result, a server that died or closed the connection, a protocol error, all become a
ToolError, which the controller makes the step's observation, and a hang a ToolTimeout. A server
that cannot be started, reached, or listed is a ConfigError naming it.

Needs the `mcp` extra: `pip install 'tether[mcp]'`.
"""

from __future__ import annotations

try:
    from tether.mcp._connection import MCPServer, mcp_tools
except ModuleNotFoundError as exc:  # pragma: no cover - the extra is part of dev
    if exc.name not in ("mcp", "mcp_types"):
        raise
    raise ImportError("tether.mcp needs the mcp extra: pip install 'tether[mcp]'") from exc

__all__ = ["MCPServer", "mcp_tools"]
