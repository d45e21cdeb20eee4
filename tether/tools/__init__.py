"""Built-in tools and the API for writing your own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tether.errors import ConfigError
from tether.tools.base import Tool, ToolRegistry, tool

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolRegistry", "default_tools", "resolve_tools", "tool"]


def _calculate() -> Tool:
    from tether.tools.calculate import calculate

    return calculate


BUILTIN_TOOLS: dict[str, Callable[[], Tool]] = {"calculate": _calculate}
DEFAULT_TOOL_NAMES = ("calculate",)


def resolve_tools(names: Sequence[str]) -> ToolRegistry:
    """The built-in tools with these names, or ConfigError naming the unknown ones."""
    unknown = [n for n in names if n not in BUILTIN_TOOLS]
    if unknown:
        raise ConfigError(f"unknown tool {', '.join(map(repr, unknown))}; available: {', '.join(BUILTIN_TOOLS)}")
    return ToolRegistry(BUILTIN_TOOLS[n]() for n in dict.fromkeys(names))


def default_tools() -> ToolRegistry:
    return resolve_tools(DEFAULT_TOOL_NAMES)
