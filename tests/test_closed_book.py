"""Closed-book mode and the fallback, on the scripted backend: each path, including passes that fail."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Literal

import pytest
from fakebackends import FakeFloodBackend
from fakeservers import FakeServer, completion_reply, json_reply

from tether import (
    ActionParsed,
    Agent,
    AnswerSource,
    BackendError,
    ConfigError,
    Event,
    Limits,
    LlamaCppBackend,
    Mode,
    Restriction,
    RunFinished,
    ScriptedBackend,
    StepFailed,
    StepStarted,
    StopReason,
    TextDelta,
    Tool,
    ToolError,
    Trace,
    tool,
)
from tether.cli import main
from tether.engine.closed_book import (
    EVIDENCE_LINE_CHARS,
    PASSAGE_CHARS,
    PASSAGES_MAX,
    closed_book_grammar,
    evidence_lines,
)
from tether.engine.protocol import Action, Step
from tether.tools import resolve_tools

NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)


def step(command: str, text: str, thought: str = "go") -> str:
    return f"Thought: {thought}\n{command}: {text}\n"


def finished(events: list[Event]) -> Trace:
    last = events[-1]
    assert isinstance(last, RunFinished)
    return last.trace


class FakeFailingBackend(ScriptedBackend):
    """Replays its script, then fails like a server that went away."""

    def stream(self, prompt: str, **kwargs: object) -> Iterator[str]:
        if not self._outputs:
            self.prompts.append(prompt)
            raise BackendError("the server closed the connection")
        return super().stream(prompt, **kwargs)  # type: ignore[arg-type]


# --- closed-book mode ---------------------------------------------------------------------------------------


def test_closed_book_mode_is_one_reasoning_pass_then_the_answer(echo_tools: list[Tool]) -> None:
    backend = ScriptedBackend("Two boxes of 3 pens.\n2 * 3 = 6.\nanswer: 6\n")
    agent = Agent(backend, echo_tools, mode="closed-book")
    events = list(agent.iter_run("How many pens are in two boxes of 3?"))
    trace = finished(events)
    assert trace.mode is Mode.CLOSED_BOOK
    assert trace.answer == "6" and trace.stop_reason is StopReason.ANSWER
    assert trace.answer_source is AnswerSource.CLOSED_BOOK
    (only,) = trace.steps
    assert only.raw_text == "Two boxes of 3 pens.\n2 * 3 = 6.\nanswer: 6\n"
    assert only.action == Action(thought="Two boxes of 3 pens.\n2 * 3 = 6.", command="answer", input="6")
    assert only.restriction is Restriction.ALL and not only.truncated
    assert "echo" not in backend.prompts[0] and "How many pens" in backend.prompts[0]
    assert backend.grammars == [closed_book_grammar("text").gbnf]
    kinds = [type(e) for e in events]
    assert kinds[0] is StepStarted and kinds[-2:] == [ActionParsed, RunFinished]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == only.raw_text


def test_closed_book_stops_reading_at_the_answer_line() -> None:
    backend = ScriptedBackend("answer: Paris\nanswer: Lyon\nmore text\n")
    trace = Agent(backend, [], mode=Mode.CLOSED_BOOK).run("Capital of France?")
    assert trace.answer == "Paris" and trace.steps[0].raw_text == "answer: Paris\n"


def test_closed_book_cut_by_its_budget_answers_from_a_forced_answer_line() -> None:
    reasoning = "First, " + "think more " * 40  # 407 characters: the scripted model spends one a token
    backend = ScriptedBackend(reasoning, " 42\n")
    trace = Agent(backend, [], mode="closed-book", limits=Limits(max_reasoning_tokens=100)).run("q")
    assert trace.stop_reason is StopReason.STEP_LIMIT and trace.answer == "42"
    assert trace.answer_source is AnswerSource.CLOSED_BOOK
    only = trace.steps[0]
    assert only.truncated and only.raw_text == reasoning[:100] + "\nanswer: 42\n"
    assert only.tokens.sampled == 100 + 4
    assert backend.prompts[1] == backend.prompts[0] + reasoning[:100] + "\nanswer:"
    assert backend.grammars[1] == closed_book_grammar("text").continuation_gbnf


def test_an_answer_begun_mid_line_ends_the_pass_at_its_line_end() -> None:
    # Models write "the answer is: answer: 416"; only line starts used to count, so that line ran on.
    text = "8 letters a week, 52 weeks.\nTherefore, the answer is: Answer: 416\n(digits only) answer: 416\n"
    trace = Agent(ScriptedBackend(text), [], mode="closed-book", answer_type="number").run("q")
    assert trace.answer == "416" and trace.stop_reason is StopReason.ANSWER
    (only,) = trace.steps
    assert only.raw_text == "8 letters a week, 52 weeks.\nTherefore, the answer is: Answer: 416\n"
    assert only.action is not None and only.action.thought == "8 letters a week, 52 weeks.\nTherefore, the answer is:"


def test_a_cut_inside_a_mid_line_answer_keeps_the_reasoning_before_it() -> None:
    backend = ScriptedBackend("It is six.\nSo the answer: six hundred and", " 600\n")
    trace = Agent(backend, [], mode="closed-book", limits=Limits(max_reasoning_tokens=30)).run("q")
    assert trace.answer == "600" and trace.steps[0].raw_text == "It is six.\nSo the answer: 600\n"
    assert backend.prompts[1].endswith("It is six.\nSo the answer:")


def test_a_cut_inside_the_answer_line_rewrites_that_line() -> None:
    backend = ScriptedBackend("It is six.\nAnswer: six hundred and", " 600\n")
    trace = Agent(backend, [], mode="closed-book", limits=Limits(max_reasoning_tokens=23)).run("q")
    assert trace.answer == "600" and trace.steps[0].raw_text == "It is six.\nanswer: 600\n"


def test_a_flooding_server_is_cut_at_the_pass_budget() -> None:
    backend = FakeFloodBackend(" 1\n")
    limits = Limits(max_reasoning_tokens=64)
    trace = Agent(backend, [], mode="closed-book", limits=limits).run("q")
    assert trace.answer == "1" and trace.steps[0].truncated
    assert len(trace.steps[0].raw_text) == 8 * 64 + len("\nanswer: 1\n")


def test_closed_book_with_a_failing_backend_ends_with_its_reason() -> None:
    trace = Agent(FakeFailingBackend(), [], mode="closed-book").run("q")
    assert trace.stop_reason is StopReason.BACKEND_ERROR and trace.answer is None
    assert len(trace.steps) == 1 and "closed the connection" in (trace.steps[0].error or "")


def test_closed_book_text_outside_the_grammar_has_no_answer() -> None:
    # The scripted model ignores the grammar, like a server that drops it.
    trace = Agent(ScriptedBackend("answer: 57 stickers\n"), [], mode="closed-book", answer_type="number").run("q")
    assert trace.answer is None and trace.answer_source is None
    assert trace.stop_reason is StopReason.STEP_LIMIT and trace.grammar_ignored
    assert "invalid closed-book answer" in (trace.steps[0].error or "")


# --- the fallback -------------------------------------------------------------------------------------------


def test_fallback_at_the_step_limit_reasons_over_the_observations(echo_tools: list[Tool]) -> None:
    backend = ScriptedBackend(step("echo", "a"), step("other", "xyz"), "echo gave A, other gave zyx.\nanswer: zyx\n")
    trace = Agent(backend, echo_tools, limits=Limits(max_steps=3)).run("q")
    assert trace.stop_reason is StopReason.STEP_LIMIT
    assert trace.answer == "zyx" and trace.answer_source is AnswerSource.FALLBACK
    assert [s.restriction for s in trace.steps][-1] is Restriction.ANSWER_ONLY_LAST_STEP
    assert [s.observation for s in trace.steps[:2]] == ["A", "zyx"]
    prompt = backend.prompts[2]
    assert "1. echo: a -> A\n2. other: xyz -> zyx" in prompt and "Thought:" not in prompt
    assert backend.grammars[2] == closed_book_grammar("text").gbnf


def test_fallback_in_a_loop_keeps_the_loop_as_the_stop_reason() -> None:
    calls: list[str] = []

    @tool(example="x")
    def count(text: str) -> str:
        """Count calls."""
        calls.append(text)
        return f"call {len(calls)}"

    backend = ScriptedBackend(step("count", "x"), step("count", "x"), step("count", "x"), "answer: 1\n")
    trace = Agent(backend, [count]).run("q")
    assert trace.stop_reason is StopReason.LOOP and trace.answer == "1"
    assert trace.answer_source is AnswerSource.FALLBACK
    assert trace.steps[-1].restriction is Restriction.ANSWER_ONLY_LOOP
    assert "1. count: x -> call 1" in backend.prompts[3] and "2. " not in backend.prompts[3]  # repeats left out


def test_fallback_in_free_mode_decodes_without_a_grammar(echo_tools: list[Tool]) -> None:
    backend = ScriptedBackend(step("echo", "a"), "answer: A\n")
    trace = Agent(backend, echo_tools, mode=Mode.FREE, limits=Limits(max_steps=2)).run("q")
    assert trace.answer == "A" and trace.answer_source is AnswerSource.FALLBACK
    assert backend.grammars == [None, None]


def test_fallback_off_keeps_the_forced_answer(echo_tools: list[Tool]) -> None:
    backend = ScriptedBackend(step("echo", "a"), step("answer", "A"))
    trace = Agent(backend, echo_tools, limits=Limits(max_steps=2, fallback=False)).run("q")
    assert trace.answer == "A" and trace.answer_source is AnswerSource.FORCED
    assert trace.stop_reason is StopReason.STEP_LIMIT
    assert '"answer: "' in (backend.grammars[1] or "") and "Thought:" in backend.prompts[1]


def test_an_answer_the_agent_chose_says_so(echo_tools: list[Tool]) -> None:
    trace = Agent(ScriptedBackend(step("echo", "a"), step("answer", "A")), echo_tools).run("q")
    assert trace.answer_source is AnswerSource.AGENT and trace.stop_reason is StopReason.ANSWER


def test_a_fallback_whose_server_fails_keeps_the_steps(echo_tools: list[Tool]) -> None:
    trace = Agent(FakeFailingBackend(step("echo", "a")), echo_tools, limits=Limits(max_steps=2)).run("q")
    assert trace.stop_reason is StopReason.BACKEND_ERROR and trace.answer is None
    assert len(trace.steps) == 2 and trace.steps[0].observation == "A"
    assert trace.steps[1].restriction is Restriction.ANSWER_ONLY_LAST_STEP
    assert "closed the connection" in (trace.steps[1].error or "")


def test_a_fallback_cut_by_its_budget_whose_continuation_fails_keeps_the_steps(echo_tools: list[Tool]) -> None:
    backend = FakeFailingBackend(step("echo", "a"), "x" * 200)
    limits = Limits(max_steps=2, max_reasoning_tokens=50)
    trace = Agent(backend, echo_tools, limits=limits).run("q")
    assert trace.stop_reason is StopReason.BACKEND_ERROR and trace.answer is None
    assert len(trace.steps) == 2 and trace.steps[1].truncated
    assert trace.steps[1].raw_text == "x" * 50 + "\nanswer:"
    assert backend.prompts[-1].endswith("x" * 50 + "\nanswer:")


def test_a_fallback_that_writes_no_valid_answer_ends_at_the_step_limit(echo_tools: list[Tool]) -> None:
    backend = ScriptedBackend(step("echo", "a"), "Answer: 4\nanswer: 5\n")  # an answer line, then another
    events = list(Agent(backend, echo_tools, mode=Mode.FREE, limits=Limits(max_steps=2)).iter_run("q"))
    trace = finished(events)
    assert trace.answer == "4"  # reading stops at the first answer line
    backend = ScriptedBackend(step("echo", "a"), "The answer is five\n", "  \n")
    events = list(Agent(backend, echo_tools, mode=Mode.FREE, limits=Limits(max_steps=2)).iter_run("q"))
    trace = finished(events)
    assert trace.stop_reason is StopReason.STEP_LIMIT and trace.answer is None and len(trace.steps) == 2
    assert any(isinstance(e, StepFailed) for e in events)
    assert not trace.grammar_ignored  # free mode has no grammar to ignore


def test_at_the_time_limit_there_is_no_pass(echo_tools: list[Tool]) -> None:
    backend = ScriptedBackend(step("echo", "a"), step("echo", "b"), "answer: x\n", delay_s=0.01)
    began = time.monotonic()
    trace = Agent(backend, echo_tools, limits=Limits(max_steps=3, time_limit_s=0.1)).run("q")
    assert trace.stop_reason is StopReason.TIME_LIMIT and trace.answer is None
    assert len(backend.prompts) <= 2 and time.monotonic() - began < 5


def test_evidence_lines_are_cleaned_capped_and_skip_errors_and_repeats() -> None:
    def ran(command: str, text: str, observation: str, loop: Literal["repeat"] | None = None) -> Step:
        action = Action(thought="t", command=command, input=text)
        return Step(index=0, raw_text="", action=action, observation=observation, loop=loop)

    steps = [
        ran("search", "a\nb", "line one\x1b[31m\nline two"),
        ran("calculate", "1/0", "error: division by zero"),
        ran("search", "a b", "same", loop="repeat"),
        ran("search", "long", "w " * 1000),
        Step(index=4, raw_text="garbage", error="invalid"),
    ]
    lines = evidence_lines(steps)
    assert lines[0] == "1. search: a b -> line one [31m line two"
    assert len(lines) == 2 and lines[1].startswith("2. search: long -> w w")
    assert len(lines[1]) <= EVIDENCE_LINE_CHARS + 3
    assert len(evidence_lines([steps[0]] * 50)) == 12


def test_limits_and_answer_types_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_reasoning_tokens"):
        Limits(max_reasoning_tokens=0)
    with pytest.raises(ConfigError, match="unknown answer type 'integer'"):
        Agent(ScriptedBackend(), [], answer_type="integer")  # type: ignore[arg-type]


# --- tether ask -----------------------------------------------------------------------------------------


def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["ask", "How much is two and two?", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_closed_book_with_a_typed_answer(capsys: pytest.CaptureFixture[str]) -> None:
    replies = iter(["Two and two.\nanswer: 4 apples\n", "Two and two.\nanswer: 4\n"])
    with FakeServer(lambda _: completion_reply(next(replies))) as server:
        code, out, _ = ask(capsys, "--server", server.url, "--closed-book", "--answer-type", "number", "--json")
        assert code == 0 and json.loads(out)["answer"] is None  # the server ignored the grammar: no answer
        code, out, _ = ask(capsys, "--server", server.url, "--closed-book", "--answer-type", "number", "--json")
    trace = json.loads(out)
    assert code == 0 and trace["mode"] == "closed-book" and trace["answer"] == "4"
    assert trace["answer_source"] == "closed_book"
    sent = json.loads(server.requests[-1].body)
    assert sent["grammar"] == closed_book_grammar("number").gbnf


def test_ask_without_the_fallback_forces_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    script = iter(["Thought: go\ncalculate: 2+2\n", "Thought: done\nanswer: 4\n"])
    with FakeServer(lambda _: completion_reply(next(script))) as server:
        code, out, _ = ask(capsys, "--server", server.url, "--max-steps", "2", "--no-fallback", "--json")
    trace = json.loads(out)
    assert code == 0 and trace["answer"] == "4" and trace["answer_source"] == "forced"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--closed-book", "--no-grammar"], "error: --closed-book and --no-grammar exclude each other"),
        (["--answer-type", "integer"], "error: Invalid value for '--answer-type': 'integer' is not one of"),
    ],
)
def test_ask_refuses_bad_answer_options_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = ask(capsys, *argv)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1 and out == ""


# --- the real model ---------------------------------------------------------------------------------------


@pytest.mark.model
def test_smollm2_closed_book_and_typed_number_runs_end_with_answers_in_their_grammar(smollm2: LlamaCppBackend) -> None:
    limits = Limits(max_steps=3, max_reasoning_tokens=64, time_limit_s=24 * 3600.0)  # bounded by work only
    closed = Agent(smollm2, [], mode="closed-book", limits=limits).run("What is the capital of France?")
    assert closed.stop_reason in (StopReason.ANSWER, StopReason.STEP_LIMIT)
    assert closed.answer and closed.answer_source is AnswerSource.CLOSED_BOOK
    (only,) = closed.steps
    text = only.raw_text if only.raw_text.endswith("\n") else only.raw_text + "\n"
    assert closed_book_grammar("text").parse(text).input == closed.answer

    typed = Agent(smollm2, resolve_tools(["calculate"]), answer_type="number", limits=limits).run("What is 17 * 23?")
    assert typed.stop_reason in (StopReason.ANSWER, StopReason.STEP_LIMIT, StopReason.LOOP)
    assert typed.answer is not None and re.fullmatch(
        r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", typed.answer, re.ASCII
    )
    assert typed.answer_source in (AnswerSource.AGENT, AnswerSource.FALLBACK)
    assert all(step.valid for step in typed.steps if not step.truncated)


# --- open-book passes: a retriever's passages ----------------------------------------------------------------


def test_closed_book_mode_reads_the_retrievers_passages_before_the_question() -> None:
    asked: list[str] = []

    def retriever(question: str) -> list[str]:
        asked.append(question)
        return ["Louvre: The Louvre is a museum\nin Paris.", "  ", "Paris: Paris is in France."]

    backend = ScriptedBackend("The Louvre is in Paris.\nanswer: Paris\n")
    agent = Agent(backend, [], mode="closed-book", answer_type="short", retriever=retriever, prompt_style="raw")
    trace = agent.run("Where is the Louvre?")
    assert trace.answer == "Paris" and asked == ["Where is the Louvre?"]
    assert trace.passages == ["Louvre: The Louvre is a museum in Paris.", "Paris: Paris is in France."]  # as read
    prompt = backend.prompts[0]
    listed = "1. Louvre: The Louvre is a museum in Paris.\n2. Paris: Paris is in France.\n\nQuestion: Where is"
    assert listed in prompt  # each passage one line, blank ones left out, and the question last
    assert prompt.endswith("Question: Where is the Louvre?\n")  # a raw completion goes on from the question


def test_a_huge_retriever_answer_is_kept_capped_in_the_trace_and_the_prompt() -> None:
    flood = ["A: " + "x" * 10_000_000, *(f"P{i}: text" for i in range(100_000))]
    backend = ScriptedBackend("answer: 6\n")
    trace = Agent(backend, [], mode="closed-book", retriever=lambda q: flood).run("q")
    assert len(trace.passages) == PASSAGES_MAX and all(len(p) <= PASSAGE_CHARS for p in trace.passages)
    assert trace.passages[0].endswith("…") and trace.passages[1:] == [f"P{i}: text" for i in range(PASSAGES_MAX - 1)]
    assert len(backend.prompts[0]) < PASSAGES_MAX * (PASSAGE_CHARS + 8) + 2000


def test_the_fallback_reads_the_passages_and_the_runs_notes_then_the_question(echo_tools: list[Tool]) -> None:
    asked: list[str] = []

    def retriever(question: str) -> list[str]:
        asked.append(question)
        return [f"Page: about {question}"]

    backend = ScriptedBackend(step("echo", "a"), "answer: A\n")
    trace = Agent(backend, echo_tools, limits=Limits(max_steps=2), retriever=retriever).run("q?")
    assert trace.answer_source is AnswerSource.FALLBACK and trace.passages == ["Page: about q?"]
    assert asked == ["q?"]  # once a run, for the agent's step and the fallback alike
    prompt = backend.prompts[1]
    assert prompt.index("1. Page: about q?") < prompt.index("1. echo: a -> A") < prompt.index("Question: q?")


def test_every_step_of_the_agent_reads_the_passages_before_the_question(echo_tools: list[Tool]) -> None:
    calls: list[str] = []

    def retriever(question: str) -> list[str]:
        calls.append(question)
        return ["Louvre: The Louvre is a museum in Paris."]

    backend = ScriptedBackend(step("echo", "a"), step("answer", "Paris"))
    agent = Agent(backend, echo_tools, retriever=retriever, prompt_style="raw")
    trace = agent.run("Where is the Louvre?")
    assert trace.answer == "Paris" and trace.answer_source is AnswerSource.AGENT and calls == ["Where is the Louvre?"]
    shown = "Passages found for this question"
    read = "\n1. Louvre: The Louvre is a museum in Paris.\n\nQuestion: Where is the Louvre?\n"
    assert all(shown in p and read in p for p in backend.prompts) and len(backend.prompts) == 2
    assert backend.prompts[1].startswith(backend.prompts[0])  # the same prefix: the cache still serves it
    plain = ScriptedBackend(step("answer", "Paris"))
    Agent(plain, echo_tools, limits=Limits(act_first=0)).run("Where is the Louvre?")
    assert shown not in plain.prompts[0]  # no retriever, no passages


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (ToolError("the index is locked"), "retriever failed: the index is locked"),
        (RuntimeError("boom"), "retriever failed: RuntimeError: boom"),
        ("one string", "retriever failed: TypeError: the retriever returned str, not a list of passages"),
        ([b"bytes"], "retriever failed: TypeError: the retriever returned a bytes among its passages, not text"),
    ],
)
def test_a_failing_retriever_is_recorded_and_the_pass_answers_without_passages(result: object, error: str) -> None:
    def retriever(question: str) -> object:
        if isinstance(result, Exception):
            raise result
        return result

    backend = ScriptedBackend("answer: 6\n")
    trace = Agent(backend, [], mode="closed-book", retriever=retriever).run("q")  # type: ignore[arg-type]
    assert trace.answer == "6" and trace.passages == [] and trace.passages_error == error
    assert "Passages" not in backend.prompts[0]


def test_a_retriever_past_the_time_limit_reads_as_no_passages() -> None:
    def slow(question: str) -> list[str]:
        time.sleep(5)
        return ["late"]

    began = time.monotonic()
    limits = Limits(time_limit_s=0.5)
    agent = Agent(ScriptedBackend("answer: 6\n"), [], mode="closed-book", limits=limits, retriever=slow)
    trace = agent.run("q")
    assert time.monotonic() - began < 4 and trace.passages == []
    assert trace.passages_error is not None and "timed out" in trace.passages_error


def test_a_retrievers_config_error_ends_the_run_and_a_bad_retriever_is_refused() -> None:
    def broken(question: str) -> list[str]:
        raise ConfigError("knowledge base kb.sqlite is missing")

    with pytest.raises(ConfigError, match=r"kb\.sqlite is missing"):
        Agent(ScriptedBackend("answer: 6\n"), [], mode="closed-book", retriever=broken).run("q")
    with pytest.raises(ConfigError, match="retriever must be a function"):
        Agent(ScriptedBackend(), [], retriever=["not", "callable"])  # type: ignore[arg-type]


def test_ask_reason_first_shows_each_run_and_the_vote(capsys: pytest.CaptureFixture[str]) -> None:
    replies = iter(["Two and two.\nanswer: 4\n", "answer: 4\n", "answer: 5\n"])
    with FakeServer(lambda _: completion_reply(next(replies))) as server:
        code, out, _ = ask(capsys, "--server", server.url, "--reason-first", "3", "--answer-type", "number")
    assert code == 0 and len(server.requests) == 3  # the passes agreed: the agent did not run
    assert out.index("══ closed-book pass 1 of 3") < out.index("Two and two.") < out.index("══ closed-book pass 2 of 3")
    assert "══ the agent" not in out and out.rstrip().splitlines()[-2] == "Answer: 4"
    assert out.rstrip().splitlines()[-1].startswith("votes: 4 x2, 5 x1 · run 1 answered · 3 runs")

    script = iter(["answer: 3\n", "answer: 4\n", "Thought: go\ncalculate: 2+2\n", "Thought: done\nanswer: 4\n"])
    with FakeServer(lambda _: completion_reply(next(script))) as server:
        code, out, _ = ask(capsys, "--server", server.url, "--reason-first", "2", "--json")
    voted = json.loads(out)
    assert code == 0 and voted["answer"] == "4" and voted["votes"] == {"3": 1, "4": 1} and voted["winner"] == 2
    assert [t["mode"] for t in voted["traces"]] == ["closed-book", "closed-book", "constrained"]
    code, _, err = ask(capsys, "--reason-first", "3", "--closed-book")
    assert code == 2 and "not with --closed-book" in err


def test_ask_reason_first_with_a_failing_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeServer(lambda _: json_reply({"error": "overloaded"}, status=500)) as server:
        code, _, err = ask(capsys, "--server", server.url, "--reason-first", "2")
    assert code == 1 and "error:" in err
