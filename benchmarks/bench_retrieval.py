"""Benchmark of the corpus retriever: how often the passages it finds for a HotpotQA question hold both
supporting pages, by how many paragraphs it returns (k) and how many of the best it follows (follow).

    python benchmarks/bench_retrieval.py [--k 3 4 5 6 8] [--follow 0 1 2 3] [--first 60]

Builds the README's knowledge base (the paragraphs of both HotpotQA files in /work/shared/data, pooled
as `scripts/eval_readme` pools them) in a temporary folder, then runs `make_corpus_retriever` over the
150-question sample's questions. A row counts the questions whose passages hold both gold pages, and
at least one; on the first `--first` questions (the README table's) and on the rest. No model runs.
Prints a table and writes the rows to benchmarks/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results

from tether.corpus import Corpus, build_corpus
from tether.tools.corpus_tool import make_corpus_retriever

DATA = Path("/work/shared/data")
POOLED = ("hotpotqa_dev_distractor_first53.json", "hotpotqa_dev_distractor_sample150.json")
QUESTIONS = DATA / "hotpotqa_dev_distractor_sample150.json"
RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"


def holds(passages: list[str], title: str) -> bool:
    return any(p.startswith(f"{title}: ") for p in passages)


def measure(corpus: Corpus, questions: list[dict[str, Any]], k: int, follow: int, first: int) -> dict[str, Any]:
    retrieve = make_corpus_retriever(corpus, k=k, follow=follow)
    both: list[bool] = []
    some: list[bool] = []
    began = time.perf_counter()
    for item in questions:
        passages = retrieve(item["question"])
        gold = {title for title, _ in item["supporting_facts"]}
        found = [holds(passages, title) for title in gold]
        both.append(all(found))
        some.append(any(found))
    seconds = time.perf_counter() - began
    return {
        "k": k,
        "follow": follow,
        "both_first": sum(both[:first]),
        "both_rest": sum(both[first:]),
        "both": sum(both),
        "some": sum(some),
        "questions": len(questions),
        "first": first,
        "ms_per_question": 1000 * seconds / len(questions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[3, 4, 5, 6, 8])
    parser.add_argument("--follow", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--first", type=int, default=60, help="the README table's questions, counted apart")
    args = parser.parse_args()
    questions = json.loads(QUESTIONS.read_text("utf-8"))
    with tempfile.TemporaryDirectory() as folder:
        pool = Path(folder) / "pool.json"
        pool.write_text(json.dumps([q for name in POOLED for q in json.loads((DATA / name).read_text("utf-8"))]))
        stats = build_corpus(pool, Path(folder) / "kb.sqlite")
        with Corpus(Path(folder) / "kb.sqlite") as corpus:
            rows = [measure(corpus, questions, k, f, args.first) for k in args.k for f in args.follow if f <= k]
    n, first = len(questions), args.first
    print(f"{stats.documents} paragraphs, {n} questions; both gold pages among the k passages")
    print(f"| k | follow | both, first {first} | both, other {n - first} | both, all | at least one | ms/question |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['k']} | {r['follow']} | {r['both_first']} | {r['both_rest']} | {r['both']} ({r['both'] / n:.0%}) "
            f"| {r['some']} | {r['ms_per_question']:.1f} |"
        )
    write_results(RESULTS, rows, paragraphs=stats.documents, questions=n, source=QUESTIONS.name)


if __name__ == "__main__":
    main()
