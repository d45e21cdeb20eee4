"""Self-consistency: k sampled runs of one agent and a majority vote over their normalised answers;
and reasoning first: the model's own closed-book passes vote, and the agent runs only when they disagree.

Why: a small model's single greedy run is one draw; several samples that agree are more often right
(Wang et al. 2022), and the vote records how much they agreed and what the extra runs cost. Where the
model's own chain of thought is the stronger path (arithmetic, for Qwen2.5-Coder), its passes'
disagreement says when it is unsure, which is when the tools help (Yao et al. 2022, "CoT-SC -> ReAct").
"""

from __future__ import annotations

import copy
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel

from tether.engine.controller import Agent
from tether.engine.events import Event
from tether.engine.protocol import Mode, Trace
from tether.errors import ConfigError

__all__ = ["Voted", "agreed", "majority", "majority_of", "normalise_answer", "reason_then_act", "self_consistent"]

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


class Voted(BaseModel):
    """The vote of `self_consistent` or `reason_then_act`: the winning answer (None when no run
    answered), the count of each normalised answer, every run's Trace, which of them gave the answer
    (`winner`, an index into `traces`; None without an answer), and the wall time of all runs together."""

    answer: str | None
    votes: dict[str, int]
    traces: list[Trace]
    winner: int | None
    elapsed_s: float


def normalise_answer(answer: str) -> str:
    """The form two answers share when they say the same: casefolded, without punctuation, articles
    or extra whitespace; a number as its value ("1,000" and "1000.0" are both "1000")."""
    text = " ".join(answer.split()).casefold().rstrip(".")
    if _NUMBER.fullmatch(text):
        try:
            value = Decimal(text.replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            pass
        else:
            return "0" if value.is_zero() else format(value.normalize(), "f")
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def self_consistent(agent: Agent, question: str, *, k: int, temperature: float = 0.7) -> Voted:
    """Run `agent` k times with `Sampling(temperature=temperature, seed=i)` for i in range(k) (its other
    sampling settings kept) and vote: the most frequent normalised answer wins; a tie goes to the
    answer of the earliest run among the tied. Runs without an answer cast no vote."""
    if k < 1:
        raise ConfigError(f"self-consistency needs at least one run, not k={k}")
    if not temperature >= 0:
        raise ConfigError(f"temperature must be at least 0, not {temperature}")
    began = time.monotonic()
    traces = [_sampled(agent, temperature, seed).run(question) for seed in range(k)]
    winner, votes = majority(traces)
    decided = _first_with(traces, winner)
    return Voted(answer=winner, votes=votes, traces=traces, winner=decided, elapsed_s=time.monotonic() - began)


def reason_then_act(
    agent: Agent,
    question: str,
    *,
    samples: int = 3,
    temperature: float = 0.7,
    on_event: Callable[[Event], None] | None = None,
) -> Voted:
    """The model's own reasoning first, then the agent: `samples` closed-book passes of the agent's
    model (the first with the agent's sampling, greedy by default; the others at `temperature`, seeds
    0, 1, ...). An answer that more than half of the passes give stands. Otherwise the agent runs once,
    with its own sampling, and its answer is the result (None if it gave none). `votes` counts the
    passes' answers; the agent's trace, when it ran, is the last of `traces`. `on_event` sees every
    run's events in order, each run ending with its RunFinished (as `Agent.run`'s does)."""
    if samples < 1:
        raise ConfigError(f"reasoning first needs at least one closed-book pass, not samples={samples}")
    if agent.mode is Mode.CLOSED_BOOK:
        raise ConfigError("reason_then_act needs an agent with tools (constrained or free), not a closed-book one")
    if not temperature >= 0:
        raise ConfigError(f"temperature must be at least 0, not {temperature}")
    began = time.monotonic()
    thinker = copy.copy(agent)  # the same backend and answer grammar, no tool loop
    thinker.mode = Mode.CLOSED_BOOK
    passes = [thinker if i == 0 else _sampled(thinker, temperature, i - 1) for i in range(samples)]
    traces = [run.run(question, on_event) for run in passes]
    _, votes = majority(traces)
    winner = agreed([t.answer for t in traces])
    decided = _first_with(traces, winner)
    if winner is None:
        traces.append(agent.run(question, on_event))
        winner = traces[-1].answer
        decided = None if winner is None else len(traces) - 1
    return Voted(answer=winner, votes=votes, traces=traces, winner=decided, elapsed_s=time.monotonic() - began)


def _sampled(agent: Agent, temperature: float, seed: int) -> Agent:
    """The agent with only its sampling changed (the same backend, tools and grammars)."""
    run = copy.copy(agent)
    run.sampling = agent.sampling.model_copy(update={"temperature": temperature, "seed": seed})
    return run


def _first_with(traces: Sequence[Trace], answer: str | None) -> int | None:
    """The index of the first trace whose answer is `answer` (normalised), or None."""
    if answer is None:
        return None
    key = normalise_answer(answer)
    return next(i for i, t in enumerate(traces) if t.answer is not None and normalise_answer(t.answer) == key)


def majority(traces: Sequence[Trace]) -> tuple[str | None, dict[str, int]]:
    """The vote over these runs: the winning answer (None when none answered) and the count of each
    normalised answer; a tie goes to the answer of the earliest run among the tied."""
    return majority_of([t.answer for t in traces])


def majority_of(answers: Sequence[str | None]) -> tuple[str | None, dict[str, int]]:
    """`majority` over the runs' answers alone (None: a run without an answer, which casts no vote)."""
    answered = [(normalise_answer(a), a) for a in answers if a is not None]
    votes = Counter(key for key, _ in answered)
    best = max(votes.values(), default=0)
    return next((answer for key, answer in answered if votes[key] == best), None), dict(votes)


def agreed(answers: Sequence[str | None]) -> str | None:
    """The answer that more than half of the runs give (normalised; the earliest run's wording), or
    None when none does: a run without an answer counts against every answer."""
    winner, votes = majority_of(answers)
    return winner if winner is not None and 2 * votes[normalise_answer(winner)] > len(answers) else None
