"""What the eval measures beside accuracy: Wilson intervals on every accuracy, and how often a
HotpotQA run reached its gold paragraphs (issue 10 items 6, 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.engine.protocol import Action, Mode, Step, StopReason, Trace
from tether.errors import DatasetError
from tether.evaluation import Record, Score, load_dataset, summarise
from tether.evaluation.metrics import wilson_interval
from tether.evaluation.report import accuracy_cell, answers_table, modes_table, write_reports
from tether.evaluation.retrieval import titles_reached


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (11, 30, 0.2187, 0.5449),  # the example: 36.7% [21.9, 54.5]
        (30, 60, 0.3773, 0.6227),  # 60 questions: about ±12 points
        (0, 10, 0.0, 0.2775),  # no success: the interval is not a point
        (10, 10, 0.7225, 1.0),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_matches_known_values(successes: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_of_no_questions_is_empty() -> None:
    assert wilson_interval(0, 0) == (0.0, 0.0)


def step(index: int, command: str, observation: str | None, *, loop: bool = False) -> Step:
    action = Action(thought="t", command=command, input="x")
    return Step(index=index, raw_text="r", action=action, observation=observation, loop="repeat" if loop else None)


def trace(*steps: Step, mode: Mode = Mode.CONSTRAINED) -> Trace:
    return Trace(question="q", model="m", mode=mode, steps=list(steps), answer="a", stop_reason=StopReason.ANSWER)


def test_a_title_is_reached_when_wikipedia_opens_its_page() -> None:
    run = trace(
        step(0, "wikipedia", "Ed Wood (film): Ed Wood is a 1994 film."),
        step(1, "wikipedia", "Scott Derrickson: Scott Derrickson is a director."),
    )
    # "Ed Wood (film)" is another page than "Ed Wood": opening it reaches no gold title of that name
    assert titles_reached(run, ["Ed Wood", "Scott Derrickson"]) == {"Scott Derrickson"}
    assert titles_reached(run, ["Ed Wood (film)", "Ed Wood"]) == {"Ed Wood (film)"}


def test_misses_repeats_and_lists_of_titles_reach_nothing() -> None:
    run = trace(
        step(0, "wikipedia", "No page titled 'Ed'. Similar: Ed Wood; Ed Wood (film)."),
        step(1, "lookup", "(Result 1/1) Ed Wood was a director."),  # no gold page open
        step(2, "wikipedia", "'Wood' is ambiguous; it may refer to: Ed Wood; Wood."),
        step(3, "wikipedia", "Ed Wood: a director.", loop=True),  # a repeat is answered, not run
        Step(index=4, raw_text="bad", error="invalid", observation="Ed Wood: not a tool's output"),
    )
    assert titles_reached(run, ["Ed Wood"]) == set()


def test_a_lookup_reads_the_gold_page_open_at_the_time() -> None:
    opened = step(0, "wikipedia", "Ed Wood: Ed Wood was an American filmmaker.")
    read = step(1, "lookup", "(Result 1/2) He directed Plan 9.")
    assert titles_reached(trace(opened, read), ["Ed Wood"]) == {"Ed Wood"}
    other = step(1, "wikipedia", "Tyler Bates: a composer.")
    assert titles_reached(trace(other, read.model_copy(update={"index": 2})), ["Ed Wood"]) == set()


def test_passages_a_closed_book_pass_read_reach_their_titles() -> None:
    read = trace(mode=Mode.CLOSED_BOOK).model_copy(update={"passages": ["Ed Wood: a director.", "Wood: a material."]})
    assert titles_reached(read, ["Ed Wood", "Scott Derrickson"]) == {"Ed Wood"}
    s = summarise("hp", "m", "closed-book", [record(1, read, True, ["Ed Wood", "Scott Derrickson"])])
    assert s.gold_titles_reached == pytest.approx(1 / 2) and s.questions_all_gold_reached == 0.0
    unread = summarise("hp", "m", "closed-book", [record(1, trace(mode=Mode.CLOSED_BOOK), True, ["Ed Wood"])])
    assert unread.gold_titles_reached is None  # nothing read: nothing measured


def hotpot_file(tmp_path: Path, facts: object) -> Path:
    path = tmp_path / "hp.json"
    item = {"_id": "h1", "question": "Who?", "answer": "Ed", "supporting_facts": facts,
            "context": [["Ed  Wood", ["Ed Wood was a director."]]]}  # fmt: skip
    path.write_text(json.dumps([item]), encoding="utf-8")
    return path


def test_hotpotqa_questions_carry_their_gold_titles_normalised_like_the_knowledge_base(tmp_path: Path) -> None:
    path = hotpot_file(tmp_path, [["Ed  Wood ", 0], ["Ed  Wood", 1], ["Scott Derrickson", 0]])
    (question,) = load_dataset(path).questions
    assert question.supporting_titles == ("Ed Wood", "Scott Derrickson")


@pytest.mark.parametrize("facts", ["Ed Wood", [["Ed Wood"]], [[1, 0]], [["", 0]]])
def test_malformed_supporting_facts_are_a_dataset_error_naming_the_item(tmp_path: Path, facts: object) -> None:
    with pytest.raises(DatasetError, match=r"item 0: 'supporting_facts' must be a list"):
        load_dataset(hotpot_file(tmp_path, facts))


def record(n: int, run: Trace, correct: bool, gold: list[str]) -> Record:
    score = Score(correct=correct, f1=float(correct))
    return Record(
        id=str(n), question="q", gold="g", model="m", mode=run.mode, score=score, trace=run, supporting_titles=gold
    )


def test_summaries_give_the_retrieval_rate_and_the_interval() -> None:
    both = trace(step(0, "wikipedia", "A: a."), step(1, "wikipedia", "B: b."))
    one = trace(step(0, "wikipedia", "A: a."))
    none = trace(step(0, "wikipedia", "C: c."))
    records = [record(1, both, True, ["A", "B"]), record(2, one, False, ["A", "B"]), record(3, none, False, ["A"])]
    s = summarise("hp", "m", "constrained", records, answer_type="short")
    assert s.gold_titles_reached == pytest.approx(3 / 5) and s.questions_all_gold_reached == pytest.approx(1 / 3)
    assert s.correct == 1 and (s.accuracy_low, s.accuracy_high) == pytest.approx(wilson_interval(1, 3))
    assert s.answer_type == "short" and s.runs == 3
    # arithmetic sets have no gold titles: nothing is measured, and the report shows "-"
    plain = summarise("arith", "m", "constrained", [record(1, one, True, [])])
    assert plain.gold_titles_reached is None and plain.questions_all_gold_reached is None
    assert "| hp | m | constrained | short | 0 / 0 / 0 / 0 / 3 | 60.0% | 33.3% |" in answers_table([s])
    assert "| arith | m | constrained | text | 0 / 0 / 0 / 0 / 1 | - | - |" in answers_table([plain])


def test_every_accuracy_in_the_reports_carries_its_interval(tmp_path: Path) -> None:
    right, wrong = trace(), trace()
    records = [record(n, right if n < 11 else wrong, n < 11, []) for n in range(30)]
    constrained = summarise("arith", "m", "constrained", records)
    free = summarise("arith", "m", "free", records[:10])
    other = summarise("arith", "m2", "free", records[:1])
    assert accuracy_cell(constrained) == "36.7% [21.9, 54.5]"
    table = modes_table([constrained, free, other])
    assert table.splitlines()[0] == "| dataset | model | constrained | free |"
    assert "| arith | m | 36.7% [21.9, 54.5] (n=30) | 100.0% [72.2, 100.0] (n=10) |" in table
    assert "| arith | m2 | - | 100.0% [20.7, 100.0] (n=1) |" in table
    write_reports([constrained, free], tmp_path)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert table.splitlines()[2] in report and "| arith | m | constrained | 30 | 36.7% [21.9, 54.5] |" in report
    (saved, _) = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert saved["correct"] == 11 and saved["accuracy_low"] == pytest.approx(0.2187, abs=1e-4)
    assert saved["accuracy_high"] == pytest.approx(0.5449, abs=1e-4)
