"""`tether ask`, `eval`, `grammar`, `corpus` and `models`: a thin command line over the library."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Literal

import click
from click.core import ParameterSource

from tether.engine.events import ActionParsed, Event, ObservationMade, RunFinished, StepFailed, StepStarted, TextDelta
from tether.engine.grammar import compose_step_grammar
from tether.engine.protocol import Mode, Restriction, Trace
from tether.errors import BackendError, TetherError
from tether.evaluation.cli import evaluate
from tether.model_zoo_cli import models
from tether.text import clean_text
from tether.tools import BUILTIN_TOOLS, DEFAULT_TOOL_NAMES, resolve_tools

__all__ = ["main"]

_TOOLS_HELP = f"comma-separated tool names (available: {', '.join(BUILTIN_TOOLS)})"


# what a terminal could take as a command: escape sequences (CSI, OSC, ...), then any C0/C1 control
_ESCAPE_SEQUENCE = re.compile(
    r"(\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: cursor, clearing, colours
    r"|(\x1b\]|\x9d)[^\x07\x1b\x9c]*(\x07|\x1b\\|\x9c)?"  # OSC: window title, hyperlinks, clipboard
    r"|\x1b[@-Z\\-_]"  # any other two-character escape
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _tool_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _terminal_safe(text: str) -> str:
    """`text` as plain characters: model and server text must not drive the terminal (titles,
    clearing, colours), TTY or not, and must encode (no lone surrogates). Newlines and tabs stay."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", clean_text(text)))


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """click's FloatRange lets NaN (and inf, for a lower bound) through."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds")
    return value


@click.group()
@click.version_option(package_name="tether")
def cli() -> None:
    """tether: grammar-constrained ReAct agents on small local models."""


@cli.command()
@click.argument("question")
@click.option("--model", "model_path", help="a GGUF file or an installed model name (default: embedded SmolLM2-135M)")
@click.option("--max-steps", type=click.IntRange(1, 100), default=8, show_default=True)
@click.option("--tools", "tool_names", default=",".join(DEFAULT_TOOL_NAMES), show_default=True, help=_TOOLS_HELP)
@click.option("--no-grammar", is_flag=True, help="decode unconstrained; the validator alone judges each step")
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    callback=_finite,
    help="seconds per run",
)
@click.option("--kb", type=click.Path(), help="offline knowledge base (tether corpus build) for wikipedia/lookup")
@click.option(
    "--server", help="an OpenAI-compatible server's base URL instead of a local model (--model: its model name)"
)
@click.option("--server-kind", type=click.Choice(["llama-cpp", "vllm"]), default="llama-cpp", show_default=True)
@click.option(
    "--api-key-env",
    default="TETHER_API_KEY",
    show_default=True,
    help="the environment variable that holds the server's API key (never pass a key on the command line)",
)
@click.option(
    "--act-first/--answer-first",
    default=True,
    show_default=True,
    help="whether the first step must call a tool (small models otherwise answer from memory)",
)
@click.option("--json", "as_json", is_flag=True, help="print the Trace as JSON instead of the live view")
def ask(
    question: str,
    model_path: str | None,
    max_steps: int,
    tool_names: str,
    no_grammar: bool,
    time_limit: float,
    kb: str | None,
    server: str | None,
    server_kind: Literal["llama-cpp", "vllm"],
    api_key_env: str,
    act_first: bool,
    as_json: bool,
) -> None:
    """Answer QUESTION with the agent, showing each Thought / command / Observation as it happens.

    Exits 0 when the run ends (answered or stopped by a limit), 1 with the reason on stderr when the
    server failed (stop reason backend_error) or on another error, 2 on bad options, 130 on Ctrl-C."""
    from tether.engine.backends.base import Backend
    from tether.engine.backends.openai_server import OpenAIServerBackend
    from tether.engine.controller import Agent, Limits
    from tether.engine.protocol import StopReason
    from tether.models import load_backend

    question = clean_text(question)  # undecodable argv bytes arrive as lone surrogates
    tools = resolve_tools(_tool_names(tool_names), kb=kb)
    backend: Backend
    if server is not None:
        # with a server, --model names the model it serves (vLLM wants it in every request)
        backend = OpenAIServerBackend(
            server,
            kind=server_kind,
            model=clean_text(model_path) if model_path else None,
            api_key=_api_key(api_key_env),
            timeout_s=min(120.0, time_limit),
        )
    else:
        backend = load_backend(model_path)
    agent = Agent(
        backend,
        tools,
        limits=Limits(max_steps=max_steps, time_limit_s=time_limit, act_first=act_first),
        mode=Mode.FREE if no_grammar else Mode.CONSTRAINED,
    )
    trace = agent.run(question, on_event=None if as_json else _live_view)
    if as_json:
        click.echo(trace.model_dump_json(indent=2))
    if trace.stop_reason is StopReason.BACKEND_ERROR:
        reason = trace.steps[-1].error if trace.steps and trace.steps[-1].error else "the server failed"
        raise BackendError(reason)


def _api_key(variable: str) -> str | None:
    """The key from `variable`; naming a variable that is unset or empty is a mistake, not "no key"."""
    key = os.environ.get(variable)
    source = click.get_current_context().get_parameter_source("api_key_env")
    if not key and source is ParameterSource.COMMANDLINE:
        state = "empty" if key == "" else "not set"
        raise click.BadParameter(f"environment variable {variable} is {state}", param_hint="'--api-key-env'")
    return key or None


def _live_view(event: Event) -> None:
    """Print a run as it happens: the model's text streamed, then each observation."""
    if isinstance(event, StepStarted):
        note = {
            Restriction.ALL: "",
            Restriction.TOOLS_ONLY_FIRST_STEP: " (a tool first)",
            Restriction.ANSWER_ONLY_LAST_STEP: " (last step: only `answer:`)",
            Restriction.ANSWER_ONLY_LOOP: " (after a loop: only `answer:`)",
        }[event.restriction]
        click.secho(f"── step {event.index + 1}{note}", fg="cyan", err=False)
    elif isinstance(event, TextDelta):
        click.echo(_terminal_safe(event.text), nl=False)
        sys.stdout.flush()
    elif isinstance(event, StepFailed):
        click.secho(f"\n[invalid step] {_terminal_safe(event.error)}", fg="red")
    elif isinstance(event, ObservationMade):
        click.secho(f"Observation: {_terminal_safe(event.observation)}", fg="green")
    elif isinstance(event, ActionParsed):
        pass
    elif isinstance(event, RunFinished):
        _summary(event.trace)


def _summary(trace: Trace) -> None:
    click.echo()
    answer = _terminal_safe(trace.answer) if trace.answer is not None else "(no answer)"
    click.secho(f"Answer: {answer}", bold=True)
    click.echo(
        f"stop: {trace.stop_reason.value if trace.stop_reason else '?'} · {len(trace.steps)} steps · "
        f"{trace.parse_failures} invalid · {trace.elapsed_s:.1f}s"
    )


@cli.command()
@click.option("--tools", "tool_names", default=",".join(DEFAULT_TOOL_NAMES), show_default=True, help=_TOOLS_HELP)
@click.option("--answer-only", is_flag=True, help="the narrowed grammar of a last or looping step")
@click.option("--lark", "as_lark", is_flag=True, help="print the Lark grammar the validator uses instead")
def grammar(tool_names: str, answer_only: bool, as_lark: bool) -> None:
    """Print the composed step grammar (GBNF, as given to the decoder)."""
    composed = compose_step_grammar(resolve_tools(_tool_names(tool_names)), allowed=["answer"] if answer_only else None)
    click.echo(composed.lark_source if as_lark else composed.gbnf, nl=False)


@cli.group()
def corpus() -> None:
    """Offline knowledge bases for the wikipedia and lookup tools."""


@corpus.command("build")
@click.argument("source", type=click.Path())
@click.option("-o", "--output", "out", type=click.Path(), required=True, help="the SQLite file to write")
def corpus_build(source: str, out: str) -> None:
    """Build a knowledge base from SOURCE: JSONL or JSON of {title, text}, or a HotpotQA-format file."""
    from pathlib import Path

    from tether.corpus import build_corpus

    stats = build_corpus(Path(source), Path(out))
    click.echo(
        f"{stats.documents} paragraphs ({stats.source_format}, {stats.duplicates} duplicates skipped) "
        f"in {stats.seconds:.1f}s -> {out}"
    )


cli.add_command(evaluate)
cli.add_command(models)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="tether", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"error: {_terminal_safe(exc.format_message())}", err=True)
        return exc.exit_code
    except TetherError as exc:
        lines = _terminal_safe(str(exc)).splitlines()
        click.echo(f"error: {lines[0] if lines else type(exc).__name__}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
