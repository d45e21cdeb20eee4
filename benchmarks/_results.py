"""What every answer-accuracy benchmark writes: its settings, the core count and its rows, as JSON; and
the accuracy cells of the table it prints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_results(path: Path, rows: list[dict[str, Any]], **settings: Any) -> None:
    """Write `settings`, the machine's core count and `rows` to `path` (its folder made) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**settings, "cores": os.cpu_count(), "rows": rows}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results: {path}")


def accuracy_cells(row: dict[str, Any]) -> str:
    """A row's "accuracy [95% interval] | correct / n" table cells."""
    low, high = row["interval"]
    return f"{row['accuracy']:.1%} [{low:.1%}, {high:.1%}] | {row['correct']} / {row['n']}"
