"""Agent throughput against a local llama_cpp.server at several concurrencies, side by side in one run.

    python benchmarks/bench_server.py [--model smollm2-135m] [--concurrency 1,2,4] [--questions 8]

Starts `python -m llama_cpp.server` on 127.0.0.1 (the `server` extra), runs the same arithmetic
questions through it with `Agent.arun` at each concurrency, and reports questions per minute and the
speedup over concurrency 1. llama_cpp.server decodes one request at a time (one model, one lock), so
extra concurrency only overlaps the client's work (prompt rendering, validation, tools) with decoding.
Prints a table and writes JSON to benchmarks/results/server.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from tether import Agent, Limits
from tether.engine.backends.local_server import llama_cpp_server
from tether.engine.backends.openai_server import OpenAIServerBackend
from tether.models import resolve_model
from tether.tools import resolve_tools

RESULTS = Path(__file__).parent / "results" / "server.json"
QUESTIONS = [
    "What is 17 * 23?",
    "How many minutes are in 3.5 hours?",
    "What is 2 ** 16 - 1?",
    "A box holds 12 eggs. How many eggs are in 7 boxes?",
    "What is 15% of 240?",
    "What is 1000 / 8?",
    "A train goes 60 km per hour for 2.5 hours. How far does it go?",
    "What is 9 * 9 + 9?",
    "What is 144 / 12 + 5?",
    "What is 3.5 * 4?",
    "How many seconds are in 2 hours?",
    "What is 250 - 75 * 2?",
]


async def _run_all(agent: Agent, questions: list[str], concurrency: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(question: str) -> float:
        async with gate:
            began = time.perf_counter()
            await agent.arun(question)
            return time.perf_counter() - began

    return await asyncio.gather(*(one(q) for q in questions))


def bench(url: str, questions: list[str], levels: list[int]) -> list[dict[str, Any]]:
    agent = Agent(OpenAIServerBackend(url, timeout_s=300.0), resolve_tools(["calculate"]), limits=Limits(max_steps=6))
    asyncio.run(_run_all(agent, questions[:2], 1))  # warm the server's cache with the shared prompt prefix
    rows = []
    for level in levels:
        began = time.perf_counter()
        latencies = asyncio.run(_run_all(agent, questions, level))
        wall = time.perf_counter() - began
        rows.append(
            {
                "concurrency": level,
                "questions": len(questions),
                "wall_s": wall,
                "questions_per_min": 60 * len(questions) / wall,
                "mean_latency_s": sum(latencies) / len(latencies),
            }
        )
    base = rows[0]["questions_per_min"]
    for row in rows:
        row["speedup"] = row["questions_per_min"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    levels = [int(n) for n in args.concurrency.split(",")]
    with llama_cpp_server(resolve_model(args.model), threads=args.threads) as url:
        rows = bench(url, QUESTIONS[: args.questions], levels)
    print(f"\n{'concurrency':>11}{'questions':>10}{'wall s':>9}{'q/min':>8}{'mean latency s':>16}{'speedup':>9}")
    for r in rows:
        print(
            f"{r['concurrency']:>11}{r['questions']:>10}{r['wall_s']:>9.1f}{r['questions_per_min']:>8.1f}"
            f"{r['mean_latency_s']:>16.1f}{r['speedup']:>9.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": args.model,
                "threads": args.threads,
                "cpus": os.cpu_count(),
                "rows": rows,
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
