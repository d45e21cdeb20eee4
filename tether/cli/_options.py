"""What the command groups share: the server options, reading defaults from the library's records,
and making untrusted text safe for a terminal."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from pydantic import BaseModel

from tether.engine.controller import Limits
from tether.engine.grammar import MAX_THOUGHT_CHARS
from tether.text import clean_text
from tether.tools import BUILTIN_TOOLS

__all__ = ["TOOLS_HELP", "default_of", "finite", "server_options", "terminal_safe", "thought_option", "tool_names"]

F = TypeVar("F", bound=Callable[..., Any])

TOOLS_HELP = f"comma-separated tool names (available: {', '.join(BUILTIN_TOOLS)})"

# what a terminal could take as a command: escape sequences (CSI, OSC, ...), then any C0/C1 control
_ESCAPE_SEQUENCE = re.compile(
    r"(\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: cursor, clearing, colours
    r"|(\x1b\]|\x9d)[^\x07\x1b\x9c]*(\x07|\x1b\\|\x9c)?"  # OSC: window title, hyperlinks, clipboard
    r"|\x1b[@-Z\\-_]"  # any other two-character escape
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def default_of(record: type[BaseModel], field: str) -> Any:
    """A field's default, read from the record that owns it (Limits, EvalConfig), never restated."""
    return record.model_fields[field].default


def thought_option(func: F) -> F:
    """`--max-thought-chars`, the longest thought line (Limits.max_thought_chars), for ask and eval."""
    return click.option(
        "--max-thought-chars",
        type=click.IntRange(1, MAX_THOUGHT_CHARS),
        default=default_of(Limits, "max_thought_chars"),
        show_default=True,
        help="the longest thought line, in characters: room to reason before each action",
    )(func)


def tool_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def terminal_safe(text: str) -> str:
    """`text` as plain characters: model and server text must not drive the terminal (titles,
    clearing, colours), TTY or not, and must encode (no lone surrogates). Newlines and tabs stay."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", clean_text(text)))


def finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """click's FloatRange lets NaN (and inf, for a lower bound) through."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds")
    return value


def _api_key(ctx: click.Context, param: click.Parameter, variable: str) -> str | None:
    """The key from the variable `--api-key-env` names; naming one that is unset or empty is a
    mistake, not "no key"."""
    key = os.environ.get(variable)
    if not key and ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE:
        raise click.BadParameter(f"environment variable {variable} is {'empty' if key == '' else 'not set'}")
    return key or None


def server_options(func: F) -> F:
    """`--server`, `--server-kind` and `--api-key-env`, the same for every command that runs a model;
    the command receives `server`, `server_kind` and `api_key` (the key itself, read from the variable)."""
    options = [
        click.option(
            "--server", help="an OpenAI-compatible server's base URL instead of a local model (--model: its model name)"
        ),
        click.option("--server-kind", type=click.Choice(["llama-cpp", "vllm"]), default="llama-cpp", show_default=True),
        click.option(
            "--api-key-env",
            "api_key",
            default="TETHER_API_KEY",
            show_default=True,
            callback=_api_key,
            help="the environment variable that holds the server's API key (never pass a key on the command line)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
