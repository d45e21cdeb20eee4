"""Scores: HotpotQA's exact match and token F1 (its official normalisation), and number match for
arithmetic sets (the last number in the agent's answer against the gold number)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter

from pydantic import BaseModel, ConfigDict

__all__ = ["Score", "exact_match", "extract_number", "normalize_answer", "score_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_SPECIAL = ("yes", "no", "noanswer")


class Score(BaseModel):
    model_config = ConfigDict(frozen=True)

    correct: bool  # exact match (HotpotQA) or the same number (arithmetic sets)
    f1: float  # token F1 for HotpotQA; equal to `correct` for arithmetic sets


def normalize_answer(text: str) -> str:
    """HotpotQA's normalisation: lower-case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def token_f1(prediction: str, gold: str) -> float:
    """HotpotQA's token F1; a yes/no answer scores only against the same yes/no."""
    predicted, wanted = normalize_answer(prediction), normalize_answer(gold)
    if (predicted in _SPECIAL or wanted in _SPECIAL) and predicted != wanted:
        return 0.0
    common = Counter(predicted.split()) & Counter(wanted.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted.split()), same / len(wanted.split())
    return 2 * precision * recall / (precision + recall)


def extract_number(text: str) -> float | None:
    """The last number in `text` ("1,234.5", "-3", "$40." all count), or None."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def score_answer(prediction: str | None, gold: str, *, numeric: bool) -> Score:
    if prediction is None:
        return Score(correct=False, f1=0.0)
    if numeric:
        got, wanted = extract_number(prediction), extract_number(gold)
        same = got is not None and wanted is not None and math.isclose(got, wanted, rel_tol=1e-6, abs_tol=1e-6)
        return Score(correct=same, f1=float(same))
    return Score(correct=exact_match(prediction, gold), f1=token_f1(prediction, gold))
