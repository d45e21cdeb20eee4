"""`tether eval`: run the agent over a question set, per model and mode, and score it."""

from tether.evaluation.datasets import Dataset, Question, load_dataset
from tether.evaluation.metrics import Summary, summarise
from tether.evaluation.runner import EvalConfig, Record, evaluate_question, run_eval
from tether.evaluation.scoring import Score, exact_match, extract_number, normalize_answer, score_answer, token_f1

__all__ = [
    "Dataset",
    "EvalConfig",
    "Question",
    "Record",
    "Score",
    "Summary",
    "evaluate_question",
    "exact_match",
    "extract_number",
    "load_dataset",
    "normalize_answer",
    "run_eval",
    "score_answer",
    "summarise",
    "token_f1",
]
