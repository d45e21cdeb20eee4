"""Scoring against known cases: HotpotQA's normalisation, EM and F1, and number extraction."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.evaluation import exact_match, extract_number, normalize_answer, score_answer, token_f1


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Animorphs", "animorphs"),
        ("  Chief   of Protocol. ", "chief of protocol"),
        ("A Tale of Two Cities", "tale of two cities"),
        ("Greenwich Village, New York City", "greenwich village new york city"),
        ("an apple and THE pear", "apple and pear"),
        ("theatre", "theatre"),  # articles only as whole words
        ("3,677 seated", "3677 seated"),
    ],
)
def test_normalisation_is_hotpotqas(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert exact_match("the Chief of Protocol!", "Chief of Protocol")
    assert not exact_match("Chief of Protocol of the US", "Chief of Protocol")


@pytest.mark.parametrize(
    ("prediction", "gold", "f1"),
    [
        ("Chief of Protocol", "Chief of Protocol", 1.0),
        ("the Chief of Protocol of the United States", "Chief of Protocol", 2 * 0.5 * 1 / 1.5),  # 3 of 6 tokens
        ("Greenwich Village", "Greenwich Village, New York City", 2 * 1 * 0.4 / 1.4),
        ("yes", "no", 0.0),
        ("yes it is", "yes", 0.0),  # yes/no only against the same yes/no
        ("no", "no", 1.0),
        ("Paris", "London", 0.0),
        ("", "London", 0.0),
    ],
)
def test_token_f1_matches_the_official_definition(prediction: str, gold: str, f1: float) -> None:
    assert token_f1(prediction, gold) == pytest.approx(f1)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("72", 72.0),
        ("The answer is $1,234.50.", 1234.5),
        ("-3 degrees", -3.0),
        ("first 3 then 4", 4.0),
        ("about 0.5 of it", 0.5),
        ("40.", 40.0),
        ("12,5", 5.0),  # not a thousands group: the last number is 5
        ("no number here", None),
    ],
)
def test_the_last_number_is_extracted(text: str, number: float | None) -> None:
    assert extract_number(text) == number


def test_numeric_scoring_compares_numbers_not_text() -> None:
    assert score_answer("There are 51.0 dollars", "51", numeric=True).correct
    assert score_answer("1,000", "1000", numeric=True).correct
    assert not score_answer("50", "51", numeric=True).correct
    assert not score_answer("fifty-one", "51", numeric=True).correct
    assert score_answer(None, "51", numeric=True) == score_answer(None, "x", numeric=False)


def test_text_scoring_gives_em_and_f1() -> None:
    scored = score_answer("Greenwich Village", "Greenwich Village, New York City", numeric=False)
    assert not scored.correct and scored.f1 == pytest.approx(4 / 7)


# HotpotQA's official evaluation code (hotpot_evaluate_v1.py), kept verbatim in spirit, as the reference.
def _official_normalize(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction: str, ground_truth: str) -> float:
    normalized_prediction = _official_normalize(prediction)
    normalized_ground_truth = _official_normalize(ground_truth)
    if normalized_prediction in ["yes", "no", "noanswer"] and normalized_prediction != normalized_ground_truth:
        return 0.0
    if normalized_ground_truth in ["yes", "no", "noanswer"] and normalized_prediction != normalized_ground_truth:
        return 0.0
    prediction_tokens = normalized_prediction.split()
    ground_truth_tokens = normalized_ground_truth.split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


_ANSWERISH = st.lists(
    st.sampled_from(["the", "a", "an", "The", "Yes", "no", "Paris", "paris,", "New", "York", "1,000", "-", "'s", "  "]),
    max_size=6,
).map(" ".join) | st.text(max_size=20)


@given(_ANSWERISH, _ANSWERISH)
def test_scores_agree_with_the_official_hotpotqa_code(prediction: str, gold: str) -> None:
    assert normalize_answer(gold) == _official_normalize(gold)
    assert exact_match(prediction, gold) == (_official_normalize(prediction) == _official_normalize(gold))
    assert token_f1(prediction, gold) == pytest.approx(_official_f1(prediction, gold))
