"""The translations between MCP's records and tether's: the stdio command, the tool listing, a tool's
one-line description, a call's result as text, and a failure as one line."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence

import mcp_types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from tether.errors import ConfigError
from tether.text import one_line

__all__ = ["describe", "list_tools", "reason", "result_text", "stdio_params"]

_DESCRIPTION_LIMIT = 200
_MAX_PAGES = 100  # a tools/list whose cursors never end cannot hang the connection


def stdio_params(
    server: str | Sequence[str], env: Mapping[str, str] | None, cwd: str | None
) -> StdioServerParameters | None:
    """The stdio command to start, or None for a streamable HTTP URL."""
    if isinstance(server, str):
        if re.match(r"https?://", server.strip(), re.IGNORECASE):
            if env is not None or cwd is not None:
                raise ConfigError(f"MCP server {server!r}: env and cwd are for a stdio command, not a URL")
            return None
        try:
            argv = shlex.split(server)
        except ValueError as exc:
            raise ConfigError(f"MCP server command {server!r} does not parse: {exc}") from None
    else:
        argv = list(server)
    if not argv or not argv[0]:
        raise ConfigError(f"MCP server command {server!r} is empty")
    return StdioServerParameters(command=argv[0], args=argv[1:], env=dict(env) if env else None, cwd=cwd)


async def list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def describe(spec: mcp_types.Tool, target: str) -> str:
    """One line for the prompt: the tool's description's first line, else its title."""
    for text in (spec.description, spec.title):
        lines = [line for line in (text or "").splitlines() if line.strip()]
        if lines:
            return one_line(lines[0], _DESCRIPTION_LIMIT)
    return f"the {spec.name} tool of MCP server {one_line(target, 80)}"


def result_text(result: mcp_types.CallToolResult) -> str:
    """The result as text: its text items joined, other items named, or its structured content."""
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, mcp_types.TextContent):
            parts.append(item.text)
        elif isinstance(item, mcp_types.EmbeddedResource) and isinstance(item.resource, mcp_types.TextResourceContents):
            parts.append(item.resource.text)
        elif isinstance(item, mcp_types.ResourceLink):
            parts.append(f"[resource {item.uri}]")
        else:
            parts.append(f"[{item.type}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def reason(exc: BaseException) -> str:
    """What went wrong, on one line: the first leaf of an exception group, with its type if its
    message is not enough."""
    leaves = getattr(exc, "exceptions", None)
    while isinstance(leaves, tuple) and leaves and isinstance(leaves[0], BaseException):
        exc = leaves[0]
        leaves = getattr(exc, "exceptions", None)
    if isinstance(exc, MCPError):
        if exc.code == mcp_types.CONNECTION_CLOSED:
            return "the server closed the connection"
        return f"the server answered error {exc.code}: {one_line(exc.message, 300)}"
    message = one_line(str(exc), 300)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
