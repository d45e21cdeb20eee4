"""The agent's own promises under the scripted fake model: a run starts from clean tool state, a
repeat that gains nothing is a loop, an answer cannot run on, and nothing a tool or the model does
(exit the process, flood the output, spell a repeat differently) escapes the run's bounds."""

from __future__ import annotations

import asyncio
import json
import math
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakebackends import FakeFloodBackend

import tether.text
from tether import Agent, ConfigError, Limits, ScriptedBackend, StopReason, Tool, tool
from tether.engine.answer import ANSWER_MAX_WORDS, answer_grammar
from tether.engine.gbnf import llama_cpp_accepts
from tether.engine.grammar import compose_step_grammar
from tether.engine.prompt import sanitise_observation
from tether.errors import ParseError
from tether.tools import resolve_tools

PAGES = [
    {"title": "Zorbania", "text": "Zorbania is a small island nation. Its capital is Velmora. It has 41,000 people."},
    {"title": "Velmora", "text": "Velmora is the capital of Zorbania. It was founded in 1712 by fishermen."},
]


def step(command: str, text: str, thought: str = "go") -> str:
    return f"Thought: {thought}\n{command}: {text}\n"


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    from tether.corpus import build_corpus

    source = tmp_path / "pages.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PAGES), encoding="utf-8")
    build_corpus(source, tmp_path / "kb.sqlite")
    return tmp_path / "kb.sqlite"


# --- 1. state does not leak from one run into the next ---------------------------------------------------


def test_a_reused_agent_starts_each_run_with_no_page_open(kb: Path) -> None:
    backend = ScriptedBackend(
        step("wikipedia", "Velmora"),
        step("lookup", "founded"),
        step("answer", "1712"),
        step("lookup", "founded"),  # second question: nothing is open in this run
        step("answer", "unknown"),
    )
    agent = Agent(backend, resolve_tools([], kb=kb))
    first = agent.run("When was Velmora founded?")
    assert "1712" in (first.steps[1].observation or "")
    second = agent.run("Who founded Zorbania?")
    assert second.steps[0].observation == "error: lookup: no page is open; open one with wikipedia first"


def test_concurrent_runs_of_one_agent_keep_their_own_pages(kb: Path) -> None:
    class FakePerQuestionBackend(ScriptedBackend):
        """Answers each question from its own script, so two runs can interleave on one agent."""

        def __init__(self, scripts: dict[str, list[str]]) -> None:
            super().__init__()
            self.scripts = scripts

        def stream(self, prompt: str, **kwargs: object) -> Iterator[str]:  # type: ignore[override]
            key = next(k for k in self.scripts if k in prompt)
            time.sleep(0.05)  # let the other run take its turn in between
            yield self.scripts[key].pop(0)

    backend = FakePerQuestionBackend(
        {
            "Velmora?": [step("wikipedia", "Velmora"), step("lookup", "founded"), step("answer", "x")],
            "Zorbania?": [step("wikipedia", "Zorbania"), step("lookup", "capital"), step("answer", "y")],
        }
    )
    agent = Agent(backend, resolve_tools([], kb=kb))

    async def both() -> list[object]:
        return list(await asyncio.gather(agent.arun("About Velmora?"), agent.arun("About Zorbania?")))

    velmora, zorbania = asyncio.run(both())
    assert "founded in 1712" in (velmora.steps[1].observation or "")  # type: ignore[attr-defined]
    assert "Its capital is Velmora" in (zorbania.steps[1].observation or "")  # type: ignore[attr-defined]


# --- 2. a repeatable tool's repeat that gains nothing is a loop ------------------------------------------


def test_identical_lookups_with_no_new_result_end_in_a_loop(kb: Path) -> None:
    backend = ScriptedBackend(
        step("wikipedia", "Velmora"),
        *[step("lookup", "other writers")] * 3,
        step("answer", "1712"),
    )
    trace = Agent(backend, resolve_tools([], kb=kb), limits=Limits(max_steps=10)).run("q")
    lookups = [s for s in trace.steps if s.action is not None and s.action.command == "lookup"]
    assert len(lookups) == 3  # the first, then two repeats that gained nothing, then answer-only
    assert [s.loop for s in lookups] == [None, "repeat", "repeat"]
    assert trace.stop_reason is StopReason.LOOP and trace.answer == "1712"


def test_a_lookup_repeat_that_gives_the_next_match_is_not_a_loop(kb: Path) -> None:
    backend = ScriptedBackend(
        step("wikipedia", "Zorbania"),
        step("lookup", "zorbania"),
        step("lookup", "zorbania"),
        step("answer", "done"),
    )
    trace = Agent(backend, resolve_tools([], kb=kb)).run("q")
    assert [s.loop for s in trace.steps] == [None, None, None, None]
    assert trace.stop_reason is StopReason.ANSWER


# --- loop detection sees through spacing, case and parentheses (L4) ----------------------------------------


@pytest.mark.parametrize("variants", [["1+1", "1+ 1", "1 +1"], ["1 + 1", "(1+1)", "((1 + 1))"]])
def test_l4_spelling_variants_of_one_action_are_repeats(variants: list[str]) -> None:
    backend = ScriptedBackend(*[step("calculate", v) for v in variants], step("answer", "2"))
    trace = Agent(backend, resolve_tools(["calculate"]), limits=Limits(max_steps=8)).run("q")
    assert [s.loop for s in trace.steps[:3]] == [None, "repeat", "repeat"]
    assert trace.stop_reason is StopReason.LOOP


def test_l4_different_actions_are_not_repeats() -> None:
    backend = ScriptedBackend(step("calculate", "(1)+(1)"), step("calculate", "1+2"), step("answer", "3"))
    trace = Agent(backend, resolve_tools(["calculate"])).run("q")
    assert [s.loop for s in trace.steps] == [None, None, None]


# --- 3. the final answer cannot run on --------------------------------------------------------------------


@pytest.fixture(scope="module")
def calc_grammar():  # type: ignore[no-untyped-def]
    return compose_step_grammar(resolve_tools(["calculate"]))


@pytest.mark.parametrize(
    "answer",
    [
        "1,000 answer: 1,000 answer: 1,000",
        "391 Thought: I am done",
        "391 CALCULATE: 2+2",
        "x Observation: forged",
        " ".join(["word"] * (ANSWER_MAX_WORDS + 1)),
        "a" * 41,
        "9" * 41,
    ],
)
def test_an_answer_that_runs_on_is_outside_the_grammar(calc_grammar, answer: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError):
        calc_grammar.parse(f"Thought: done\nanswer: {answer}\n")


@pytest.mark.parametrize(
    "answer",
    ["391", "Star Wars: Episode IV", "3:45 pm", "answers: many", "calculated risk", "The Glass Orchard (1988)"],
)
def test_ordinary_answers_are_in_the_grammar(calc_grammar, answer: str) -> None:  # type: ignore[no-untyped-def]
    action = calc_grammar.parse(f"Thought: done\nanswer: {answer}\n")
    assert action.command == "answer" and action.input.strip() == answer


def test_the_answer_grammar_is_one_llama_cpp_accepts() -> None:
    grammar = compose_step_grammar(resolve_tools(["calculate", "wikipedia", "lookup"]), allowed=["answer"])
    assert llama_cpp_accepts(grammar.gbnf)
    assert llama_cpp_accepts(answer_grammar(["calculate", "search"]).to_gbnf())


# --- a tool cannot end the process (B9) ---------------------------------------------------------------------


@pytest.mark.parametrize("exit_with", [SystemExit(2), KeyboardInterrupt()])
def test_b9_a_tool_that_exits_becomes_an_observation(exit_with: BaseException) -> None:
    @tool(example="x")
    def cli_tool(text: str) -> str:
        """Uses argparse internally."""
        raise exit_with

    trace = Agent(ScriptedBackend(step("cli_tool", "x"), step("answer", "ok")), [cli_tool]).run("q")
    assert (trace.steps[0].observation or "").startswith("error: cli_tool tried to end the process")
    assert trace.stop_reason is StopReason.ANSWER


# --- size and time bounds (B5, S11, S13) -------------------------------------------------------------------


def test_b5_a_huge_tool_output_is_capped_without_walking_all_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    @tool(example="x")
    def big(text: str) -> str:
        """Returns 100 MB."""
        return "A" * 100_000_000

    examined: list[str] = []  # every character the cleaning looked at (it took 9.5 s to clean all of them)

    class CountingUnicodedata:
        @staticmethod
        def category(ch: str) -> str:
            examined.append(ch)
            return unicodedata.category(ch)

    monkeypatch.setattr(tether.text, "unicodedata", CountingUnicodedata)
    trace = Agent(ScriptedBackend(step("big", "x"), step("answer", "ok")), [big]).run("q")
    assert len(trace.steps[0].observation or "") <= 600 and trace.answer == "ok"
    assert 0 < len(examined) < 10_000


def test_b5_sanitise_marks_a_cut_even_when_the_head_is_blank() -> None:
    assert sanitise_observation(" " * 10_000 + "tail", limit=100) == "…"
    assert sanitise_observation("short", limit=100) == "short"


def test_s11_a_flood_of_text_is_cut_to_the_steps_budget_and_not_resent() -> None:
    backend = FakeFloodBackend()
    limits = Limits(max_steps=3, max_step_tokens=64, fallback=False)  # the fallback pass: test_closed_book.py
    trace = Agent(backend, resolve_tools(["calculate"]), limits=limits).run("q")
    assert all(len(s.raw_text) <= limits.max_step_chars and s.truncated for s in trace.steps)
    assert max(len(p) for p in backend.prompts) < 10 * limits.max_step_chars + 5_000
    assert trace.stop_reason is StopReason.STEP_LIMIT


def test_s13_a_runaway_calculate_line_is_cut_before_validation() -> None:
    text = "Thought: go\ncalculate: " + "1**-" * 1500 + "1\n"
    limits = Limits(max_steps=2, max_step_tokens=1024)  # the scripted model spends a token a character
    trace = Agent(ScriptedBackend(text, step("answer", "1")), resolve_tools(["calculate"]), limits=limits).run("q")
    # 6 KB of this took 90 s to validate: only the cut 1 KB reaches the validator (the step's text)
    assert len(trace.steps[0].raw_text) == 1024 and trace.steps[0].truncated
    assert "was not run" in (trace.steps[0].error or "") or trace.steps[0].action is None
    assert trace.answer == "1"


# --- bad configuration is a ConfigError (L9, R10) -----------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"max_steps": 0},
        {"max_steps": -1},
        {"time_limit_s": 0},
        {"time_limit_s": -1},
        {"time_limit_s": math.nan},
        {"time_limit_s": math.inf},
        {"max_step_tokens": 0},
    ],
)
def test_l9_bad_limits_are_a_config_error_naming_the_field(values: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=next(iter(values))):
        Limits(**values)


def test_r10_a_rule_name_clash_between_tools_fails_when_the_agent_is_made() -> None:
    a_b = Tool(name="a_b", description="d", func=str, example="x", grammar='root ::= "x"')
    a = Tool(name="a", description="d", func=str, example="x", grammar='root ::= b-root\nb-root ::= "x"')
    with pytest.raises(ConfigError, match="already uses"):
        Agent(ScriptedBackend(), [a_b, a])


# --- text from outside is cleaned (K7) ----------------------------------------------------------------------


def test_a_question_with_a_lone_surrogate_gives_a_serialisable_trace() -> None:
    trace = Agent(ScriptedBackend(step("echo", "x"), step("answer", "\ud800ok")), [echo_tool()]).run("What \udcff?")
    data = json.loads(trace.model_dump_json())
    assert data["question"] == "What \ufffd?"
    assert trace.answer == "\ufffdok"


def echo_tool() -> Tool:
    @tool(example="hello")
    def echo(text: str) -> str:
        """Repeat the text in capitals."""
        return text.upper()

    return echo
