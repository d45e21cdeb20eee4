"""Question sets: HotpotQA JSON, GSM8K JSONL, plain `{question, answer}` JSONL (SVAMP's layout), and
BFCL's function-calling questions (`bfcl:<category>` from the bfcl-eval wheel, or a question file with
`possible_answer/` beside it; tether.evaluation.bfcl).

A line or item that cannot be read is a DatasetError naming the file and line (or item), never a
silent skip: a score over fewer questions than the file holds would mislead. Malformed JSON of any
kind (deep nesting, numbers too long to convert) is such an error too. Lone surrogates in a field (a
JSON `\\ud800` escape) are replaced by U+FFFD where the field is read, so no record can fail to save.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tether.corpus.text import normalise
from tether.errors import DatasetError
from tether.evaluation.bfcl_data import BfclItem, answers_path, open_category, read_items
from tether.text import clean_text

__all__ = ["FORMATS", "Dataset", "Format", "Question", "load_dataset"]

Format = Literal["hotpotqa", "gsm8k", "qa", "bfcl"]
FORMATS: tuple[Format, ...] = ("hotpotqa", "gsm8k", "qa", "bfcl")
BFCL_PREFIX = "bfcl:"  # `bfcl:simple_python`: a category of the bfcl-eval wheel
MAX_DATASET_BYTES = 2**30  # far above any question set (HotpotQA's training set is 566 MB)
_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$")


class Question(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answer: str
    numeric: bool  # scored as a number (GSM8K, SVAMP) rather than by EM / F1 (HotpotQA)
    supporting_titles: tuple[str, ...] = ()  # HotpotQA: the gold paragraphs' titles, to measure retrieval
    # BFCL: the functions offered (BFCL's own descriptions) and the one possible answer; `answer` is its JSON
    functions: tuple[dict[str, Any], ...] = ()
    ground_truth: dict[str, dict[str, list[Any]]] | None = None


class Dataset(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    format: Format
    questions: tuple[Question, ...]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def tools(self) -> list[str]:
        """The tools the agent gets: the offline encyclopedia for HotpotQA, the calculator for arithmetic,
        none for BFCL (each question brings its own functions)."""
        if self.format == "bfcl":
            return []
        return ["wikipedia", "lookup"] if self.format == "hotpotqa" else ["calculate"]


def load_dataset(path: Path | str, format: Format | None = None) -> Dataset:
    """Read a question set; the format is detected from the content unless given."""
    if str(path).startswith(BFCL_PREFIX):
        if format not in (None, "bfcl"):
            raise DatasetError(f"{path} is a BFCL category, not a {format} file")
        path, text, answers = open_category(str(path).removeprefix(BFCL_PREFIX))
        return _dataset(path, "bfcl", [_bfcl_question(item) for item in read_items(path, text, answers)])
    path = Path(path)
    text = _read(path)
    chosen = format or _detect(path, text)
    if chosen == "hotpotqa":
        questions = _hotpotqa(path, text)
    elif chosen == "bfcl":
        items = read_items(path, text, _read(answers_path(path), what="BFCL possible answers"))
        questions = [_bfcl_question(item) for item in items]
    else:
        questions = [_jsonl_question(path, n, line, chosen) for n, line in _lines(text)]
    return _dataset(path, chosen, questions)


def _dataset(path: Path, chosen: Format, questions: list[Question]) -> Dataset:
    if not questions:
        raise DatasetError(f"dataset {path} holds no questions")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"dataset {path} repeats question ids")
    return Dataset(path=path, format=chosen, questions=tuple(questions))


def _read(path: Path, what: str = "dataset") -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_DATASET_BYTES + 1)  # bounded: /dev/zero or a FIFO that never ends stops here
        if len(data) > MAX_DATASET_BYTES:
            raise DatasetError(f"{what} {path} is larger than {MAX_DATASET_BYTES:,} bytes; split it")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from None
    if not text.strip():
        raise DatasetError(f"{what} {path} is empty")
    return text


def _bfcl_question(item: BfclItem) -> Question:
    return Question(
        id=item.id,
        question=item.question,
        answer=json.dumps(item.ground_truth, ensure_ascii=False),
        numeric=False,
        functions=item.functions,
        ground_truth=item.ground_truth,
    )


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _detect(path: Path, text: str) -> Format:
    if text.lstrip().startswith("["):
        return "hotpotqa"
    n, first = _lines(text)[0]
    item = _json(path, n, first)
    if isinstance(item.get("function"), list) and isinstance(item.get("question"), list):
        return "bfcl"
    return "gsm8k" if _GSM8K_ANSWER.search(str(item.get("answer", ""))) else "qa"


def _loads(text: str, path: Path, line: int | None) -> Any:
    """json.loads with every way it can fail as one DatasetError naming the file and line."""
    where = f"{path}, line {line}" if line is not None else str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"{path}, line {line if line is not None else exc.lineno}"
        raise DatasetError(f"{where}: not JSON ({exc.msg})") from None
    except ValueError as exc:  # a number too long to convert
        raise DatasetError(f"{where}: not JSON ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise DatasetError(f"{where}: not JSON (nested too deeply)") from None


def _json(path: Path, n: int, line: str) -> dict[str, Any]:
    item = _loads(line, path, n)
    if not isinstance(item, dict):
        raise DatasetError(f"{path}, line {n}: expected an object with question and answer")
    return item


def _jsonl_question(path: Path, n: int, line: str, format: Format) -> Question:
    item = _json(path, n, line)
    question, answer = item.get("question"), item.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{path}, line {n}: missing or empty 'question'")
    if format == "gsm8k":
        found = _GSM8K_ANSWER.search(str(answer or ""))
        if not found:
            raise DatasetError(f"{path}, line {n}: the answer has no '#### <number>' line")
        answer = found.group(1)
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or str(answer).strip() == "":
        raise DatasetError(f"{path}, line {n}: missing or empty 'answer'")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise DatasetError(f"{path}, line {n}: the answer {answer} is not a finite number")
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    try:
        text = str(answer)
    except ValueError:  # an integer too long to print (1e308 is fine; this needs > 4300 digits)
        raise DatasetError(f"{path}, line {n}: the answer is a number too long to compare") from None
    return Question(
        id=clean_text(str(item.get("id", f"line-{n}"))),
        question=clean_text(question.strip()),
        answer=clean_text(text),
        numeric=_is_number(text),
    )


def _is_number(answer: object) -> bool:
    """Numbers are scored as numbers; any other answer by exact match and F1."""
    try:
        float(str(answer).replace(",", ""))
    except ValueError:
        return False
    return True


def _hotpotqa(path: Path, text: str) -> list[Question]:
    items = _loads(text, path, None)
    if not isinstance(items, list):
        raise DatasetError(f"{path}: expected a JSON list of HotpotQA questions")
    questions = []
    for n, item in enumerate(items):
        where = f"{path}, item {n}"
        if not isinstance(item, dict):
            raise DatasetError(f"{where}: expected an object")
        question, answer = item.get("question"), item.get("answer")
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, str):
            raise DatasetError(f"{where}: needs a 'question' and an 'answer' string")
        if not isinstance(item.get("context"), list):
            raise DatasetError(f"{where}: needs a 'context' list of [title, sentences]")
        ident = clean_text(str(item.get("_id") or item.get("id") or f"item-{n}"))
        questions.append(
            Question(
                id=ident,
                question=clean_text(question.strip()),
                answer=clean_text(answer),
                numeric=False,
                supporting_titles=_supporting_titles(item.get("supporting_facts", []), where),
            )
        )
    return questions


def _supporting_titles(facts: object, where: str) -> tuple[str, ...]:
    """The distinct titles of `supporting_facts` (`[[title, sentence index], ...]`), normalised as the
    knowledge base normalises its titles, so that they compare with what the tools show."""
    if not isinstance(facts, list) or not all(
        isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and f[0].strip() for f in facts
    ):
        raise DatasetError(f"{where}: 'supporting_facts' must be a list of [title, sentence index]")
    return tuple(dict.fromkeys(normalise(f[0]) for f in facts))
