"""`tether ask`: one question, its run shown live (or printed as a Trace)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack

import click

from tether.cli._options import (
    TOOLS_HELP,
    default_of,
    finite,
    server_options,
    terminal_safe,
    thought_option,
    tool_names,
)
from tether.engine.answer import ANSWER_TYPES, AnswerType
from tether.engine.backends.openai_server import ServerKind
from tether.engine.closed_book import PASSAGES_MAX
from tether.engine.controller import Agent, Limits
from tether.engine.events import ActionParsed, Event, ObservationMade, RunFinished, StepFailed, StepStarted, TextDelta
from tether.engine.protocol import Mode, Restriction, StopReason, Trace
from tether.engine.tool import Tool
from tether.engine.vote import Voted, reason_then_act
from tether.errors import BackendError
from tether.text import clean_text, one_line
from tether.tools import DEFAULT_TOOL_NAMES, resolve_tools

__all__ = ["ask", "run_question", "run_reasoning_first"]


@click.command()
@click.argument("question")
@click.option("--model", help="a GGUF file or an installed model name (default: embedded SmolLM2-135M)")
@click.option("--max-steps", type=click.IntRange(1, 100), default=default_of(Limits, "max_steps"), show_default=True)
@thought_option
@click.option("--tools", default=",".join(DEFAULT_TOOL_NAMES), show_default=True, help=TOOLS_HELP)
@click.option("--no-grammar", is_flag=True, help="decode unconstrained; the validator alone judges each step")
@click.option("--closed-book", is_flag=True, help="answer with no tools: reason in one pass, then one answer line")
@click.option(
    "--answer-type",
    type=click.Choice(ANSWER_TYPES),
    default="text",
    show_default=True,
    help="what the answer may be: a number, yes or no, a few words, or open text",
)
@click.option(
    "--fallback/--no-fallback",
    default=default_of(Limits, "fallback"),
    show_default=True,
    help="answer a run that hits the step limit or loops by a closed-book pass over what it observed",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0.1),
    default=default_of(Limits, "time_limit_s"),
    show_default=True,
    callback=finite,
    help="seconds per run",
)
@click.option("--kb", type=click.Path(), help="offline knowledge base (tether corpus build) for wikipedia/lookup")
@click.option(
    "--read",
    type=click.IntRange(0, PASSAGES_MAX),
    default=0,
    show_default=True,
    help="every prompt of the run (the agent's steps, --closed-book, the fallback) reads K paragraphs of --kb "
    "found for the question: its 2 best, then the pages they name (0: off)",
)
@click.option(
    "--mcp",
    "mcp_servers",
    multiple=True,
    metavar="COMMAND|URL",
    help='an MCP server whose tools the agent may call: a command ("python server.py") or a streamable HTTP URL '
    "(repeatable)",
)
@server_options
@click.option(
    "--act-first/--answer-first",
    default=bool(default_of(Limits, "act_first")),
    show_default=True,
    help="whether the first step must call a tool (small models otherwise answer from memory)",
)
@click.option(
    "--reason-first",
    type=click.IntRange(0, 50),
    default=0,
    show_default=True,
    help="N closed-book passes vote first; the agent runs only when no answer has a majority (0: off)",
)
@click.option("--json", "as_json", is_flag=True, help="print the Trace (with --reason-first, the vote) as JSON")
def ask(
    question: str,
    model: str | None,
    max_steps: int,
    max_thought_chars: int,
    tools: str,
    no_grammar: bool,
    closed_book: bool,
    answer_type: AnswerType,
    fallback: bool,
    time_limit: float,
    kb: str | None,
    read: int,
    mcp_servers: tuple[str, ...],
    server: str | None,
    server_kind: ServerKind,
    api_key: str | None,
    act_first: bool,
    reason_first: int,
    as_json: bool,
) -> None:
    """Answer QUESTION with the agent, showing each Thought / command / Observation as it happens.

    Exits 0 when the run ends (answered or stopped by a limit), 1 with the reason on stderr when the
    server failed (stop reason backend_error) or on another error, 2 on bad options, 130 on Ctrl-C."""
    if closed_book and no_grammar:
        raise click.UsageError("--closed-book and --no-grammar exclude each other")
    if reason_first and closed_book:
        raise click.UsageError("--reason-first runs closed-book passes, then the agent: not with --closed-book")
    if read and kb is None:
        raise click.UsageError("--read reads paragraphs of a knowledge base: give it with --kb")
    from tether.models import build_backend
    from tether.tools.corpus_tool import make_corpus_retriever

    question = clean_text(question)  # undecodable argv bytes arrive as lone surrogates
    registry = resolve_tools(tool_names(tools), kb=kb)
    with ExitStack() as connections:  # the MCP servers stay up for the run, and are closed after it
        for mcp_tool in _connect_mcp(connections, mcp_servers):
            registry.register(mcp_tool)
        backend = build_backend(model, server=server, server_kind=server_kind, api_key=api_key, time_limit_s=time_limit)
        agent = Agent(
            backend,
            registry,
            limits=Limits(
                max_steps=max_steps,
                max_thought_chars=max_thought_chars,
                time_limit_s=time_limit,
                act_first=act_first,
                fallback=fallback,
            ),
            mode=Mode.CLOSED_BOOK if closed_book else Mode.FREE if no_grammar else Mode.CONSTRAINED,
            answer_type=answer_type,
            retriever=make_corpus_retriever(kb, k=read) if read and kb is not None else None,
        )
        if reason_first:
            run_reasoning_first(agent, question, samples=reason_first, as_json=as_json)
        else:
            run_question(agent, question, as_json=as_json)


def _connect_mcp(connections: ExitStack, servers: Sequence[str]) -> list[Tool]:
    """The tools of each MCP server (`--mcp`), connected before the model loads so that a bad server
    fails fast; a tool whose schema tether cannot express is left out with a note on stderr."""
    if not servers:
        return []
    from tether.mcp import MCPServer

    tools: list[Tool] = []
    for target in servers:
        server = connections.enter_context(MCPServer(clean_text(target), skip_unsupported=True))
        for name, reason in server.skipped.items():
            click.echo(f"note: MCP server {server.target!r}: tool {name!r} left out: {one_line(reason, 300)}", err=True)
        tools.extend(server.tools)
    return tools


def run_question(agent: Agent, question: str, *, as_json: bool = False) -> Trace:
    """What `ask` does once its agent is built: run, print the live view (or the Trace as JSON), and
    raise BackendError with the reason when the server failed. Tests drive it with a ScriptedBackend."""
    trace = agent.run(question, on_event=None if as_json else live_view)
    if as_json:
        click.echo(trace.model_dump_json(indent=2))
    if trace.stop_reason is StopReason.BACKEND_ERROR:
        raise BackendError(_server_failure(trace))
    return trace


def _server_failure(trace: Trace) -> str:
    """What a run that a server failure ended says about it: its last step's error."""
    return trace.steps[-1].error if trace.steps and trace.steps[-1].error else "the server failed"


def run_reasoning_first(agent: Agent, question: str, *, samples: int, as_json: bool = False) -> Voted:
    """`ask --reason-first`: the closed-book passes, then the agent where they disagree, each run shown
    live under a heading (or the vote printed as JSON); a server failure in any run is a BackendError."""
    headings = [f"closed-book pass {i} of {samples}" for i in range(1, samples + 1)]
    headings.append("the agent: no answer has a majority")
    begun = [False]

    def view(event: Event) -> None:
        if not begun[0]:
            click.secho(f"══ {headings[0]}", fg="magenta", bold=True)
            begun[0] = True
        live_view(event)
        if isinstance(event, RunFinished):
            headings.pop(0)
            begun[0] = False

    voted = reason_then_act(agent, question, samples=samples, on_event=None if as_json else view)
    if as_json:
        click.echo(voted.model_dump_json(indent=2))
    else:
        votes = ", ".join(f"{terminal_safe(answer)} x{count}" for answer, count in voted.votes.items()) or "none"
        decided = "no run answered" if voted.winner is None else f"run {voted.winner + 1} answered"
        click.echo()
        click.secho(f"Answer: {terminal_safe(voted.answer) if voted.answer else '(no answer)'}", bold=True)
        click.echo(f"votes: {votes} · {decided} · {len(voted.traces)} runs · {voted.elapsed_s:.1f}s")
    broken = next((t for t in voted.traces if t.stop_reason is StopReason.BACKEND_ERROR), None)
    if broken is not None:
        raise BackendError(_server_failure(broken))
    return voted


_NOTES = {
    Restriction.ALL: "",
    Restriction.TOOLS_ONLY_FIRST_STEP: " (a tool first)",
    Restriction.ANSWER_ONLY_LAST_STEP: " (last step: only `answer:`)",
    Restriction.ANSWER_ONLY_LOOP: " (after a loop: only `answer:`)",
}


def live_view(event: Event) -> None:
    """Print a run as it happens: the model's text streamed, then each observation."""
    if isinstance(event, StepStarted):
        click.secho(f"── step {event.index + 1}{_NOTES[event.restriction]}", fg="cyan", err=False)
    elif isinstance(event, TextDelta):
        click.echo(terminal_safe(event.text), nl=False)
        sys.stdout.flush()
    elif isinstance(event, StepFailed):
        click.secho(f"\n[invalid step] {terminal_safe(event.error)}", fg="red")
    elif isinstance(event, ObservationMade):
        click.secho(f"Observation: {terminal_safe(event.observation)}", fg="green")
    elif isinstance(event, ActionParsed):
        pass
    elif isinstance(event, RunFinished):
        _summary(event.trace)


def _summary(trace: Trace) -> None:
    click.echo()
    answer = terminal_safe(trace.answer) if trace.answer is not None else "(no answer)"
    click.secho(f"Answer: {answer}", bold=True)
    if trace.passages or trace.passages_error:
        heads = "; ".join(terminal_safe(p.split(":", 1)[0][:80]) for p in trace.passages)  # "Title: text"
        count = len(trace.passages)
        shown = trace.passages_error or f"{count} passage{'' if count == 1 else 's'} ({heads})"
        click.echo(f"read: {terminal_safe(shown)}")
    click.echo(
        f"stop: {trace.stop_reason.value if trace.stop_reason else '?'} · {len(trace.steps)} steps · "
        f"{trace.parse_failures} invalid · {trace.elapsed_s:.1f}s"
    )
