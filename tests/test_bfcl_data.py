"""BFCL's data on fixtures the tests write (a question file with possible_answer/ beside it, and a
small stand-in for the bfcl-eval wheel): reading, detection, and every refusal naming its cause."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tether.errors import DatasetError
from tether.evaluation import load_dataset
from tether.evaluation.bfcl_data import WHEEL_NAME, bfcl_wheel, data_dir

FUNCTION = {
    "name": "math.factorial",
    "description": "Calculate the factorial of a given number.",
    "parameters": {"type": "dict", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
}


def question(n: int, **changes: Any) -> dict[str, Any]:
    item = {
        "id": f"simple_python_{n}",
        "question": [[{"role": "user", "content": f"Calculate the factorial of {n}."}]],
        "function": [FUNCTION],
    }
    return item | changes


def answer(n: int, **changes: Any) -> dict[str, Any]:
    return {"id": f"simple_python_{n}", "ground_truth": [{"math.factorial": {"number": [n]}}]} | changes


def lines(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(i) + "\n" for i in items)


def bfcl_files(folder: Path, questions: list[dict[str, Any]], answers: list[dict[str, Any]]) -> Path:
    """The wheel's layout: BFCL_v4_<category>.json and possible_answer/ with the same name."""
    (folder / "possible_answer").mkdir(parents=True, exist_ok=True)
    (folder / "possible_answer" / "BFCL_v4_simple_python.json").write_text(lines(answers), encoding="utf-8")
    path = folder / "BFCL_v4_simple_python.json"
    path.write_text(lines(questions), encoding="utf-8")
    return path


def fake_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bfcl_eval/data/BFCL_v4_simple_python.json", lines([question(3), question(5)]))
        archive.writestr("bfcl_eval/data/possible_answer/BFCL_v4_simple_python.json", lines([answer(5), answer(3)]))
    return path


def test_a_question_file_is_detected_and_paired_with_its_answers(tmp_path: Path) -> None:
    data = load_dataset(bfcl_files(tmp_path, [question(3), question(5)], [answer(5), answer(3)]))
    assert data.format == "bfcl" and data.name == "BFCL_v4_simple_python" and data.tools == []
    first = data.questions[0]
    assert (first.id, first.question, first.numeric) == ("simple_python_3", "Calculate the factorial of 3.", False)
    assert first.functions == (FUNCTION,)
    assert first.ground_truth == {"math.factorial": {"number": [3]}}
    assert json.loads(first.answer) == first.ground_truth  # the gold shown in records


def test_a_category_is_read_from_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_DATA_DIR", str(tmp_path))
    fake_wheel(tmp_path / WHEEL_NAME)
    data = load_dataset("bfcl:simple_python")
    assert data.format == "bfcl" and data.name == "BFCL_v4_simple_python"
    assert [q.ground_truth for q in data.questions] == [{"math.factorial": {"number": [n]}} for n in (3, 5)]


def test_the_wheel_may_be_named_by_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_BFCL_WHEEL", str(fake_wheel(tmp_path / "elsewhere.whl")))
    assert len(load_dataset("bfcl:simple_python").questions) == 2


def test_the_data_folder_follows_tether_data_dir_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "tether" / "data"
    monkeypatch.setenv("TETHER_DATA_DIR", str(tmp_path / "mine"))
    assert data_dir() == tmp_path / "mine"


def test_a_missing_wheel_names_the_command_that_fetches_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_BFCL_WHEEL", raising=False)
    monkeypatch.setenv("TETHER_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"pip download bfcl-eval==2026\.3\.23 --no-deps -d") as caught:
        bfcl_wheel()
    assert "scripts/bootstrap" in str(caught.value) and str(tmp_path) in str(caught.value)
    monkeypatch.setenv("TETHER_BFCL_WHEEL", str(tmp_path / "gone.whl"))
    with pytest.raises(DatasetError, match="TETHER_BFCL_WHEEL"):
        load_dataset("bfcl:simple_python")


def test_an_unknown_category_lists_those_there_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_BFCL_WHEEL", str(fake_wheel(tmp_path / "w.whl")))
    with pytest.raises(DatasetError, match="no category 'simple'; it has simple_python"):
        load_dataset("bfcl:simple")


def test_a_wheel_that_is_not_a_zip_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    monkeypatch.setenv("TETHER_BFCL_WHEEL", str(broken))
    with pytest.raises(DatasetError, match="cannot read BFCL 'simple_python'"):
        load_dataset("bfcl:simple_python")


@pytest.mark.parametrize(
    ("questions", "answers", "message"),
    [
        ([question(3)], [answer(4)], r"no possible answer for 'simple_python_3'"),
        ([question(3)], [answer(3, ground_truth=[{"a": {}}, {"b": {}}])], "line 1: expected one call"),
        ([question(3, question=[[], []])], [answer(3)], "line 1: expected one turn"),
        ([question(3, question=[[{"role": "system", "content": "x"}]])], [answer(3)], "no user message"),
        ([question(3, function=[{"name": "f"}])], [answer(3)], "'function' must list functions"),
        ([question(3, function=[])], [answer(3)], "'function' must list functions"),
    ],
)
def test_bad_items_are_named_by_file_and_line(
    tmp_path: Path, questions: list[dict[str, Any]], answers: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(bfcl_files(tmp_path, questions, answers))


def test_missing_answers_and_bad_json_are_named(tmp_path: Path) -> None:
    path = bfcl_files(tmp_path, [question(3)], [answer(3)])
    (tmp_path / "possible_answer" / path.name).write_text('{"id": "simple_python_3", \n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"possible_answer/BFCL_v4_simple_python\.json, line 1: not JSON"):
        load_dataset(path)
    (tmp_path / "possible_answer" / path.name).unlink()
    with pytest.raises(DatasetError, match="cannot read BFCL possible answers"):
        load_dataset(path, "bfcl")


def test_java_and_javascript_sets_are_refused(tmp_path: Path) -> None:
    path = bfcl_files(tmp_path, [question(3)], [answer(3)])
    java = path.with_name("BFCL_v4_simple_java.json")
    path.rename(java)
    (tmp_path / "possible_answer" / path.name).rename(tmp_path / "possible_answer" / java.name)
    with pytest.raises(DatasetError, match="Python calls"):
        load_dataset(java)


def test_a_bfcl_category_refuses_another_format() -> None:
    with pytest.raises(DatasetError, match="is a BFCL category, not a gsm8k file"):
        load_dataset("bfcl:simple_python", "gsm8k")
