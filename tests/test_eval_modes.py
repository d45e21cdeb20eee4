"""`tether eval`'s modes and options from issue 10: closed-book beside constrained and free (`all`),
the fallback and `--no-fallback`, self-consistency (`--vote`), the answer type per dataset, and
`--kb`. Unit tests drive the scripted fake model; one end-to-end run uses the real SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import run
from test_eval_run import ScriptedLoader, config, script_for, svamp_file

from tether.corpus import build_corpus
from tether.engine.closed_book import closed_book_grammar
from tether.engine.protocol import Mode, StopReason
from tether.errors import ConfigError
from tether.evaluation import Record, load_dataset, run_eval, summarise
from tether.evaluation.report import modes_table, write_reports
from tether.evaluation.runner import answer_type, pending_count, read_records

ALL = (Mode.CONSTRAINED, Mode.FREE, Mode.CLOSED_BOOK)


def records_of(tmp_path: Path, dataset: str, mode: Mode, model: str = "fake") -> dict[str, Record]:
    return read_records(tmp_path / "out" / dataset / f"{model}.{mode.value}.jsonl")


def test_mode_all_answers_each_question_three_ways_and_reports_them_side_by_side(tmp_path: Path) -> None:
    outputs = [*script_for("2 + 3", "5"), *script_for("2 + 3", "6"), "Two and three make five.\nanswer: 5\n"]
    loader = ScriptedLoader(outputs)
    summaries = run_eval(config(tmp_path, modes=ALL, limit=1), load_backend=loader)
    assert [(s.mode, s.accuracy) for s in summaries] == [("constrained", 1.0), ("free", 0.0), ("closed-book", 1.0)]
    (closed,) = records_of(tmp_path, "arith", Mode.CLOSED_BOOK).values()
    assert closed.trace.answer == "5" and closed.trace.answer_source is not None
    assert [s.answer_sources for s in summaries] == [{"agent": 1}, {"agent": 1}, {"closed_book": 1}]
    closed_prompt = loader.backend.prompts[-1]
    assert "calculate" not in closed_prompt and "Two and three" not in closed_prompt  # no tools offered
    assert loader.backend.grammars[-1] == closed_book_grammar("number").gbnf  # the typed answer
    assert loader.backend.grammars[2:4] == [None, None]  # free mode: no grammar
    write_reports(summaries, tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "| dataset | model | constrained | free | closed-book |" in report
    assert "| arith | fake | 100.0% [20.7, 100.0] (n=1) | 0.0% [0.0, 79.3] (n=1) | 100.0% [20.7, 100.0] (n=1) |" in (
        modes_table(summaries)
    )


def test_the_fallback_answers_a_run_at_the_step_limit_and_no_fallback_forces_it(tmp_path: Path) -> None:
    calc, last = script_for("2 + 3", "5")
    on = run_eval(
        config(tmp_path, limit=1, max_steps=2, out=tmp_path / "on"),
        load_backend=ScriptedLoader([calc, "Three more than two.\nanswer: 5\n"]),
    )
    off = run_eval(
        config(tmp_path, limit=1, max_steps=2, out=tmp_path / "off", fallback=False),
        load_backend=ScriptedLoader([calc, last]),
    )
    assert on[0].answer_sources == {"fallback": 1} and on[0].accuracy == 1.0
    assert off[0].answer_sources == {"forced": 1} and off[0].accuracy == 1.0
    assert on[0].stop_reasons["step_limit"] == off[0].stop_reasons["step_limit"] == 1
    assert json.loads((tmp_path / "off" / "settings.json").read_text())["fallback"] is False
    with pytest.raises(ConfigError, match=r"other settings \(fallback False -> True\)"):
        run_eval(config(tmp_path, max_steps=2, out=tmp_path / "off"), load_backend=ScriptedLoader([]))


def test_a_vote_records_the_winning_run_the_votes_and_what_all_runs_cost(tmp_path: Path) -> None:
    outputs = script_for("2 + 3", "6") + script_for("2 + 3", "5.0") + script_for("2+3", "5")
    (summary,) = run_eval(config(tmp_path, limit=1, vote=3, temperature=0.5), load_backend=ScriptedLoader(outputs))
    (record,) = records_of(tmp_path, "arith", Mode.CONSTRAINED).values()
    assert record.votes is not None and sorted(record.votes.values()) == [1, 2]
    assert record.score.correct and record.trace.answer == "5.0"  # the earliest run of the winning answer
    assert record.cost is not None and record.cost.runs == 3
    assert record.cost.tokens_sampled == sum(len(text) for text in outputs)  # every run's tokens, not one
    assert summary.runs == 3 and summary.tokens_sampled == record.cost.tokens_sampled
    saved = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert (saved["vote"], saved["temperature"]) == (3, 0.5)


def test_reasoning_first_records_the_deciding_run_and_the_passes_votes(tmp_path: Path) -> None:
    agree = ["Two and three.\nanswer: 5\n", "answer: 5\n", "answer: 6\n"]
    (summary,) = run_eval(config(tmp_path, limit=1, reason_first=3), load_backend=ScriptedLoader(agree))
    (record,) = records_of(tmp_path, "arith", Mode.CONSTRAINED).values()
    assert record.score.correct and record.votes == {"5": 2, "6": 1}
    assert record.trace.answer_source is not None and record.trace.answer_source.value == "closed_book"
    assert record.cost is not None and record.cost.runs == 3 and summary.answer_sources == {"closed_book": 1}

    split = ["answer: 4\n", "answer: 6\n", "answer: 7\n", *script_for("2 + 3", "5")]
    out = tmp_path / "split"
    (summary,) = run_eval(config(tmp_path, limit=1, reason_first=3, out=out), load_backend=ScriptedLoader(split))
    (record,) = read_records(out / "arith" / "fake.constrained.jsonl").values()
    assert record.score.correct and record.trace.answer_source is not None
    assert record.trace.answer_source.value == "agent" and len(record.trace.steps) == 2  # the agent's run
    assert record.cost is not None and record.cost.runs == 4
    assert json.loads((out / "settings.json").read_text())["reason_first"] == 3
    with pytest.raises(ConfigError, match="two ways to vote"):
        run_eval(config(tmp_path, reason_first=3, vote=3, out=tmp_path / "both"), load_backend=ScriptedLoader([]))


def test_a_vote_with_a_server_failure_is_asked_again_on_resume(tmp_path: Path) -> None:
    from tether.engine.backends.base import Sampling, StreamStats
    from tether.errors import BackendError

    loader = ScriptedLoader(script_for("2 + 3", "5") + script_for("2 + 3", "5"))
    real = loader.backend.stream

    def stream(prompt: str, *, sampling: Sampling, stats: StreamStats, **kw: object):  # type: ignore[no-untyped-def]
        if sampling.seed == 2:
            raise BackendError("the server is down")
        return real(prompt, sampling=sampling, stats=stats, **kw)  # type: ignore[arg-type]

    loader.backend.stream = stream  # type: ignore[method-assign]
    run_eval(config(tmp_path, limit=1, vote=3), load_backend=loader)
    (record,) = records_of(tmp_path, "arith", Mode.CONSTRAINED).values()
    assert record.trace.stop_reason is StopReason.BACKEND_ERROR and not record.score.correct
    assert pending_count(config(tmp_path, limit=1, vote=3)) == 1


def dataset_file(tmp_path: Path, name: str, lines: list[dict[str, object]]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_answer_type_follows_the_dataset_and_is_recorded(tmp_path: Path) -> None:
    gsm8k = dataset_file(tmp_path, "gsm.jsonl", [{"question": "q", "answer": "work\n#### 12"}])
    words = dataset_file(
        tmp_path, "words.jsonl", [{"question": "q", "answer": "5"}, {"question": "r", "answer": "red"}]
    )
    hotpot = hotpot_file(tmp_path)
    types = [answer_type(load_dataset(p)) for p in (gsm8k, svamp_file(tmp_path), words, hotpot)]
    assert types == ["number", "number", "text", "short"]
    (summary,) = run_eval(config(tmp_path, limit=1), load_backend=ScriptedLoader(script_for("2 + 3", "5")))
    assert summary.answer_type == "number"
    saved = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert saved["answer_types"] == {"gsm8k": "number", "qa (numeric answers)": "number", "hotpotqa": "short"}


def hotpot_file(tmp_path: Path) -> Path:
    path = tmp_path / "hp.json"
    items = [{"_id": "h1", "question": "Where is the Louvre?", "answer": "Paris",
              "supporting_facts": [["Louvre", 0], ["Paris", 0]],
              "context": [["Louvre", ["The Louvre is a museum in Paris."]],
                          ["Paris", ["Paris is in France."]]]}]  # fmt: skip
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


ENCYCLOPEDIA_RUN = ["Thought: look\nwikipedia: Louvre\n", "Thought: done\nanswer: Paris\n"]


def test_hotpotqa_summaries_say_how_many_gold_titles_the_runs_reached(tmp_path: Path) -> None:
    (summary,) = run_eval(
        config(tmp_path, datasets=(hotpot_file(tmp_path),)), load_backend=ScriptedLoader(ENCYCLOPEDIA_RUN)
    )
    (record,) = records_of(tmp_path, "hp", Mode.CONSTRAINED).values()
    assert record.supporting_titles == ["Louvre", "Paris"]
    assert (record.trace.steps[0].observation or "").startswith("Louvre: The Louvre is a museum")
    assert summary.gold_titles_reached == 0.5 and summary.questions_all_gold_reached == 0.0
    assert summary.answer_type == "short" and summary.accuracy == 1.0


def test_kb_searches_the_given_knowledge_base_and_a_resume_cannot_mix_pools(tmp_path: Path) -> None:
    bigger = tmp_path / "pool.jsonl"
    bigger.write_text(
        json.dumps({"title": "Louvre", "text": "The Louvre is the world's most-visited museum."}) + "\n"
        + json.dumps({"title": "Orsay", "text": "The Musée d'Orsay is a museum in Paris."}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    kb = tmp_path / "pool.sqlite"
    build_corpus(bigger, kb)
    hotpot = hotpot_file(tmp_path)
    run_eval(config(tmp_path, datasets=(hotpot,), kb=kb), load_backend=ScriptedLoader(ENCYCLOPEDIA_RUN))
    (record,) = records_of(tmp_path, "hp", Mode.CONSTRAINED).values()
    assert (record.trace.steps[0].observation or "").startswith("Louvre: The Louvre is the world's most-visited")
    assert not (tmp_path / "out" / "hp" / "kb.sqlite").exists()  # the file's own pool was never built
    assert json.loads((tmp_path / "out" / "settings.json").read_text())["kb"] == str(kb.resolve())
    with pytest.raises(ConfigError, match=r"other settings \(kb "):
        run_eval(config(tmp_path, datasets=(hotpot,)), load_backend=ScriptedLoader([]))
    with pytest.raises(ConfigError, match=r"--kb .*missing.sqlite: no such file"):
        run_eval(config(tmp_path, datasets=(hotpot,), kb=tmp_path / "missing.sqlite", out=tmp_path / "o2"))


def test_read_lets_closed_book_passes_read_the_knowledge_bases_best_paragraphs(tmp_path: Path) -> None:
    hotpot = hotpot_file(tmp_path)
    cfg = config(tmp_path, datasets=(hotpot,), modes=(Mode.CLOSED_BOOK,), read=2)
    (summary,) = run_eval(cfg, load_backend=ScriptedLoader(["The Louvre is in Paris.\nanswer: Paris\n"]))
    (record,) = records_of(tmp_path, "hp", Mode.CLOSED_BOOK).values()
    assert record.score.correct and summary.accuracy == 1.0
    # the file's own pool; the Paris paragraph shares no word with the question
    assert record.trace.passages == ["Louvre: The Louvre is a museum in Paris."]
    assert summary.gold_titles_reached == 0.5  # of Louvre and Paris, what the pass read
    assert json.loads((tmp_path / "out" / "settings.json").read_text())["read"] == 2
    with pytest.raises(ConfigError, match=r"other settings \(read "):
        run_eval(config(tmp_path, datasets=(hotpot,), modes=(Mode.CLOSED_BOOK,)), load_backend=ScriptedLoader([]))
    with pytest.raises(ConfigError, match="--read reads paragraphs of a knowledge base"):
        run_eval(config(tmp_path, read=2, out=tmp_path / "arith"), load_backend=ScriptedLoader([]))


def test_the_cli_passes_modes_and_options_to_the_eval(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tether.evaluation.runner

    seen = []

    def fake_run_eval(config: object, **kw: object) -> list[object]:
        seen.append(config)
        return [summarise("arith", "m", "constrained", [])]

    monkeypatch.setattr(tether.evaluation.runner, "run_eval", fake_run_eval)
    data, out = str(svamp_file(tmp_path)), str(tmp_path / "out")
    (tmp_path / "out").mkdir()  # what run_eval makes
    flags = ["--no-fallback", "--vote", "5", "--temperature", "0.3", "--kb", "k.sqlite", "--act-first", "2"]
    for mode in ("all", "both", "closed-book"):
        code, _, err = run(capsys, "eval", data, "--out", out, "--mode", mode, *flags)
        assert code == 0, err
    assert [c.modes for c in seen] == [ALL, ALL[:2], (Mode.CLOSED_BOOK,)]  # type: ignore[attr-defined]
    first = seen[0]
    assert (first.fallback, first.vote, first.temperature, first.kb) == (False, 5, 0.3, Path("k.sqlite"))  # type: ignore[attr-defined]
    assert first.act_first == 2  # type: ignore[attr-defined]
    code, _, err = run(capsys, "eval", data, "--out", out, "--reason-first", "3")
    assert code == 0 and seen[-1].reason_first == 3  # type: ignore[attr-defined]
    code, _, err = run(capsys, "eval", data, "--out", out, "--read", "5")
    assert code == 0 and seen[-1].read == 5  # type: ignore[attr-defined]
    code, _, err = run(capsys, "eval", data, "--out", out, "--vote", "0")
    assert code == 2 and "--vote" in err


@pytest.mark.model
def test_tether_eval_mode_all_end_to_end_on_smollm2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["eval", str(svamp_file(tmp_path)), "--mode", "all", "--limit", "2", "--max-steps", "3", "--out", str(out)]
    code, stdout, err = run(capsys, *argv, "--max-step-tokens", "96")
    assert code == 0, err
    assert "| arith | smollm2-135m | closed-book | 2 |" in stdout
    written = {s["mode"]: s for s in json.loads((out / "summary.json").read_text())}
    assert set(written) == {"constrained", "free", "closed-book"}
    for mode, summary in written.items():
        records = [
            Record.model_validate_json(line)
            for line in (out / "arith" / f"smollm2-135m.{mode}.jsonl").read_text().splitlines()
        ]
        assert len(records) == 2 and all(r.trace.stop_reason is not None for r in records)
        if mode != "free":  # with the grammar, every run ends with an answer
            assert all(r.trace.answer is not None for r in records)
        assert summarise("arith", "smollm2-135m", mode, records, answer_type="number").model_dump() == summary
        assert summary["accuracy_low"] <= summary["accuracy"] <= summary["accuracy_high"]
    assert written["closed-book"]["answer_sources"] == {"closed_book": 2}
    assert written["constrained"]["valid_step_rate"] == 1.0
    assert "| dataset | model | constrained | free | closed-book |" in (out / "report.md").read_text()
