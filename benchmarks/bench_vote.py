"""Self-consistency, measured: accuracy and time for k = 1, 3 and 5 sampled runs per question.

Each question is answered once by `self_consistent(k=max)`; the vote for a smaller k is the vote over
its first k runs (seeds 0..k-1, exactly the runs `self_consistent(k)` would make), so one pass measures
every k on the same samples, and greedy (one run at temperature 0) is measured beside them. Prints a
table and writes JSON.

    python benchmarks/bench_vote.py GSM8K_OR_SVAMP_FILE [--model qwen2.5-coder-1.5b] [--limit 30] [--ks 1,3,5]

Run it alone: llama.cpp spin-waits, so another model process on the machine distorts every number.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from _results import accuracy_cells, write_results

from tether import Agent, Limits, Sampling, self_consistent
from tether.engine.vote import majority
from tether.evaluation.datasets import load_dataset
from tether.evaluation.metrics import wilson_interval
from tether.evaluation.runner import answer_type
from tether.evaluation.scoring import score_answer
from tether.models import load_backend
from tether.tools import resolve_tools

RESULTS = Path(__file__).parent / "results" / "vote.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--ks", default="1,3,5", help="the vote sizes to score, from one pass of the largest")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    ks = sorted({int(k) for k in args.ks.split(",")})
    dataset = load_dataset(args.dataset)
    if dataset.tools != ["calculate"]:
        parser.error(f"{args.dataset}: an arithmetic set (GSM8K, SVAMP) is needed; this one needs other tools")
    questions = dataset.questions[: args.limit]
    limits = Limits(max_steps=6, max_step_tokens=256, time_limit_s=60)
    agent = Agent(
        load_backend(args.model),
        resolve_tools(dataset.tools),
        limits=limits,
        answer_type=answer_type(dataset),
        sampling=Sampling(seed=0),
    )
    rows: dict[str, dict[str, float]] = {f"k={k}": {"correct": 0, "seconds": 0.0} for k in ks}
    rows["greedy"] = {"correct": 0, "seconds": 0.0}
    for n, question in enumerate(questions, 1):
        began = time.monotonic()
        greedy = agent.run(question.question)
        rows["greedy"]["seconds"] += time.monotonic() - began
        rows["greedy"]["correct"] += score_answer(greedy.answer, question.answer, numeric=question.numeric).correct
        voted = self_consistent(agent, question.question, k=ks[-1], temperature=args.temperature)
        for k in ks:
            winner, _ = majority(voted.traces[:k])
            rows[f"k={k}"]["correct"] += score_answer(winner, question.answer, numeric=question.numeric).correct
            rows[f"k={k}"]["seconds"] += sum(t.elapsed_s for t in voted.traces[:k])
        print(f"{n}/{len(questions)}", flush=True)
    table: list[dict[str, Any]] = []
    for name, row in rows.items():
        low, high = wilson_interval(int(row["correct"]), len(questions))
        accuracy = row["correct"] / len(questions)
        table.append(
            {
                "runs": name,
                "correct": int(row["correct"]),
                "n": len(questions),
                "accuracy": accuracy,
                "interval": [low, high],
                "seconds_per_question": row["seconds"] / len(questions),
            }
        )
    print("| runs | accuracy [95% interval] | correct / n | s/question |")
    print("|---|---|---|---|")
    for t in table:
        print(f"| {t['runs']} | {accuracy_cells(t)} | {t['seconds_per_question']:.1f} |")
    write_results(
        args.out,
        table,
        dataset=dataset.name,
        model=args.model,
        temperature=args.temperature,
        limits=limits.model_dump(),
    )


if __name__ == "__main__":
    main()
