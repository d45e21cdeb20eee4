"""Built-in tools. The tool contract (`Tool`, `ToolRegistry`, `@tool`) is the engine's
(`tether.engine.tool`), re-exported here for convenience: this package imports the engine, never the reverse."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tether.engine.tool import Tool, ToolRegistry, tool
from tether.errors import ConfigError

__all__ = ["BUILTIN_TOOLS", "DEFAULT_TOOL_NAMES", "Tool", "ToolRegistry", "default_tools", "resolve_tools", "tool"]

BUILTIN_TOOLS = ("calculate", "wikipedia", "lookup", "search")
DEFAULT_TOOL_NAMES = ("calculate",)
_ENCYCLOPEDIA = ("wikipedia", "lookup")  # made as a pair: lookup reads the page wikipedia opened last


def resolve_tools(names: Sequence[str], *, kb: str | os.PathLike[str] | None = None) -> ToolRegistry:
    """The built-in tools with these names, in order. With `kb` (a knowledge base built by
    `tether corpus build`), `wikipedia` and `lookup` search it offline and are always included."""
    wanted = list(dict.fromkeys(names))
    if kb is not None:
        wanted += [n for n in _ENCYCLOPEDIA if n not in wanted]
    unknown = [n for n in wanted if n not in BUILTIN_TOOLS]
    if unknown:
        raise ConfigError(f"unknown tool {', '.join(map(repr, unknown))}; available: {', '.join(BUILTIN_TOOLS)}")
    made: dict[str, Tool] = {}
    if "calculate" in wanted:
        from tether.tools.calculate import calculate

        made["calculate"] = calculate
    if any(n in wanted for n in _ENCYCLOPEDIA):
        if kb is not None:
            from tether.tools.corpus_tool import make_corpus_tools

            made["wikipedia"], made["lookup"] = make_corpus_tools(Path(kb))
        else:
            from tether.tools.wikipedia import make_wikipedia_tools

            made["wikipedia"], made["lookup"] = make_wikipedia_tools()
    if "search" in wanted:
        from tether.tools.search import make_search_tool

        made["search"] = make_search_tool()
    return ToolRegistry(made[n] for n in wanted)


def default_tools() -> ToolRegistry:
    return resolve_tools(DEFAULT_TOOL_NAMES)
