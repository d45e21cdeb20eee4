"""One question's record, and one row of the results table: what a model did in one mode over one
question set. (The runner makes records; this module, below it, only reads them.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from tether.engine.protocol import Mode, Step, StopReason, Trace
from tether.evaluation.scoring import Score

__all__ = ["Record", "Summary", "generated_steps", "percentile", "summarise"]


class Record(BaseModel):
    """One question's run and score: a line of the results file."""

    id: str
    question: str
    gold: str
    model: str
    mode: Mode
    score: Score
    trace: Trace


class Summary(BaseModel):
    dataset: str
    model: str
    mode: str
    questions: int
    accuracy: float  # exact match (HotpotQA) or number match (arithmetic sets)
    f1: float  # mean token F1 (equal to accuracy for arithmetic sets)
    steps: int  # all steps, interrupted ones included (they cost time and tokens too)
    interrupted_steps: int  # steps cut by the time or context limit or a server failure before the model finished
    valid_step_rate: float  # steps whose text the validator accepts, over all generated steps
    mean_steps: float
    stop_reasons: dict[str, int]
    tool_calls: dict[str, int]  # tools actually run (a repeated or token-cut command is not)
    repeated_actions: int  # steps that repeated an earlier action (the loop detector answered them)
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


def summarise(dataset: str, model: str, mode: str, records: Sequence[Record]) -> Summary:
    steps = [s for r in records for s in r.trace.steps]
    generated = [s for r in records for s in generated_steps(r.trace)]
    ran = [s.action.command for s in steps if s.action is not None and not s.action.is_answer and _tool_ran(s)]
    step_latency = [s.timing.decode_s + s.timing.tool_s for s in steps]
    decode_s = sum(s.timing.decode_s for s in steps)
    decoded = sum(s.tokens.sampled + s.tokens.forced for s in steps)
    n = len(records)
    return Summary(
        dataset=dataset,
        model=model,
        mode=mode,
        questions=n,
        accuracy=sum(r.score.correct for r in records) / n if n else 0.0,
        f1=sum(r.score.f1 for r in records) / n if n else 0.0,
        steps=len(steps),
        interrupted_steps=len(steps) - len(generated),
        valid_step_rate=sum(s.valid for s in generated) / len(generated) if generated else 0.0,
        mean_steps=len(steps) / n if n else 0.0,
        stop_reasons={reason.value: sum(r.trace.stop_reason is reason for r in records) for reason in StopReason},
        tool_calls=dict(Counter(ran).most_common()),
        repeated_actions=sum(s.loop is not None for s in steps),
        question_latency_p50_s=percentile([r.trace.elapsed_s for r in records], 50),
        question_latency_p95_s=percentile([r.trace.elapsed_s for r in records], 95),
        step_latency_p50_s=percentile(step_latency, 50),
        step_latency_p95_s=percentile(step_latency, 95),
        tokens_sampled=sum(s.tokens.sampled for s in steps),
        tokens_forced=sum(s.tokens.forced for s in steps),
        prompt_tokens=sum(s.tokens.prompt for s in steps),
        prompt_tokens_evaluated=sum(s.tokens.prompt_evaluated for s in steps),
        tokens_per_second=decoded / decode_s if decode_s else 0.0,
    )


def _tool_ran(step: Step) -> bool:
    return step.loop is None and not step.truncated
