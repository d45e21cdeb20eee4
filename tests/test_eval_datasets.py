"""Question-set loaders on small fixtures: each format, detection, and bad input named by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.errors import DatasetError
from tether.evaluation import load_dataset


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def hotpot_item(n: int) -> dict[str, object]:
    return {
        "_id": f"q{n}",
        "question": f"Question {n}?",
        "answer": f"Answer {n}",
        "context": [[f"Title {n}", [f"Sentence about {n}."]]],
    }


def test_hotpotqa_is_detected_and_read(tmp_path: Path) -> None:
    data = load_dataset(write(tmp_path / "hp.json", json.dumps([hotpot_item(1), hotpot_item(2)])))
    assert data.format == "hotpotqa" and data.name == "hp" and data.tools == ["wikipedia", "lookup"]
    assert [(q.id, q.answer, q.numeric) for q in data.questions] == [
        ("q1", "Answer 1", False),
        ("q2", "Answer 2", False),
    ]


def test_gsm8k_answers_are_the_number_after_the_marks(tmp_path: Path) -> None:
    lines = [
        {"question": "Natalia sold 48 clips, then half as many. How many?", "answer": "48/2 = <<48/2=24>>24\n#### 72"},
        {"question": "Big?", "answer": "steps\n#### 1,200"},
    ]
    data = load_dataset(write(tmp_path / "gsm.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n"))
    assert data.format == "gsm8k" and data.tools == ["calculate"]
    assert [(q.id, q.answer, q.numeric) for q in data.questions] == [("line-1", "72", True), ("line-2", "1,200", True)]


def test_plain_question_answer_lines_like_svamp(tmp_path: Path) -> None:
    text = '{"question": "Cost?", "answer": 51.0}\n\n{"question": "Who?", "answer": "Ada", "id": "x"}\n'
    data = load_dataset(write(tmp_path / "svamp.jsonl", text))
    assert data.format == "qa"
    assert [(q.id, q.answer, q.numeric) for q in data.questions] == [("line-1", "51", True), ("x", "Ada", False)]


def test_the_format_can_be_forced(tmp_path: Path) -> None:
    path = write(tmp_path / "q.jsonl", '{"question": "Q?", "answer": "steps #### 5"}\n')
    assert load_dataset(path, "qa").questions[0].answer == "steps #### 5"
    assert load_dataset(path).questions[0].answer == "5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"question": "a?", "answer": 1}\n{"question": "b?", "answer": 2\n', r"line 2: not JSON"),
        ('{"question": "a?", "answer": 1}\n[1, 2]\n', r"line 2: expected an object"),
        ('{"question": "a?", "answer": 1}\n\n{"answer": 3}\n', r"line 3: missing or empty 'question'"),
        ('{"question": "a?", "answer": 1}\n{"question": "b?"}\n', r"line 2: missing or empty 'answer'"),
        ('{"question": "a?", "answer": ""}\n', r"line 1: missing or empty 'answer'"),
        ("", r"is empty"),
    ],
)
def test_malformed_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(write(tmp_path / "bad.jsonl", text))


def test_a_gsm8k_line_without_its_final_number_is_named(tmp_path: Path) -> None:
    text = '{"question": "a?", "answer": "x\\n#### 4"}\n{"question": "b?", "answer": "no marks"}\n'
    with pytest.raises(DatasetError, match=r"line 2: the answer has no '#### <number>' line"):
        load_dataset(write(tmp_path / "gsm.jsonl", text))


def test_malformed_hotpotqa_items_are_named(tmp_path: Path) -> None:
    broken = hotpot_item(2)
    del broken["context"]
    with pytest.raises(DatasetError, match=r"item 1: needs a 'context'"):
        load_dataset(write(tmp_path / "hp.json", json.dumps([hotpot_item(1), broken])))
    with pytest.raises(DatasetError, match=r"line 1: not JSON"):
        load_dataset(write(tmp_path / "hp2.json", '[{"question": '))
    with pytest.raises(DatasetError, match="repeats question ids"):
        load_dataset(write(tmp_path / "hp3.json", json.dumps([hotpot_item(1), hotpot_item(1)])))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_dataset(tmp_path / "absent.jsonl")


# --- hostile inputs (issue 14; report rows E4, E5, E14) -------------------------------------------------------


def one_line_error(path: Path) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_e4_deep_nesting_is_one_line(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    text = '{"question": "a?", "answer": 1}\n{"question": ' + deep + "}\n"
    assert "line 2: not JSON (nested too deeply)" in one_line_error(write(tmp_path / "deep.jsonl", text))
    assert "not JSON (nested too deeply)" in one_line_error(write(tmp_path / "deep.json", deep))
    assert "first.jsonl: not JSON (nested too deeply)" in one_line_error(write(tmp_path / "first.jsonl", deep))


def test_e5_a_5000_digit_answer_is_one_line(tmp_path: Path) -> None:
    text = '{"question": "a?", "answer": 1}\n{"question": "b?", "answer": ' + "9" * 5000 + "}\n"
    message = one_line_error(write(tmp_path / "big.jsonl", text))
    assert "line 2: not JSON (Exceeds the limit" in message
    hotpot = '[{"question": "q?", "answer": "a", "context": [], "_id": ' + "7" * 5000 + "}]"
    assert "not JSON (Exceeds the limit" in one_line_error(write(tmp_path / "big.json", hotpot))
    text = '{"question": "a?", "answer": Infinity}\n'
    assert "line 1: the answer inf is not a finite number" in one_line_error(write(tmp_path / "inf.jsonl", text))


def test_e14_lone_surrogates_become_replacement_characters(tmp_path: Path) -> None:
    text = '{"question": "What is \\ud800 2 + 3?", "answer": "5\\udfff", "id": "s\\udc80"}\n'
    (q,) = load_dataset(write(tmp_path / "s.jsonl", text)).questions
    assert (q.question, q.answer, q.id) == ("What is \ufffd 2 + 3?", "5\ufffd", "s\ufffd")
    q.model_dump_json()  # would raise PydanticSerializationError on a lone surrogate
    item = {**hotpot_item(1), "question": "Who \ud800?", "answer": "A\udc00", "_id": "h\ud800"}
    path = tmp_path / "hp.json"
    path.write_text(json.dumps([item]), encoding="utf-8")  # json.dumps escapes them as \ud800
    (h,) = load_dataset(path).questions
    assert (h.question, h.answer, h.id) == ("Who \ufffd?", "A\ufffd", "h\ufffd")


def test_an_endless_dataset_stops_at_the_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tether.evaluation.datasets as datasets

    monkeypatch.setattr(datasets, "MAX_DATASET_BYTES", 1000)
    line = json.dumps({"question": "a?", "answer": 1}) + "\n"
    path = write(tmp_path / "long.jsonl", line * (2000 // len(line)))
    assert "larger than 1,000 bytes" in one_line_error(path)
    assert len(load_dataset(write(tmp_path / "short.jsonl", line * 3)).questions) == 3
