"""Which way of answering is right most often, and at what cost: the agent, the model's own reasoning
(closed-book), their votes, and reasoning first (`reason_then_act`), all scored on the same runs.

Per question it makes each run once: the agent greedy, a closed-book pass greedy, `--samples`
closed-book passes and one agent run sampled at `--temperature` (seeds 0, 1, ...). Every strategy is
then scored from those runs, so they differ only in how they use them, not in luck. A strategy's cost
is the time of the runs it needs (reasoning first pays for the agent only where the passes disagree).
Runs are kept in a JSONL beside the results, so a killed run resumes. Prints a table and writes JSON.

    python benchmarks/bench_strategies.py GSM8K_OR_SVAMP_FILE [--model qwen2.5-coder-1.5b] [--limit 60]

Run it alone: llama.cpp spin-waits, so another model process on the machine distorts every number.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import accuracy_cells, write_results

from tether import Agent, Limits, Sampling
from tether.engine.protocol import Mode
from tether.engine.vote import agreed, majority_of
from tether.evaluation.datasets import load_dataset
from tether.evaluation.metrics import wilson_interval
from tether.evaluation.runner import answer_type
from tether.evaluation.scoring import score_answer
from tether.models import load_backend
from tether.tools import resolve_tools

RESULTS = Path(__file__).parent / "results" / "strategies.json"

Runs = dict[str, dict[str, Any]]  # run name ("agent", "cb", "cb~0", "agent~0") -> answer, seconds
Strategy = Callable[[Runs], tuple[str | None, list[str]]]  # -> the answer and the runs it used


def strategies(samples: int) -> dict[str, Strategy]:
    passes = ["cb", *(f"cb~{i}" for i in range(samples))]

    def vote(names: list[str]) -> Strategy:
        return lambda runs: (majority_of([runs[n]["answer"] for n in names])[0], names)

    def reason_first(runs: Runs) -> tuple[str | None, list[str]]:  # what reason_then_act(samples=len(passes)) does
        answer = agreed([runs[n]["answer"] for n in passes])
        return (answer, passes) if answer is not None else (runs["agent"]["answer"], [*passes, "agent"])

    return {
        "agent (greedy)": vote(["agent"]),
        "closed-book (greedy)": vote(["cb"]),
        f"closed-book vote of {len(passes)}": vote(passes),
        "agent + closed-book vote (the agent's answer wins a tie)": vote(["agent", *passes]),
        "agent + sampled agent + closed-book vote": vote(["agent", "agent~0", *passes]),
        f"reasoning first ({len(passes)} passes, then the agent)": reason_first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--samples", type=int, default=2, help="sampled closed-book passes beside the greedy one")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    if dataset.tools != ["calculate"]:
        parser.error(f"{args.dataset}: an arithmetic set (GSM8K, SVAMP) is needed; this one needs other tools")
    questions = dataset.questions[: args.limit]
    limits = Limits(max_steps=6, max_step_tokens=256, time_limit_s=60)
    backend = load_backend(args.model)

    def agent(mode: Mode, seed: int | None) -> Agent:
        sampling = Sampling() if seed is None else Sampling(temperature=args.temperature, seed=seed)
        tools = resolve_tools([] if mode is Mode.CLOSED_BOOK else dataset.tools)
        return Agent(backend, tools, limits=limits, mode=mode, sampling=sampling, answer_type=answer_type(dataset))

    plan = {"agent": agent(Mode.CONSTRAINED, None), "cb": agent(Mode.CLOSED_BOOK, None)}
    plan |= {f"cb~{i}": agent(Mode.CLOSED_BOOK, i) for i in range(args.samples)}
    plan["agent~0"] = agent(Mode.CONSTRAINED, 0)
    runs_file = args.out.with_suffix(".runs.jsonl")
    runs_file.parent.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if runs_file.exists():
        for line in runs_file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done[row["id"], row["run"]] = row
    with runs_file.open("a", encoding="utf-8") as sink:
        for n, question in enumerate(questions, 1):
            for name, runner in plan.items():
                if (question.id, name) in done:
                    continue
                began = time.monotonic()
                trace = runner.run(question.question)
                row = {"id": question.id, "run": name, "answer": trace.answer, "seconds": time.monotonic() - began}
                done[question.id, name] = row
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            print(f"{n}/{len(questions)}", flush=True)
    table: list[dict[str, Any]] = []
    for label, strategy in strategies(args.samples).items():
        correct, seconds, runs_used = 0, 0.0, 0
        for question in questions:
            runs = {name: done[question.id, name] for name in plan}
            answer, used = strategy(runs)
            correct += score_answer(answer, question.answer, numeric=question.numeric).correct
            seconds += sum(runs[name]["seconds"] for name in used)
            runs_used += len(used)
        low, high = wilson_interval(correct, len(questions))
        table.append(
            {
                "strategy": label,
                "correct": correct,
                "n": len(questions),
                "accuracy": correct / len(questions),
                "interval": [low, high],
                "runs_per_question": runs_used / len(questions),
                "seconds_per_question": seconds / len(questions),
            }
        )
    print("| strategy | accuracy [95% interval] | correct / n | runs/question | s/question |")
    print("|---|---|---|---|---|")
    for row in table:
        print(
            f"| {row['strategy']} | {accuracy_cells(row)} "
            f"| {row['runs_per_question']:.2f} | {row['seconds_per_question']:.1f} |"
        )
    write_results(
        args.out,
        table,
        dataset=dataset.name,
        model=args.model,
        temperature=args.temperature,
        samples=args.samples,
        limits=limits.model_dump(),
    )


if __name__ == "__main__":
    main()
