"""One question's record, and one row of the results table: what a model did in one mode over one
question set. (The runner makes records; this module, below it, only reads them.)"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from tether.engine.protocol import Mode, Step, StopReason, Trace
from tether.evaluation.bfcl_checker import CALL_STATUSES, CallScore
from tether.evaluation.retrieval import titles_reached
from tether.evaluation.scoring import Score

__all__ = ["Cost", "Record", "Summary", "generated_steps", "percentile", "summarise", "wilson_interval"]


class Cost(BaseModel):
    """What every run behind one record cost together (self-consistency runs a question k times)."""

    runs: int
    elapsed_s: float
    tokens_sampled: int
    tokens_forced: int
    prompt_tokens: int
    prompt_tokens_evaluated: int

    @classmethod
    def of(cls, traces: Sequence[Trace], elapsed_s: float) -> Cost:
        steps = [s for t in traces for s in t.steps]
        return cls(
            runs=len(traces),
            elapsed_s=elapsed_s,
            tokens_sampled=sum(s.tokens.sampled for s in steps),
            tokens_forced=sum(s.tokens.forced for s in steps),
            prompt_tokens=sum(s.tokens.prompt for s in steps),
            prompt_tokens_evaluated=sum(s.tokens.prompt_evaluated for s in steps),
        )


class Record(BaseModel):
    """One question's run and score: a line of the results file."""

    id: str
    question: str
    gold: str
    model: str
    mode: Mode
    score: Score
    trace: Trace  # with a vote, the run whose answer won (the earliest of them)
    supporting_titles: list[str] = []  # HotpotQA's gold titles (retrieval is measured against them)
    votes: dict[str, int] | None = None  # self-consistency: normalised answer -> runs that gave it
    cost: Cost | None = None  # self-consistency: all k runs together (the trace is one of them)
    call: CallScore | None = None  # BFCL: the run's first call, judged (score.correct is its AST verdict)


class Summary(BaseModel):
    dataset: str
    model: str
    mode: str
    questions: int
    answer_type: str = "text"  # the answer grammar's type (number, short, text)
    correct: int = 0
    accuracy: float  # exact match (HotpotQA) or number match (arithmetic sets)
    accuracy_low: float = 0.0  # its Wilson 95% interval
    accuracy_high: float = 0.0
    f1: float  # mean token F1 (equal to accuracy for arithmetic sets)
    steps: int  # all steps, interrupted ones included (they cost time and tokens too)
    interrupted_steps: int  # steps cut by the time or context limit or a server failure before the model finished
    valid_step_rate: float  # steps whose text the validator accepts, over all generated steps
    mean_steps: float
    stop_reasons: dict[str, int]
    tool_calls: dict[str, int]  # tools actually run (a repeated or token-cut command is not)
    repeated_actions: int  # steps that repeated an earlier action (the loop detector answered them)
    answer_sources: dict[str, int] = {}  # which path produced the answers (agent, forced, fallback, closed_book)
    runs: int = 0  # agent runs (k per question under self-consistency)
    # HotpotQA: gold titles the runs opened or read, over all gold titles; questions that reached all
    # of theirs, over the questions. None where nothing is measured (no gold titles, or no tools).
    gold_titles_reached: float | None = None
    questions_all_gold_reached: float | None = None
    question_latency_p50_s: float
    question_latency_p95_s: float
    step_latency_p50_s: float
    step_latency_p95_s: float
    tokens_sampled: int
    tokens_forced: int
    prompt_tokens: int
    prompt_tokens_evaluated: int
    tokens_per_second: (
        float  # tokens decoded (sampled + forced) per second of step decoding, prompt evaluation included
    )
    # BFCL: questions whose call named a function with a JSON object valid against its schema, and
    # each outcome's count (tether.evaluation.bfcl_checker.CALL_STATUSES). None elsewhere.
    valid_calls: int | None = None
    call_outcomes: dict[str, int] = {}

    @property
    def invalid_calls(self) -> int | None:
        """BFCL: questions without a valid call (no call, an unknown function, not JSON, or off-schema)."""
        return None if self.valid_calls is None else self.questions - self.valid_calls


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): unlike p ± z·se it stays inside
    [0, 1] and does not collapse to a point at 0 or n successes. (0, 0) for no trials."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding stays around p


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


_MODEL_ENDED = (StopReason.ANSWER, StopReason.STEP_LIMIT, StopReason.LOOP)


def generated_steps(trace: Trace) -> list[Step]:
    """The steps the model finished. A step that the run's budget or its backend cut off (the last
    one of a run ended by the time or context limit or a server failure, with neither an action nor
    an observation) is left out: its text was never complete, so the validator's verdict on it would
    measure the budget, not the model."""
    steps = trace.steps
    if (
        steps
        and trace.stop_reason is not None
        and trace.stop_reason not in _MODEL_ENDED
        and steps[-1].action is None
        and steps[-1].observation is None
    ):
        return steps[:-1]
    return list(steps)


def summarise(dataset: str, model: str, mode: str, records: Sequence[Record], *, answer_type: str = "text") -> Summary:
    steps = [s for r in records for s in r.trace.steps]
    generated = [s for r in records for s in generated_steps(r.trace)]
    ran = [s.action.command for s in steps if s.action is not None and not s.action.is_answer and _tool_ran(s)]
    step_latency = [s.timing.decode_s + s.timing.tool_s for s in steps]
    decode_s = sum(s.timing.decode_s for s in steps)
    decoded = sum(s.tokens.sampled + s.tokens.forced for s in steps)
    costs = [r.cost or Cost.of([r.trace], r.trace.elapsed_s) for r in records]
    n = len(records)
    correct = sum(r.score.correct for r in records)
    low, high = wilson_interval(correct, n)
    reached, all_reached = _retrieval(mode, records)
    calls = [r.call for r in records if r.call is not None]
    return Summary(
        dataset=dataset,
        model=model,
        mode=mode,
        questions=n,
        answer_type=answer_type,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        accuracy_low=low,
        accuracy_high=high,
        f1=sum(r.score.f1 for r in records) / n if n else 0.0,
        steps=len(steps),
        interrupted_steps=len(steps) - len(generated),
        valid_step_rate=sum(s.valid for s in generated) / len(generated) if generated else 0.0,
        mean_steps=len(steps) / n if n else 0.0,
        stop_reasons={reason.value: sum(r.trace.stop_reason is reason for r in records) for reason in StopReason},
        tool_calls=dict(Counter(ran).most_common()),
        repeated_actions=sum(s.loop is not None for s in steps),
        answer_sources=dict(Counter(_answer_source(r.trace) for r in records).most_common()),
        runs=sum(c.runs for c in costs),
        gold_titles_reached=reached,
        questions_all_gold_reached=all_reached,
        question_latency_p50_s=percentile([c.elapsed_s for c in costs], 50),
        question_latency_p95_s=percentile([c.elapsed_s for c in costs], 95),
        step_latency_p50_s=percentile(step_latency, 50),
        step_latency_p95_s=percentile(step_latency, 95),
        tokens_sampled=sum(c.tokens_sampled for c in costs),
        tokens_forced=sum(c.tokens_forced for c in costs),
        prompt_tokens=sum(c.prompt_tokens for c in costs),
        prompt_tokens_evaluated=sum(c.prompt_tokens_evaluated for c in costs),
        tokens_per_second=decoded / decode_s if decode_s else 0.0,
        valid_calls=sum(c.valid for c in calls) if calls else None,
        call_outcomes={k: sum(c.status == k for c in calls) for k in CALL_STATUSES} if calls else {},
    )


def _answer_source(trace: Trace) -> str:
    """Which path produced the answer; `none` for a run that ended without one."""
    return "none" if trace.answer_source is None else trace.answer_source.value


def _retrieval(mode: str, records: Sequence[Record]) -> tuple[float | None, float | None]:
    """The share of gold titles reached, and of questions that reached all of theirs (None when no
    record has gold titles, or in closed-book mode when nothing was read: no tools, no passages)."""
    measured = [r for r in records if r.supporting_titles]
    if not measured or (mode == Mode.CLOSED_BOOK.value and not any(r.trace.passages for r in measured)):
        return None, None
    hits = [len(titles_reached(r.trace, r.supporting_titles)) for r in measured]
    gold = sum(len(r.supporting_titles) for r in measured)
    all_reached = sum(h == len(r.supporting_titles) for h, r in zip(hits, measured, strict=True))
    return sum(hits) / gold, all_reached / len(measured)


def _tool_ran(step: Step) -> bool:
    return step.loop is None and not step.truncated
