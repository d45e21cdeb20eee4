"""The command line: a thin layer over the library; errors are one line and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_grammar_prints_the_composed_gbnf(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "grammar")
    assert code == 0
    assert out.startswith('root ::= "Thought: " thought "\\n" action "\\n"\n')
    assert 'action ::= "calculate: " cmd-calculate-root | "answer: " cmd-answer-root' in out


def test_grammar_answer_only_and_lark(capsys: pytest.CaptureFixture[str]) -> None:
    _, narrowed, _ = run(capsys, "grammar", "--answer-only")
    assert 'action ::= "answer: " cmd-answer-root' in narrowed and "calculate" not in narrowed
    _, lark_text, _ = run(capsys, "grammar", "--lark")
    assert "r_root:" in lark_text and '"calculate: "' in lark_text


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        (["ask", "q", "--model", "/no/such/model.gguf"], "error: model file not found: /no/such/model.gguf", 1),
        (["ask", "q", "--tools", "calculate,teleport"], "error: unknown tool 'teleport'; available:", 1),
        (["grammar", "--tools", "nope"], "error: unknown tool 'nope'", 1),
        (["ask", "q", "--max-steps", "0"], "error: Invalid value for '--max-steps'", 2),
        (["ask", "q", "--bogus"], "error: No such option '--bogus'", 2),
        (["ask"], "error: Missing argument 'QUESTION'", 2),
        (["corpus", "build", "/no/such.jsonl", "-o", "/tmp/x.sqlite"], "error: ", 1),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, code: int
) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code
    assert err.startswith(message)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_a_file_that_is_not_gguf_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model at all")
    code, _, err = run(capsys, "ask", "q", "--model", str(fake))
    assert code == 1 and "not a GGUF model file" in err


def test_unreadable_model_path_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "ask", "q", "--model", str(tmp_path))
    assert code == 1 and err == f"error: model path is not a file: {tmp_path}\n"


@pytest.mark.model
def test_ask_prints_a_live_trace_and_an_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 17 * 23?")
    assert code == 0
    assert "── step 1" in out and "Thought: " in out
    assert "\nAnswer: " in out and "stop: " in out


@pytest.mark.model
def test_ask_json_prints_the_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 6 * 7?", "--json", "--max-steps", "3")
    assert code == 0
    trace = json.loads(out)
    assert trace["question"] == "What is 6 * 7?"
    assert trace["stop_reason"] in ("answer", "step_limit", "loop")
    assert trace["answer"]
    assert 1 <= len(trace["steps"]) <= 3
    assert all(step["action"] is not None for step in trace["steps"])


@pytest.mark.model
def test_ask_no_grammar_runs_to_completion(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 6 * 7?", "--json", "--no-grammar", "--max-steps", "3")
    assert code == 0
    trace = json.loads(out)
    assert trace["mode"] == "free" and trace["stop_reason"] is not None


@pytest.mark.model
def test_ask_acts_first_so_the_headline_question_is_computed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 17 * 23?", "--json")
    trace = json.loads(out)
    assert code == 0 and trace["steps"][0]["action"]["command"] == "calculate"
    assert trace["steps"][0]["observation"] == "391" and trace["answer"] == "391"


@pytest.mark.model
def test_answer_first_leaves_the_first_step_open(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 17 * 23?", "--json", "--answer-first")
    trace = json.loads(out)
    assert code == 0 and trace["steps"][0]["restriction"] == "all"
