"""The eval runner: records, resume after a kill, settings guard, metrics, reports, and the real
`tether eval` on SmolLM2. Unit tests drive the scripted fake model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakeservers import Reply, Request
from test_cli import run

from tether import ScriptedBackend
from tether.engine.backends.base import Backend, ForcedText, Sampling, StreamStats
from tether.engine.protocol import Mode, Step, StopReason, Trace
from tether.errors import ConfigError
from tether.evaluation import EvalConfig, Record, Score, run_eval, summarise
from tether.evaluation.report import cost_table, markdown_table, write_reports
from tether.evaluation.runner import pending_count, read_records

QUESTIONS = [("What is 2 + 3?", 5), ("What is 4 * 5?", 20), ("What is 9 - 1?", 8)]


def svamp_file(tmp_path: Path) -> Path:
    path = tmp_path / "arith.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS), encoding="utf-8")
    return path


def script_for(expression: str, answer: str) -> list[str]:
    return [f"Thought: compute\ncalculate: {expression}\n", f"Thought: done\nanswer: {answer}\n"]


class KilledAfter(BaseException):
    """Stands in for the process being killed mid-run (a BaseException: no question's guard keeps it)."""


class KillableBackend(ScriptedBackend):
    """The scripted fake model, killed (KilledAfter) once it has streamed `kill_after` steps."""

    def __init__(self, *outputs: str, kill_after: int | None) -> None:
        super().__init__(*outputs)
        self.kill_after = kill_after

    def stream(
        self,
        prompt: str,
        *,
        grammar: str | None,
        max_tokens: int,
        sampling: Sampling,
        stats: StreamStats,
        forced: ForcedText | None = None,
        deadline: float | None = None,
    ) -> Iterator[str]:
        if self.kill_after is not None:
            if self.kill_after == 0:
                raise KilledAfter
            self.kill_after -= 1
        return super().stream(
            prompt, grammar=grammar, max_tokens=max_tokens, sampling=sampling, stats=stats, forced=forced,
            deadline=deadline,
        )  # fmt: skip


class ScriptedLoader:
    """Hands out the scripted fake backend for every model, and records which models were loaded."""

    def __init__(self, outputs: list[str], kill_after: int | None = None) -> None:
        self.backend = KillableBackend(*outputs, kill_after=kill_after)
        self.loaded: list[str] = []

    def __call__(self, model: str) -> ScriptedBackend:
        self.loaded.append(model)
        return self.backend


def config(tmp_path: Path, **kw: object) -> EvalConfig:
    settings: dict[str, object] = {
        "datasets": (svamp_file(tmp_path),),
        "models": ("fake.gguf",),
        "modes": (Mode.CONSTRAINED,),
        "out": tmp_path / "out",
    }
    settings.update(kw)
    return EvalConfig.model_validate(settings)


def test_records_are_scored_and_summarised(tmp_path: Path) -> None:
    outputs = script_for("2 + 3", "5") + script_for("4 * 5", "21") + script_for("9 - 1", "8")
    loader = ScriptedLoader(outputs)
    (summary,) = run_eval(config(tmp_path), load_backend=loader)
    records = read_records(tmp_path / "out" / "arith" / "fake.constrained.jsonl")
    assert [r.score.correct for r in records.values()] == [True, False, True]
    assert [r.trace.steps[0].observation for r in records.values()] == ["5", "20", "8"]
    assert summary.questions == 3 and summary.accuracy == pytest.approx(2 / 3)
    assert summary.valid_step_rate == 1.0 and summary.steps == 6 and summary.mean_steps == 2.0
    assert summary.tool_calls == {"calculate": 3} and summary.stop_reasons["answer"] == 3
    assert loader.loaded == ["fake.gguf"]


def test_a_killed_run_resumes_without_rerunning_or_losing_a_question(tmp_path: Path) -> None:
    outputs = script_for("2 + 3", "5") + script_for("4 * 5", "20") + script_for("9 - 1", "8")
    with pytest.raises(KilledAfter):
        run_eval(config(tmp_path), load_backend=ScriptedLoader([*outputs[:3], "unused"], kill_after=3))
    results = tmp_path / "out" / "arith" / "fake.constrained.jsonl"
    assert len(read_records(results)) == 1
    with results.open("a", encoding="utf-8") as f:
        f.write('{"id": "line-2", "question": "What is 4 ')  # the line being written when the kill came
    assert pending_count(config(tmp_path)) == 2
    loader = ScriptedLoader(outputs[2:])  # exactly what the two missing questions need
    (summary,) = run_eval(config(tmp_path), load_backend=loader)
    records = read_records(results)
    assert list(records) == ["line-1", "line-2", "line-3"] and summary.questions == 3 and summary.accuracy == 1.0
    assert len(results.read_text(encoding="utf-8").splitlines()) == 3
    assert pending_count(config(tmp_path)) == 0
    again = ScriptedLoader([])
    run_eval(config(tmp_path), load_backend=again)  # nothing left: the model is not even loaded
    assert again.loaded == []


def test_a_record_killed_before_its_newline_is_kept_and_the_line_ended(tmp_path: Path) -> None:
    outputs = script_for("2 + 3", "5") + script_for("4 * 5", "20") + script_for("9 - 1", "8")
    run_eval(config(tmp_path, limit=1), load_backend=ScriptedLoader(outputs[:2]))
    results = tmp_path / "out" / "arith" / "fake.constrained.jsonl"
    results.write_bytes(results.read_bytes().rstrip(b"\n"))  # the record was written, its newline was not
    run_eval(config(tmp_path), load_backend=ScriptedLoader(outputs[2:]))
    assert list(read_records(results)) == ["line-1", "line-2", "line-3"]
    assert len(results.read_text(encoding="utf-8").splitlines()) == 3


def test_records_do_not_depend_on_the_order_questions_run_in(tmp_path: Path) -> None:
    from tether import Agent
    from tether.evaluation import load_dataset
    from tether.evaluation.runner import evaluate_question
    from tether.tools import resolve_tools

    questions = load_dataset(svamp_file(tmp_path)).questions
    scripts = {
        "line-1": script_for("2 + 3", "5"),
        "line-2": script_for("4 * 5", "20"),
        "line-3": script_for("9 - 1", "8"),
    }

    def records(order: list[int]) -> dict[str, Record]:
        backend = ScriptedBackend(*[text for i in order for text in scripts[questions[i].id]])
        agent = Agent(backend, resolve_tools(["calculate"]))
        made = [evaluate_question(agent, questions[i], "fake", Mode.CONSTRAINED) for i in order]
        return {r.id: r for r in made}

    forward, backward = records([0, 1, 2]), records([2, 1, 0])
    assert forward.keys() == backward.keys()
    for key in forward:
        a, b = forward[key], backward[key]
        assert (a.score, a.trace.answer, a.gold) == (b.score, b.trace.answer, b.gold)
        assert [s.raw_text for s in a.trace.steps] == [s.raw_text for s in b.trace.steps]


def test_an_unknown_model_fails_before_any_question_runs(tmp_path: Path) -> None:
    from tether.errors import ModelFileError

    with pytest.raises(ModelFileError, match="unknown model 'no-such-model'"):
        run_eval(config(tmp_path, models=("no-such-model",)))
    assert not (tmp_path / "out" / "arith").exists()


def test_two_models_with_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two models share the name"):
        run_eval(config(tmp_path, models=("a/m.gguf", "b/m.gguf")), load_backend=ScriptedLoader([]))


def test_a_malformed_dataset_line_is_named_by_the_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a?", "answer": 1}\n{"question": "b?", "answer": \n', encoding="utf-8")
    code, _, err = run(capsys, "eval", str(bad), "--out", str(tmp_path / "out"))
    assert code == 1 and f"{bad}, line 2: not JSON" in err


def test_a_corrupt_line_inside_the_results_is_an_error(tmp_path: Path) -> None:
    results = tmp_path / "out" / "arith" / "fake.constrained.jsonl"
    results.parent.mkdir(parents=True)
    results.write_text("garbage\n{}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"fake.constrained.jsonl, line 1: not a result record"):
        run_eval(config(tmp_path), load_backend=ScriptedLoader([]))


def test_results_of_other_settings_are_never_mixed(tmp_path: Path) -> None:
    run_eval(config(tmp_path, limit=1), load_backend=ScriptedLoader(script_for("2 + 3", "5")))
    with pytest.raises(ConfigError, match=r"other settings \(max_steps 6 -> 4\)"):
        run_eval(config(tmp_path, limit=1, max_steps=4), load_backend=ScriptedLoader([]))


def _record(n: int, steps: list[Step], answer: str | None, stop: StopReason, correct: bool, elapsed: float) -> Record:
    trace = Trace(
        question="q", model="m", mode=Mode.FREE, steps=steps, answer=answer, stop_reason=stop, elapsed_s=elapsed
    )
    return Record(
        id=str(n), question="q", gold="g", model="m", mode=Mode.FREE, score=Score(correct=correct, f1=0.5), trace=trace
    )


def test_metrics_over_known_traces() -> None:
    from tether.engine.protocol import Action

    def step(i: int, command: str | None, decode: float, sampled: int) -> Step:
        action = Action(thought="t", command=command, input="x") if command else None
        made = Step(index=i, raw_text="r", action=action)
        made.timing.decode_s, made.tokens.sampled, made.tokens.forced = decode, sampled, 2
        return made

    records = [
        _record(1, [step(0, "search", 1.0, 8), step(1, "answer", 1.0, 8)], "a", StopReason.ANSWER, True, 2.0),
        _record(
            2,
            [step(0, None, 2.0, 18), step(1, "search", 1.0, 8), step(2, "calc", 1.0, 8)],
            None,
            StopReason.STEP_LIMIT,
            False,
            4.0,
        ),
    ]
    s = summarise("d", "m", "free", records)
    assert s.interrupted_steps == 0 and s.repeated_actions == 0
    assert s.accuracy == 0.5 and s.f1 == 0.5 and s.steps == 5 and s.valid_step_rate == 0.8 and s.mean_steps == 2.5
    assert s.tool_calls == {"search": 2, "calc": 1} and s.stop_reasons["step_limit"] == 1
    assert s.question_latency_p50_s == 3.0 and s.question_latency_p95_s == pytest.approx(3.9)
    assert s.tokens_sampled == 50 and s.tokens_forced == 10 and s.tokens_per_second == pytest.approx(60 / 6)


def test_a_step_cut_by_the_time_limit_is_not_judged_but_is_counted() -> None:
    from tether.engine.protocol import Action

    answered = Step(index=0, raw_text="r", action=Action(thought="t", command="calculate", input="1"), observation="1")
    repeated = answered.model_copy(update={"index": 1, "loop": "repeat", "observation": "you already ran this"})
    invalid = Step(index=2, raw_text="Thought: x\n", error="bad", observation="error: bad")
    cut = Step(index=3, raw_text="Thought: hal", error="the run's time limit was reached")
    cut.tokens.sampled = 4
    s = summarise(
        "d", "m", "free", [_record(1, [answered, repeated, invalid, cut], None, StopReason.TIME_LIMIT, False, 9)]
    )
    assert s.steps == 4 and s.interrupted_steps == 1 and s.valid_step_rate == pytest.approx(2 / 3)
    assert s.tool_calls == {"calculate": 1} and s.repeated_actions == 1 and s.tokens_sampled == 4
    # an invalid last step that the model finished is judged even when the time ran out after it
    s = summarise("d", "m", "free", [_record(1, [answered, invalid], None, StopReason.TIME_LIMIT, False, 9)])
    assert s.interrupted_steps == 0 and s.valid_step_rate == 0.5
    # a prompt that outgrew the context: the empty step is not judged, the run counts under "other"
    overflow = Step(index=1, raw_text="", error="context full")
    s = summarise("d", "m", "free", [_record(1, [answered, overflow], None, StopReason.CONTEXT_LIMIT, False, 9)])
    assert s.interrupted_steps == 1 and s.valid_step_rate == 1.0 and s.stop_reasons["context_limit"] == 1
    assert "| 0 / 0 / 0 / 0 / 1 |" in markdown_table([s])


def test_reports_hold_the_table_and_a_png(tmp_path: Path) -> None:
    records = [_record(1, [], "a", StopReason.ANSWER, True, 1.0)]
    summaries = [summarise("d", "m", "free", records), summarise("d", "m", "constrained", records)]
    write_reports(summaries, tmp_path, command="tether eval d.json", elapsed_s=90)
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "`tether eval d.json` (this invocation: 1.5 min" in report and markdown_table(summaries) in report
    assert cost_table(summaries) in report and "| d | m | free | none | 0 |" in report
    assert [s["mode"] for s in json.loads((tmp_path / "summary.json").read_text())] == ["free", "constrained"]


@pytest.mark.model
def test_tether_eval_end_to_end_on_smollm2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hotpot = tmp_path / "hotpot.json"
    items = [
        {"_id": f"h{n}", "question": q, "answer": a, "context": [[t, [s]] for t, s in ctx]}
        for n, (q, a, ctx) in enumerate(
            [
                (
                    "What is the capital of Norway?",
                    "Oslo",
                    [("Oslo", "Oslo is the capital of Norway."), ("Bergen", "Bergen is a city in Norway.")],
                ),
                (
                    "Who wrote Hamlet?",
                    "William Shakespeare",
                    [("Hamlet", "Hamlet is a tragedy by William Shakespeare.")],
                ),
                ("What colour is the sky?", "blue", [("Sky", "The sky is blue on a clear day.")]),
            ]
        )
    ]
    hotpot.write_text(json.dumps(items), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["eval", str(svamp_file(tmp_path)), str(hotpot), "--out", str(out), "--max-steps", "3"]
    code, stdout, _ = run(capsys, *argv, "--max-step-tokens", "96")
    assert code == 0 and "| arith | smollm2-135m | constrained | 3 |" in stdout
    written = json.loads((out / "summary.json").read_text())
    summaries = {(s["dataset"], s["mode"]): s for s in written}
    assert set(summaries) == {(d, m) for d in ("arith", "hotpot") for m in ("constrained", "free")}
    assert all(s["questions"] == 3 for s in summaries.values())
    assert summaries[("arith", "constrained")]["valid_step_rate"] == 1.0
    assert summaries[("hotpot", "constrained")]["valid_step_rate"] == 1.0
    assert summaries[("hotpot", "constrained")]["tool_calls"].keys() <= {"wikipedia", "lookup"}
    assert summaries[("arith", "constrained")]["tool_calls"].keys() <= {"calculate"}
    for (dataset, mode), summary in summaries.items():  # the summary is exactly what the records say
        lines = (out / dataset / f"smollm2-135m.{mode}.jsonl").read_text().splitlines()
        records = [Record.model_validate_json(line) for line in lines]
        assert sorted(r.id for r in records) == (
            ["line-1", "line-2", "line-3"] if dataset == "arith" else ["h0", "h1", "h2"]
        )
        assert all(r.trace.mode.value == mode and r.trace.stop_reason is not None for r in records)
        answer_type = "number" if dataset == "arith" else "short"
        assert summarise(dataset, "smollm2-135m", mode, records, answer_type=answer_type).model_dump() == summary
    import matplotlib.image

    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(out / "chart.png").ndim == 3  # decodes as an image, not just a header
    assert (out / "hotpot" / "kb.sqlite").is_file() and "| hotpot | smollm2-135m | free | 3 |" in (
        out / "report.md"
    ).read_text()
    # run again: everything is already there, so nothing is re-run and the summary is the same
    sizes = {p: p.stat().st_size for p in out.rglob("*.jsonl")}
    code, _, _ = run(capsys, *argv, "--max-step-tokens", "96")
    assert code == 0 and {p: p.stat().st_size for p in out.rglob("*.jsonl")} == sizes
    assert json.loads((out / "summary.json").read_text()) == written


# --- hostile inputs and eval integrity (issue 14; report rows E6, E7, E10-E14) --------------------------------


def eval_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """`tether eval ...` that must fail with one line and exit code 1."""
    code, _, err = run(capsys, "eval", *argv)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_e6_out_an_existing_file_or_an_unmakeable_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = str(svamp_file(tmp_path))
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep", encoding="utf-8")
    assert "is a file, not a folder" in eval_error(capsys, data, "--out", str(a_file))
    assert "cannot make the results folder" in eval_error(capsys, data, "--out", str(a_file / "sub"))
    assert a_file.read_text(encoding="utf-8") == "keep"
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        run_eval(config(tmp_path, out=a_file), load_backend=ScriptedLoader([]))


@pytest.mark.parametrize("left", ["", "   \n", '{"format": null, "max_st'])
def test_e7_a_settings_file_a_kill_left_broken_is_rewritten(tmp_path: Path, left: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "settings.json").write_text(left, encoding="utf-8")
    (summary,) = run_eval(config(tmp_path, limit=1), load_backend=ScriptedLoader(script_for("2 + 3", "5")))
    assert summary.questions == 1 and summary.accuracy == 1.0
    assert json.loads((out / "settings.json").read_text(encoding="utf-8"))["max_steps"] == 6
    assert not [p.name for p in out.iterdir() if p.suffix == ".tmp"]


def test_e7_a_broken_settings_file_beside_records_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_eval(config(tmp_path, limit=1), load_backend=ScriptedLoader(script_for("2 + 3", "5")))
    settings = tmp_path / "out" / "settings.json"
    settings.write_text('{"max_steps": ', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"settings.json: unreadable, and .* holds results; use another --out"):
        run_eval(config(tmp_path), load_backend=ScriptedLoader([]))
    err = eval_error(capsys, str(svamp_file(tmp_path)), "--out", str(tmp_path / "out"), "--model", "fake.gguf")
    assert "unreadable" in err


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_s18_time_limit_nan_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str) -> None:
    err = eval_error(capsys, str(svamp_file(tmp_path)), "--time-limit", value, "--out", str(tmp_path / "o"))
    assert "the time limit must be a finite number of seconds" in err
    with pytest.raises(ConfigError, match="finite"):
        config(tmp_path, time_limit_s=float(value))


def test_e10_a_second_eval_on_one_out_fails_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import fcntl
    import os

    out = tmp_path / "out"
    out.mkdir()
    held = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # what a running eval holds
    try:
        loader = ScriptedLoader(script_for("2 + 3", "5"))
        with pytest.raises(ConfigError, match=f"--out {out}: another tether eval is writing to this folder"):
            run_eval(config(tmp_path, limit=1), load_backend=loader)
        assert loader.loaded == [] and not (out / "arith").exists()
        assert "another tether eval" in eval_error(capsys, str(svamp_file(tmp_path)), "--out", str(out))
    finally:
        os.close(held)
    (summary,) = run_eval(config(tmp_path, limit=1), load_backend=ScriptedLoader(script_for("2 + 3", "5")))
    assert summary.questions == 1  # released: the next run goes ahead


def test_e10_two_evals_at_once_run_each_question_once(tmp_path: Path) -> None:
    import threading

    started, release = threading.Event(), threading.Event()

    class SlowBackend(KillableBackend):
        def stream(self, prompt: str, **kw: object) -> Iterator[str]:  # type: ignore[override]
            started.set()
            release.wait(10)
            return super().stream(prompt, **kw)  # type: ignore[arg-type]

    outputs = script_for("2 + 3", "5") + script_for("4 * 5", "20") + script_for("9 - 1", "8")
    first = ScriptedLoader(outputs)
    first.backend = SlowBackend(*outputs, kill_after=None)
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(run_eval(config(tmp_path), load_backend=first)))
    worker.start()
    assert started.wait(10)
    with pytest.raises(ConfigError, match="another tether eval"):
        run_eval(config(tmp_path), load_backend=ScriptedLoader(outputs))
    release.set()
    worker.join(10)
    lines = (tmp_path / "out" / "arith" / "fake.constrained.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(results) == 1 and len(lines) == 3  # every question ran and was written once


@pytest.mark.parametrize("failure", ["backend", "bug"])
def test_e13_an_exception_in_one_question_is_recorded_and_the_eval_goes_on(tmp_path: Path, failure: str) -> None:
    from tether.errors import BackendError

    class FlakyBackend(KillableBackend):
        """Fails the second question: a BackendError raised mid-stream, or a plain bug."""

        def stream(self, prompt: str, **kw: object) -> Iterator[str]:  # type: ignore[override]
            if "4 * 5" not in prompt.rsplit("Question: ", 1)[-1]:
                return super().stream(prompt, **kw)  # type: ignore[arg-type]
            if failure == "bug":
                raise TypeError("'str' object has no attribute 'get'")

            def broken() -> Iterator[str]:
                yield "Thought: "
                raise BackendError("the server's reply is not valid JSON")

            return broken()

    outputs = script_for("2 + 3", "5") + script_for("9 - 1", "8")
    loader = ScriptedLoader([])
    loader.backend = FlakyBackend(*outputs, kill_after=None)
    (summary,) = run_eval(config(tmp_path), load_backend=loader)
    records = read_records(tmp_path / "out" / "arith" / "fake.constrained.jsonl")
    assert list(records) == ["line-1", "line-2", "line-3"] and summary.questions == 3
    failed = records["line-2"].trace
    assert failed.stop_reason is StopReason.BACKEND_ERROR and not records["line-2"].score.correct
    expected = "the server's reply is not valid JSON" if failure == "backend" else "TypeError: 'str' object has"
    assert (failed.steps[-1].error or "").startswith(expected)
    assert records["line-3"].score.correct and summary.stop_reasons["backend_error"] == 1


def test_e13_a_malformed_server_reply_is_a_backend_error_record(tmp_path: Path) -> None:
    from fakeservers import FakeServer

    def malformed_usage(request: Request) -> Reply:
        """The calculator engine, but its reply to the second question has a string for `usage`."""
        reply = calculator(request)
        if "4 * 5" in json.loads(request.body)["prompt"].rsplit("Question: ", 1)[-1]:
            data = json.loads(reply.body)
            return Reply(200, json.dumps({**data, "usage": "usage_str"}).encode())
        return reply

    with FakeServer(malformed_usage) as server:
        (summary,) = run_eval(config(tmp_path), load_backend=server_loader(server.url))
    records = read_records(tmp_path / "out" / "arith" / "fake.constrained.jsonl")
    assert list(records) == ["line-1", "line-2", "line-3"] and summary.questions == 3
    assert records["line-2"].trace.stop_reason is StopReason.BACKEND_ERROR
    assert records["line-2"].trace.steps[-1].error


def server_loader(url: str) -> Callable[[str], Backend]:
    from tether.engine.backends.openai_server import OpenAIServerBackend

    return lambda model: OpenAIServerBackend(url, model=model, timeout_s=5, retries=1, backoff_s=0.01)


def calculator(request: Request) -> Reply:
    """A fake engine: calculate the question's expression, then answer the observation."""
    from fakeservers import json_reply

    asked = json.loads(request.body)["prompt"].rsplit("Question: ", 1)[-1]
    question = asked.split("\n", 1)[0]
    if "\nObservation: " in asked:
        text = f"Thought: done\nanswer: {asked.rsplit('Observation: ', 1)[1].split(chr(10), 1)[0]}\n"
    else:
        text = f"Thought: compute\ncalculate: {question.removeprefix('What is ').removesuffix('?')}\n"
    return json_reply({"choices": [{"text": text, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 5}})  # fmt: skip


def test_e12_outage_records_are_retried_on_resume(tmp_path: Path) -> None:
    from fakeservers import FakeServer
    from fakeservers import Reply as FakeReply

    results = tmp_path / "out" / "arith" / "fake.constrained.jsonl"
    with FakeServer(lambda _: FakeReply(500, b"down")) as down:
        (summary,) = run_eval(config(tmp_path), load_backend=server_loader(down.url))
    assert summary.accuracy == 0 and summary.stop_reasons["backend_error"] == 3
    assert pending_count(config(tmp_path)) == 3  # an outage is not a result
    with FakeServer(calculator) as up:
        (summary,) = run_eval(config(tmp_path), load_backend=server_loader(up.url))
        assert len(up.requests) == 6  # every question asked again: two steps each
    assert summary.questions == 3 and summary.accuracy == 1.0 and not summary.stop_reasons.get("backend_error")
    assert len(results.read_text(encoding="utf-8").splitlines()) == 6  # the old lines stay, superseded
    assert all(r.trace.stop_reason is StopReason.ANSWER for r in read_records(results).values())
    assert pending_count(config(tmp_path)) == 0


def test_e11_concurrency_builds_the_knowledge_base_once_before_the_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import threading

    from fakeservers import FakeServer, json_reply

    import tether.corpus

    hotpot = tmp_path / "hp.json"
    items = [{"_id": f"h{n}", "question": f"Where is city {n}?", "answer": "France",
              "context": [[f"City {n}", [f"City {n} is in France."]], ["Paris", ["Paris is in France."]]]}
             for n in range(6)]  # fmt: skip
    hotpot.write_text(json.dumps(items), encoding="utf-8")
    real, builds = tether.corpus.build_corpus, []

    def counting_build(source: Path, out: Path) -> object:
        builds.append((threading.current_thread() is threading.main_thread(), Path(out).name))
        return real(source, out)

    monkeypatch.setattr(tether.corpus, "build_corpus", counting_build)

    def encyclopedia(request: Request) -> Reply:
        asked = json.loads(request.body)["prompt"].rsplit("Question: ", 1)[-1]
        text = "Thought: done\nanswer: France\n" if "Observation:" in asked else "Thought: look\nwikipedia: Paris\n"
        return json_reply({"choices": [{"text": text, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 5}})  # fmt: skip

    with FakeServer(encyclopedia) as server:
        (summary,) = run_eval(
            config(tmp_path, datasets=(hotpot,), concurrency=4), load_backend=server_loader(server.url)
        )
    assert builds == [(True, "kb.sqlite")]  # once, in the main thread, before any worker
    assert summary.questions == 6 and summary.accuracy == 1.0
    assert sorted(p.name for p in (tmp_path / "out" / "hp").iterdir()) == ["fake.constrained.jsonl", "kb.sqlite"]


def test_e14_a_question_with_a_lone_surrogate_is_recorded(tmp_path: Path) -> None:
    data = tmp_path / "surrogate.jsonl"
    data.write_text('{"question": "What is 2 + 3? \\ud800", "answer": 5}\n', encoding="utf-8")
    loader = ScriptedLoader(script_for("2 + 3", "5"))
    (summary,) = run_eval(config(tmp_path, datasets=(data,)), load_backend=loader)
    (record,) = read_records(tmp_path / "out" / "surrogate" / "fake.constrained.jsonl").values()
    assert record.question == "What is 2 + 3? \ufffd" and summary.accuracy == 1.0
    write_reports([summary], tmp_path / "out", command="tether eval \udcff.jsonl")
    assert "tether eval \ufffd.jsonl" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")


def test_e14_surrogates_from_the_model_never_stop_a_record_being_saved(tmp_path: Path) -> None:
    from tether import Agent
    from tether.evaluation import load_dataset
    from tether.evaluation.runner import evaluate_question
    from tether.tools import resolve_tools

    (question,) = load_dataset(svamp_file(tmp_path)).questions[:1]
    agent = Agent(ScriptedBackend("Thought: a \ud800 thought\ncalculate: 2 + 3\n", "Thought: ok\nanswer: 5\n"),
                  resolve_tools(["calculate"]))  # fmt: skip
    record = evaluate_question(agent, question, "fake", Mode.CONSTRAINED)
    assert "\ufffd" in record.model_dump_json() and record.score.correct
