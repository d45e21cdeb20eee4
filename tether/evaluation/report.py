"""The outputs people read: summary.json, a Markdown table, and a PNG chart of the same numbers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tether.evaluation.metrics import Summary

__all__ = ["markdown_table", "write_chart", "write_reports"]

_COLUMNS = (
    "dataset",
    "model",
    "mode",
    "n",
    "accuracy",
    "F1",
    "valid steps",
    "answer / limit / loop / time",
    "steps/q",
    "p50 s/q",
    "p95 s/q",
    "tok/s",
)


def markdown_table(summaries: Sequence[Summary]) -> str:
    rows = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for s in summaries:
        stops = s.stop_reasons
        ends = f"{stops['answer']} / {stops['step_limit']} / {stops['loop']} / {stops['time_limit']}"
        cells = [
            s.dataset,
            s.model,
            s.mode,
            str(s.questions),
            f"{s.accuracy:.1%}",
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


def write_reports(
    summaries: Sequence[Summary], out: Path, *, command: str = "", elapsed_s: float | None = None
) -> None:
    """summary.json, report.md and chart.png in `out`."""
    (out / "summary.json").write_text(
        json.dumps([s.model_dump() for s in summaries], indent=2) + "\n", encoding="utf-8"
    )
    lines = ["# tether eval", ""]
    if command:
        lines += [f"Produced by `{command}`" + (f" in {elapsed_s / 60:.1f} min." if elapsed_s else "."), ""]
    lines += [
        "accuracy: exact match (HotpotQA) or the same final number (GSM8K, SVAMP); F1: HotpotQA token F1; "
        "valid steps: steps the Lark validator accepts over all generated steps; s/q: seconds per question.",
        "",
        markdown_table(summaries),
        "![accuracy and valid-step rate](chart.png)",
        "",
    ]
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
            xs, ys = [], []
            for s, label in zip(summaries, labels, strict=True):
                if s.mode == mode:
                    xs.append(groups.index(label) + (k - (len(modes) - 1) / 2) * width)
                    ys.append(getattr(s, field))
            ax.bar(xs, ys, width=width, label=mode)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(title="mode")
    axes[1].set_xticks(range(len(groups)), groups, fontsize=8)
    fig.suptitle("tether eval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
