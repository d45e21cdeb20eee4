"""`tether eval`: run the agent over a question set, per model and mode, and score it."""

from tether.evaluation.datasets import Dataset, Question, load_dataset
from tether.evaluation.metrics import Cost, Summary, summarise, wilson_interval
from tether.evaluation.retrieval import titles_reached
from tether.evaluation.runner import EvalConfig, Record, answer_type, evaluate_question, run_eval
from tether.evaluation.scoring import Score, exact_match, extract_number, normalize_answer, score_answer, token_f1

__all__ = [
    "Cost",
    "Dataset",
    "EvalConfig",
    "Question",
    "Record",
    "Score",
    "Summary",
    "answer_type",
    "evaluate_question",
    "exact_match",
    "extract_number",
    "load_dataset",
    "normalize_answer",
    "run_eval",
    "score_answer",
    "summarise",
    "titles_reached",
    "token_f1",
    "wilson_interval",
]
