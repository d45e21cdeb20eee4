"""The real SmolLM2-135M model through llama-cpp-python: under the grammar every step parses and
every run ends within the step limit; without it the same questions still run to completion.

Runs are bounded by work (steps, tokens per step), never by the clock: the time limit is out of any
machine's reach, so a loaded machine makes these tests slower but cannot change their outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tether import (
    Agent,
    AnswerSource,
    Limits,
    LlamaCppBackend,
    Mode,
    Restriction,
    Sampling,
    StopReason,
    StreamStats,
    Trace,
    default_tools,
)
from tether.engine.closed_book import closed_book_grammar

pytestmark = pytest.mark.model

QUESTIONS = [
    "What is 17 * 23?",
    "What is 17% of 2,340?",
    "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
    "What is the square root of 1764?",
    "If I have 3 boxes with 12 eggs each and break 5 eggs, how many are left?",
    "What is 2 to the power of 10?",
    "How many seconds are in a day?",
    "What is 15 divided by 4?",
    "A shirt costs $25 and is discounted by 20%. What is the new price?",
    "What is the remainder when 100 is divided by 7?",
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet in the solar system?",
    "In which year did the Second World War end?",
    "What is the chemical symbol for gold?",
    "How many legs does a spider have?",
    "What language is spoken in Brazil?",
    "What is the boiling point of water in degrees Celsius?",
    "Sam had 48 marbles and gave a quarter of them to Ana. How many does Sam have now?",
    "What is the area of a circle with radius 3?",
]
UNREACHABLE_S = 24 * 3600.0  # a time limit no run reaches: the step and token limits end every run
LIMITS = Limits(max_steps=6, time_limit_s=UNREACHABLE_S)
# Unconstrained, nothing ends a rambling step but its token limit: 128 tokens holds a Thought and a
# command line, and keeps the whole test's work (20 runs x 6 steps x 128 tokens) affordable.
FREE_LIMITS = Limits(max_steps=6, max_step_tokens=128, time_limit_s=UNREACHABLE_S, fallback=False)  # the loop alone
WORK_BOUNDED = (StopReason.ANSWER, StopReason.STEP_LIMIT, StopReason.LOOP, StopReason.CONTEXT_LIMIT)


def _report(mode: Mode, traces: list[Trace]) -> dict[str, object]:
    steps = [s for t in traces for s in t.steps]
    summary = {
        "mode": mode.value,
        "runs": len(traces),
        "steps": len(steps),
        "parse_failures": sum(s.action is None for s in steps),
        "stop_reasons": {r.value: sum(t.stop_reason is r for t in traces) for r in StopReason},
        "answers": [t.answer for t in traces],
    }
    out = os.environ.get("TETHER_INTEGRATION_REPORT")
    if out:
        with Path(out).open("a", encoding="utf-8") as f:
            f.write(json.dumps(summary) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "answers"}))
    return summary


def test_constrained_runs_always_parse_and_end(smollm2: LlamaCppBackend) -> None:
    agent = Agent(smollm2, default_tools(), limits=LIMITS)
    traces = [agent.run(q) for q in QUESTIONS]
    summary = _report(Mode.CONSTRAINED, traces)
    for trace in traces:
        assert trace.stop_reason in (StopReason.ANSWER, StopReason.STEP_LIMIT, StopReason.LOOP), trace
        assert trace.answer, trace
        assert 1 <= len(trace.steps) <= LIMITS.max_steps
        # a run that did not finish is answered by the fallback: a closed-book pass, in its own grammar
        fallback = trace.steps[-1] if trace.answer_source is AnswerSource.FALLBACK else None
        for step in trace.steps:
            # the one way a constrained step may fail: the token budget cut a runaway line (`2 * 2 * ...`)
            assert step.action is not None or step.truncated, step.raw_text
            assert step.error is None or step.truncated
            assert step.tokens.sampled > 0 and step.tokens.prompt > 0
            if step is fallback and not step.truncated:
                assert step.action == closed_book_grammar("text").parse(step.raw_text)
            elif step is not fallback:
                assert step.action is None or step.action.to_text() == step.raw_text or step.truncated
    cut = sum(s.truncated and s.action is None for t in traces for s in t.steps)
    assert summary["parse_failures"] == cut
    # the agent's later steps (not a fallback pass, whose prompt is its own) reuse the KV cache
    later_steps = [
        s for t in traces for s in t.steps[1:] if not (t.answer_source is AnswerSource.FALLBACK and s is t.steps[-1])
    ]
    assert later_steps, "no run took a second step"
    assert all(s.tokens.prompt_evaluated < s.tokens.prompt // 2 for s in later_steps)


def test_unconstrained_runs_complete(smollm2: LlamaCppBackend) -> None:
    agent = Agent(smollm2, default_tools(), limits=FREE_LIMITS, mode=Mode.FREE)
    traces = [agent.run(q) for q in QUESTIONS]
    _report(Mode.FREE, traces)  # the parse-failure count is reported, not asserted
    for trace in traces:
        assert trace.stop_reason in WORK_BOUNDED, trace  # never the clock, never a failure
        assert 1 <= len(trace.steps) <= FREE_LIMITS.max_steps
        assert all(step.tokens.sampled <= FREE_LIMITS.max_step_tokens for step in trace.steps)


def test_kv_cache_is_reused_and_greedy_decoding_is_deterministic(smollm2: LlamaCppBackend) -> None:
    grammar = Agent(smollm2, default_tools()).grammars[Restriction.ALL].gbnf
    prompt = "Question: What is 12 * 12?\n"

    def stream(text: str) -> tuple[str, StreamStats]:
        stats = StreamStats()
        out = "".join(smollm2.stream(text, grammar=grammar, max_tokens=200, sampling=Sampling(), stats=stats))
        return out, stats

    first, first_stats = stream(prompt)
    extension = first + "Observation: 144\n"
    second, second_stats = stream(prompt + extension)
    assert second_stats.prompt > first_stats.prompt
    assert second_stats.prompt_evaluated <= len(smollm2.tokenize(extension)) + 1
    again, _ = stream(prompt)
    assert again == first
    assert second.startswith("Thought: ")
