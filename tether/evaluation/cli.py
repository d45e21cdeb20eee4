"""The `tether eval` command: options in, a progress bar while it runs, reports out.

Kept here rather than in tether/cli.py so the harness is one package; tether/cli.py registers it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import click

from tether.engine.protocol import Mode

__all__ = ["evaluate"]


@click.command("eval")
@click.argument("datasets", nargs=-1, required=True, type=click.Path())
@click.option(
    "--model", "models", multiple=True, help="model name or GGUF path; repeat for several (default: smollm2-135m)"
)
@click.option("--mode", type=click.Choice(["constrained", "free", "both"]), default="both", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="the first N questions of each dataset")
@click.option("--max-steps", type=click.IntRange(1, 100), default=6, show_default=True)
@click.option("--max-step-tokens", type=click.IntRange(min=16), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--time-limit", type=click.FloatRange(min=0.1), default=120.0, show_default=True, help="seconds per question"
)
@click.option("--format", "dataset_format", type=click.Choice(["hotpotqa", "gsm8k", "qa"]), help="default: detected")
@click.option("--prompt-style", type=click.Choice(["auto", "chat", "raw"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(), default="eval-results", show_default=True, help="results folder (resumes)")
@click.option("--server", help="an OpenAI-compatible server's base URL; --model then names the served model")
@click.option("--server-kind", type=click.Choice(["llama-cpp", "vllm"]), default="llama-cpp", show_default=True)
@click.option("--api-key-env", default="TETHER_API_KEY", show_default=True, help="the variable holding the API key")
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
    seed: int,
    time_limit: float,
    dataset_format: Literal["hotpotqa", "gsm8k", "qa"] | None,
    prompt_style: Literal["auto", "chat", "raw"],
    out: str,
    server: str | None,
    server_kind: Literal["llama-cpp", "vllm"],
    api_key_env: str,
    concurrency: int,
) -> None:
    """Run the agent over DATASETS (HotpotQA JSON, GSM8K JSONL, {question, answer} JSONL) and score it.

    Re-running with the same --out skips the questions already answered there."""
    from tether.evaluation.report import markdown_table, write_reports
    from tether.evaluation.runner import EvalConfig, run_eval

    if concurrency > 1 and server is None:
        raise click.UsageError("--concurrency needs --server: an in-process model decodes one question at a time")
    config = EvalConfig(
        datasets=tuple(Path(d) for d in datasets),
        models=models or ("smollm2-135m",),
        modes=(Mode.CONSTRAINED, Mode.FREE) if mode == "both" else (Mode(mode),),
        format=dataset_format,
        limit=limit,
        max_steps=max_steps,
        max_step_tokens=max_step_tokens,
        seed=seed,
        time_limit_s=time_limit,
        prompt_style=prompt_style,
        out=Path(out),
        server=server,
        server_kind=server_kind,
        api_key=os.environ.get(api_key_env),
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
    click.echo(f"results: {config.out}/report.md")
