"""`tether eval`: options in, a progress bar while it runs, reports out (the harness: tether.evaluation)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import click

from tether.cli._options import default_of, server_options, thought_option
from tether.engine.backends.openai_server import ServerKind
from tether.engine.closed_book import PASSAGES_MAX
from tether.engine.protocol import Mode
from tether.evaluation.datasets import FORMATS, Format
from tether.evaluation.runner import EvalConfig

__all__ = ["MODE_CHOICES", "evaluate"]

MODE_CHOICES: dict[str, tuple[Mode, ...]] = {
    **{m.value: (m,) for m in Mode},
    "both": (Mode.CONSTRAINED, Mode.FREE),
    "all": (Mode.CONSTRAINED, Mode.FREE, Mode.CLOSED_BOOK),
}


@click.command("eval")
@click.argument("datasets", nargs=-1, required=True, type=click.Path())
@click.option(
    "--model", "models", multiple=True, help="model name or GGUF path; repeat for several (default: smollm2-135m)"
)
@click.option(
    "--mode",
    type=click.Choice(list(MODE_CHOICES)),
    default="both",
    show_default=True,
    help="both: constrained and free; all: those and closed-book (no tools, the model's own reasoning)",
)
@click.option("--limit", type=click.IntRange(min=1), help="the first N questions of each dataset")
@click.option(
    "--max-steps", type=click.IntRange(1, 100), default=default_of(EvalConfig, "max_steps"), show_default=True
)
@click.option(
    "--max-step-tokens",
    type=click.IntRange(min=16),
    default=default_of(EvalConfig, "max_step_tokens"),
    show_default=True,
)
@thought_option
@click.option(
    "--act-first",
    type=click.IntRange(min=0),
    default=default_of(EvalConfig, "act_first"),
    show_default=True,
    help="how many first steps must call a tool before an answer is allowed (0: none)",
)
@click.option("--seed", type=int, default=default_of(EvalConfig, "seed"), show_default=True)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0.1),
    default=default_of(EvalConfig, "time_limit_s"),
    show_default=True,
    help="seconds per question",
)
@click.option("--format", "dataset_format", type=click.Choice(list(FORMATS)), help="default: detected")
@click.option(
    "--prompt-style",
    type=click.Choice(["auto", "chat", "raw"]),
    default=default_of(EvalConfig, "prompt_style"),
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(),
    default=str(default_of(EvalConfig, "out")),
    show_default=True,
    help="results folder (resumes)",
)
@click.option(
    "--kb", type=click.Path(), help="HotpotQA: search this knowledge base (tether corpus build), not the file's own"
)
@click.option(
    "--fallback/--no-fallback",
    default=default_of(EvalConfig, "fallback"),
    show_default=True,
    help="a run that does not finish answers by a closed-book pass over what it observed",
)
@click.option(
    "--vote",
    type=click.IntRange(1, 50),
    default=default_of(EvalConfig, "vote"),
    show_default=True,
    help="self-consistency: K sampled runs per question, majority answer",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, max=5),
    default=default_of(EvalConfig, "temperature"),
    show_default=True,
    help="sampling temperature of the --vote runs and of the --reason-first passes after the first",
)
@click.option(
    "--reason-first",
    type=click.IntRange(0, 50),
    default=default_of(EvalConfig, "reason_first"),
    show_default=True,
    help="N closed-book passes vote first; the agent runs only when no answer has a majority (0: off)",
)
@click.option(
    "--read",
    type=click.IntRange(0, PASSAGES_MAX),
    default=default_of(EvalConfig, "read"),
    show_default=True,
    help="HotpotQA: every prompt of a run (the agent's steps, the closed-book passes) reads K paragraphs of "
    "the knowledge base found for the question: its 2 best, then the pages they name (0: off)",
)
@server_options
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=1, show_default=True, help="questions at once (--server)"
)
def evaluate(
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    mode: str,
    limit: int | None,
    max_steps: int,
    max_step_tokens: int,
    max_thought_chars: int,
    act_first: int,
    seed: int,
    time_limit: float,
    dataset_format: Format | None,
    prompt_style: Literal["auto", "chat", "raw"],
    out: str,
    kb: str | None,
    fallback: bool,
    vote: int,
    temperature: float,
    reason_first: int,
    read: int,
    server: str | None,
    server_kind: ServerKind,
    api_key: str | None,
    concurrency: int,
) -> None:
    """Run the agent over DATASETS (HotpotQA JSON, GSM8K JSONL, {question, answer} JSONL, or BFCL:
    bfcl:simple_python, a category of the bfcl-eval wheel that scripts/bootstrap fetches) and score it.

    Re-running with the same --out skips the questions already answered there."""
    from tether.evaluation.report import calls_table, markdown_table, write_reports
    from tether.evaluation.runner import run_eval

    if concurrency > 1 and server is None:
        raise click.UsageError("--concurrency needs --server: an in-process model decodes one question at a time")
    config = EvalConfig(
        datasets=tuple(Path(d) for d in datasets),
        models=models or default_of(EvalConfig, "models"),
        modes=MODE_CHOICES[mode],
        format=dataset_format,
        limit=limit,
        max_steps=max_steps,
        max_step_tokens=max_step_tokens,
        max_thought_chars=max_thought_chars,
        act_first=act_first,
        seed=seed,
        time_limit_s=time_limit,
        prompt_style=prompt_style,
        out=Path(out),
        kb=None if kb is None else Path(kb),
        fallback=fallback,
        vote=vote,
        temperature=temperature,
        reason_first=reason_first,
        read=read,
        server=server,
        server_kind=server_kind,
        api_key=api_key,
        concurrency=concurrency,
    )
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        advance: list[Callable[[int], None]] = []

        def start(total: int) -> None:  # after every check: a refusal prints nothing before its line
            bar = stack.enter_context(click.progressbar(length=total, label="questions", file=sys.stderr))
            advance.append(bar.update)

        summaries = run_eval(config, on_record=lambda _: advance[0](1), on_start=start)
    command = "tether eval " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["eval"] else ""
    write_reports(summaries, config.out, command=command, elapsed_s=time.monotonic() - began)
    click.echo(markdown_table(summaries), nl=False)
    if any(s.valid_calls is not None for s in summaries):
        click.echo(calls_table(summaries), nl=False)
    click.echo(f"results: {config.out}/report.md")
