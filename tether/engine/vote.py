"""Self-consistency: k sampled runs of one agent and a majority vote over their normalised answers.

Why: a small model's single greedy run is one draw; several samples that agree are more often right
(Wang et al. 2022), and the vote records how much they agreed and what the extra runs cost.
"""

from __future__ import annotations

import copy
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel

from tether.engine.controller import Agent
from tether.engine.protocol import Trace
from tether.errors import ConfigError

__all__ = ["Voted", "majority", "normalise_answer", "self_consistent"]

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


class Voted(BaseModel):
    """The vote of `self_consistent`: the winning answer (None when no run answered), the count of
    each normalised answer, every run's Trace, and the wall time of all runs together."""

    answer: str | None
    votes: dict[str, int]
    traces: list[Trace]
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
    traces: list[Trace] = []
    for seed in range(k):
        run = copy.copy(agent)  # the same backend, tools and grammars; only the sampling differs
        run.sampling = agent.sampling.model_copy(update={"temperature": temperature, "seed": seed})
        traces.append(run.run(question))
    winner, votes = majority(traces)
    return Voted(answer=winner, votes=votes, traces=traces, elapsed_s=time.monotonic() - began)


def majority(traces: Sequence[Trace]) -> tuple[str | None, dict[str, int]]:
    """The vote over these runs: the winning answer (None when none answered) and the count of each
    normalised answer; a tie goes to the answer of the earliest run among the tied."""
    answered = [(normalise_answer(t.answer), t.answer) for t in traces if t.answer is not None]
    votes = Counter(key for key, _ in answered)
    best = max(votes.values(), default=0)
    return next((answer for key, answer in answered if votes[key] == best), None), dict(votes)
