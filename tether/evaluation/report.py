"""The outputs people read: summary.json, a Markdown table, and a PNG chart of the same numbers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tether.evaluation.metrics import Summary
from tether.text import clean_text

__all__ = [
    "accuracy_cell",
    "answers_table",
    "calls_table",
    "cost_table",
    "markdown_table",
    "modes_table",
    "write_chart",
    "write_reports",
]

_COLUMNS = (
    "dataset",
    "model",
    "mode",
    "n",
    "accuracy",
    "F1",
    "valid steps",
    "answer / limit / loop / time / other",
    "steps/q",
    "p50 s/q",
    "p95 s/q",
    "tok/s",
)
_COST_COLUMNS = (
    "dataset",
    "model",
    "mode",
    "tool calls",
    "repeats",
    "p50 s/step",
    "p95 s/step",
    "sampled",
    "forced",
    "prompt evaluated / total",
)


_SOURCES = ("agent", "forced", "fallback", "closed_book", "none")
_ANSWER_COLUMNS = (
    "dataset",
    "model",
    "mode",
    "answer type",
    "agent / forced / fallback / closed-book / none",
    "gold titles reached",
    "questions with all gold titles",
)


_CALL_COLUMNS = (
    "dataset",
    "model",
    "mode",
    "n",
    "AST accuracy",
    "valid calls",
    "invalid calls",
    "no call / unknown function / not JSON / off schema / cut / schema refused",
)
_INVALID = ("no_call", "unknown_function", "not_json", "schema_invalid", "cut", "schema_refused")


def accuracy_cell(s: Summary) -> str:
    """The accuracy with its Wilson 95% interval, e.g. `36.7% [21.9, 54.5]`."""
    return f"{s.accuracy:.1%} [{100 * s.accuracy_low:.1f}, {100 * s.accuracy_high:.1f}]"


def modes_table(summaries: Sequence[Summary]) -> str:
    """Accuracy per dataset x model with the modes side by side (a mode not run shows `-`)."""
    modes = list(dict.fromkeys(s.mode for s in summaries))
    cells = {(s.dataset, s.model, s.mode): s for s in summaries}
    rows = [_header(("dataset", "model", *modes))]
    for dataset, model in dict.fromkeys((s.dataset, s.model) for s in summaries):
        found = [cells.get((dataset, model, mode)) for mode in modes]
        shown = [f"{accuracy_cell(s)} (n={s.questions})" if s else "-" for s in found]
        rows.append("| " + " | ".join([dataset, model, *shown]) + " |")
    return "\n".join(rows) + "\n"


def answers_table(summaries: Sequence[Summary]) -> str:
    """Where the answers came from, and (HotpotQA) how often the runs reached the gold paragraphs."""
    rows = [_header(_ANSWER_COLUMNS)]
    for s in summaries:
        sources = " / ".join(str(s.answer_sources.get(k, 0)) for k in _SOURCES)
        reached = "-" if s.gold_titles_reached is None else f"{s.gold_titles_reached:.1%}"
        complete = "-" if s.questions_all_gold_reached is None else f"{s.questions_all_gold_reached:.1%}"
        cells = [s.dataset, s.model, s.mode, s.answer_type, sources, reached, complete]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def calls_table(summaries: Sequence[Summary]) -> str:
    """BFCL: AST accuracy with its interval, and how many first calls were valid (named one of the
    question's functions with a JSON object its schema accepts) or not, and why not."""
    rows = [_header(_CALL_COLUMNS)]
    for s in summaries:
        if s.valid_calls is None:
            continue
        rate = s.valid_calls / s.questions if s.questions else 0.0
        why = " / ".join(str(s.call_outcomes.get(k, 0)) for k in _INVALID)
        cells = [s.dataset, s.model, s.mode, str(s.questions), accuracy_cell(s), f"{rate:.1%}"]
        cells += [str(s.invalid_calls), why]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def markdown_table(summaries: Sequence[Summary]) -> str:
    """The results table: outcomes, accuracy, validity and speed per dataset x model x mode."""
    rows = [_header(_COLUMNS)]
    for s in summaries:
        stops = s.stop_reasons
        counted = [stops.get(k, 0) for k in ("answer", "step_limit", "loop", "time_limit")]
        ends = " / ".join(str(n) for n in [*counted, s.questions - sum(counted)])
        cells = [
            s.dataset,
            s.model,
            s.mode,
            str(s.questions),
            accuracy_cell(s),
            f"{s.f1:.2f}",
            f"{s.valid_step_rate:.1%}",
            ends,
            f"{s.mean_steps:.1f}",
            f"{s.question_latency_p50_s:.1f}",
            f"{s.question_latency_p95_s:.1f}",
            f"{s.tokens_per_second:.0f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def cost_table(summaries: Sequence[Summary]) -> str:
    """Where the time and tokens went: tool calls by tool, step latency, tokens sampled vs forced."""
    rows = [_header(_COST_COLUMNS)]
    for s in summaries:
        calls = ", ".join(f"{name} {n}" for name, n in s.tool_calls.items()) or "none"
        cells = [
            s.dataset,
            s.model,
            s.mode,
            calls,
            str(s.repeated_actions),
            f"{s.step_latency_p50_s:.2f}",
            f"{s.step_latency_p95_s:.2f}",
            str(s.tokens_sampled),
            str(s.tokens_forced),
            f"{s.prompt_tokens_evaluated} / {s.prompt_tokens}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _header(columns: Sequence[str]) -> str:
    return "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)


def write_reports(
    summaries: Sequence[Summary], out: Path, *, command: str = "", elapsed_s: float | None = None
) -> None:
    """summary.json, report.md and chart.png in `out`. The command comes from argv, which may hold
    undecodable bytes (lone surrogates): cleaned, so the report can always be written."""
    command = clean_text(command)
    (out / "summary.json").write_text(
        json.dumps([s.model_dump() for s in summaries], indent=2) + "\n", encoding="utf-8"
    )
    lines = ["# tether eval", ""]
    if command:
        took = (
            f" (this invocation: {elapsed_s / 60:.1f} min; a resumed run reuses earlier records)" if elapsed_s else ""
        )
        lines += [f"Produced by `{command}`{took}.", ""]
    lines += [
        "## Accuracy by mode",
        "",
        "accuracy with its Wilson 95% interval, in percent; n: questions. constrained: the step grammar "
        "drives the decoder; free: the same agent without it; closed-book: no tools, the model's own "
        "reasoning, then a grammar-constrained answer.",
        "",
        modes_table(summaries),
        "## Runs",
        "",
        "accuracy: exact match (HotpotQA) or the same final number (GSM8K, SVAMP); F1: HotpotQA token F1; "
        "valid steps: steps the Lark validator accepts over all generated steps (a step cut off by the time "
        "limit is not counted); answer / limit / loop / time / other: how the runs ended (other: the context "
        "limit or a server failure, itemised in summary.json); s/q: seconds per question; "
        "tok/s: tokens decoded (sampled + forced) per second of step decoding, prompt evaluation included.",
        "",
        markdown_table(summaries),
        "## Costs",
        "",
        "tool calls: tools actually run; repeats: repeated actions answered by the loop detector instead; "
        "forced: tokens the grammar allowed only one way, appended without sampling.",
        "",
        cost_table(summaries),
        "## Answers and retrieval",
        "",
        "answer type: what the answer grammar admits (number, short: one phrase of at most 8 words, text); "
        "agent / forced / fallback / closed-book / none: which path produced each answer (the model chose "
        "`answer:`; the grammar forced it at the step limit or in a loop; a closed-book pass over the run's "
        "observations; closed-book mode; no answer); gold titles reached: HotpotQA's supporting paragraphs "
        "that a `wikipedia` search opened, a `lookup` read or the run read among its passages "
        "(`--read`), over all of them; questions with all gold "
        "titles: the share of questions whose runs reached every one.",
        "",
        answers_table(summaries),
    ]
    if any(s.valid_calls is not None for s in summaries):
        lines += [
            "## Function calls (BFCL)",
            "",
            "AST accuracy: the run's first call accepted by BFCL's AST checker (function, required and "
            "allowed parameters, values among the possible answers), with its Wilson 95% interval; valid "
            "calls: first calls that name one of the question's functions with a JSON object its schema "
            "accepts; invalid calls: the rest, by reason (cut: the step's token budget ended it before the "
            "call was complete; schema refused: tether cannot derive the grammar of one of the question's "
            "functions, so the question was not asked).",
            "",
            calls_table(summaries),
        ]
    lines += ["![accuracy and valid-step rate](chart.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    write_chart(summaries, out / "chart.png")


def write_chart(summaries: Sequence[Summary], path: Path) -> None:
    """Accuracy and valid-step rate per dataset, model and mode, as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s.dataset}\n{s.model}" for s in summaries]
    groups = list(dict.fromkeys(labels))
    modes = list(dict.fromkeys(s.mode for s in summaries))
    width = 0.8 / max(1, len(modes))
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 1.6 * len(groups)), 7), sharex=True)
    for ax, field, title in ((axes[0], "accuracy", "accuracy"), (axes[1], "valid_step_rate", "valid-step rate")):
        for k, mode in enumerate(modes):
            xs, ys, below, above = [], [], [], []
            for s, label in zip(summaries, labels, strict=True):
                if s.mode == mode:
                    xs.append(groups.index(label) + (k - (len(modes) - 1) / 2) * width)
                    ys.append(getattr(s, field))
                    below.append(s.accuracy - s.accuracy_low)
                    above.append(s.accuracy_high - s.accuracy)
            errors = [below, above] if field == "accuracy" else None  # the Wilson 95% interval
            ax.bar(xs, ys, width=width, label=mode, yerr=errors, capsize=2)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="mode")
    axes[1].set_xticks(range(len(groups)), groups, fontsize=8)
    fig.suptitle("tether eval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
