"""BFCL's data: the bfcl-eval wheel (read with zipfile, never installed), its question files and
their possible answers.

`scripts/bootstrap` fetches the wheel (`pip download bfcl-eval==2026.3.23 --no-deps -d <data dir>`).
`bfcl:simple_python` names a category inside it; a question file with `possible_answer/<same name>`
beside it (the wheel's layout) is read as well. Only categories whose answers hold one Python call
are scored (simple, multiple, and their live_ versions); multi-turn, parallel (several calls), Java
and JavaScript sets are refused with a DatasetError saying why.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tether.errors import DatasetError
from tether.paths import cache_dir
from tether.text import clean_text

__all__ = [
    "BFCL_VERSION",
    "WHEEL_NAME",
    "BfclItem",
    "answers_path",
    "bfcl_wheel",
    "data_dir",
    "fetch_command",
    "open_category",
    "read_items",
]

BFCL_VERSION = "2026.3.23"
WHEEL_NAME = f"bfcl_eval-{BFCL_VERSION}-py3-none-any.whl"


class BfclItem(BaseModel):
    """One BFCL question: the user's words, the functions offered, and the one possible answer."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    functions: tuple[dict[str, Any], ...]
    ground_truth: dict[str, dict[str, list[Any]]]


def data_dir() -> Path:
    """`$TETHER_DATA_DIR`, or `${XDG_CACHE_HOME:-~/.cache}/tether/data`: downloaded question sets."""
    return cache_dir("data", "TETHER_DATA_DIR")


def fetch_command() -> str:
    return f"scripts/bootstrap, or: pip download bfcl-eval=={BFCL_VERSION} --no-deps -d {data_dir()}"


def bfcl_wheel() -> Path:
    """The bfcl-eval wheel: `$TETHER_BFCL_WHEEL`, or WHEEL_NAME in `data_dir()`; DatasetError if missing."""
    configured = os.environ.get("TETHER_BFCL_WHEEL")
    wheel = Path(configured).expanduser() if configured else data_dir() / WHEEL_NAME
    if not wheel.is_file():
        where = "$TETHER_BFCL_WHEEL" if configured else "the data folder"
        raise DatasetError(f"BFCL data: no {wheel} ({where}); fetch it with {fetch_command()}")
    return wheel


def open_category(category: str) -> tuple[Path, str, str]:
    """A category inside the wheel: (its path there, for naming results; questions; answers)."""
    wheel = bfcl_wheel()
    member = f"bfcl_eval/data/BFCL_v4_{category}.json"
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            if member not in names:
                found = sorted(n.removeprefix("bfcl_eval/data/BFCL_v4_").removesuffix(".json") for n in names
                               if n.startswith("bfcl_eval/data/BFCL_v4_"))  # fmt: skip
                raise DatasetError(f"BFCL has no category {category!r}; it has {', '.join(found)}")
            questions = archive.read(member).decode("utf-8")
            answers = archive.read(answers_path(Path(member)).as_posix()).decode("utf-8")
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"cannot read BFCL {category!r} from {wheel}: {exc}; fetch it with {fetch_command()}"
        ) from None
    return wheel / member, questions, answers


def answers_path(questions: Path) -> Path:
    """Where BFCL keeps a question file's possible answers: `possible_answer/<same name>` beside it."""
    return questions.parent / "possible_answer" / questions.name


def _json_lines(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    found = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise DatasetError(f"{path}, line {n}: not JSON ({str(exc).splitlines()[0]})") from None
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise DatasetError(f"{path}, line {n}: expected a JSON object with an 'id'")
        found.append((n, item))
    return found


def read_items(path: Path, questions: str, answers: str) -> list[BfclItem]:
    """The questions of a BFCL question file, each with its possible answer (matched by id)."""
    if "java" in path.name.lower():
        raise DatasetError(
            f"{path}: tether scores Python calls; BFCL's Java and JavaScript sets have their own checker"
        )
    where = answers_path(path)
    truth = {item["id"]: (n, item.get("ground_truth")) for n, item in _json_lines(where, answers)}
    items = []
    for n, item in _json_lines(path, questions):
        turns, functions = item.get("question"), item.get("function")
        if not (isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], list)):
            raise DatasetError(f"{path}, line {n}: expected one turn of messages (multi-turn sets are not scored)")
        said = [m.get("content") for m in turns[0] if isinstance(m, dict) and m.get("role") == "user"]
        words = [w for w in said if isinstance(w, str)]
        if not words or len(words) != len(said):
            raise DatasetError(f"{path}, line {n}: the question has no user message")
        if not isinstance(functions, list) or not functions or not all(_is_function(f) for f in functions):
            raise DatasetError(f"{path}, line {n}: 'function' must list functions with a name and parameters")
        if item["id"] not in truth:
            raise DatasetError(f"{where}: no possible answer for {item['id']!r} ({path}, line {n})")
        at, answer = truth[item["id"]]
        if not (isinstance(answer, list) and len(answer) == 1 and isinstance(answer[0], dict) and len(answer[0]) == 1):
            raise DatasetError(f"{where}, line {at}: expected one call (tether scores BFCL's one-call categories)")
        items.append(
            BfclItem(
                id=clean_text(item["id"]),
                question=clean_text(" ".join(w.strip() for w in words)),
                functions=tuple(functions),
                ground_truth=answer[0],
            )
        )
    return items


def _is_function(f: object) -> bool:
    return isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("parameters"), dict)
