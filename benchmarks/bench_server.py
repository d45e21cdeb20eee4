"""Agent throughput through llama.cpp's llama-server and llama_cpp.server, side by side in one run.

    flock /tmp/tether-model.lock python benchmarks/bench_server.py \\
        [--models smollm2-135m,qwen2.5-coder-0.5b] [--concurrency 1,2,4,8] [--questions 12]

For each model: llama-server (built by `tether server build`) started afresh at each concurrency N
with `--parallel N` (N slots, continuous batching, per-slot prompt cache), then `python -m
llama_cpp.server` (one request at a time), both through tether.engine.backends.local_server; the
same arithmetic questions run with `Agent.arun`, N at a time. Reported per row: questions per
minute, mean latency, the speedup over concurrency 1 on the same server, and the prompt tokens the
server evaluated per step (the rest came from its cache), next to the same questions run in-process
(LlamaCppBackend, which keeps the previous step's KV cache); for llama-server also its raw decode rate
at N slots (plain 48-token requests, N at once), the ceiling any client can reach. llama_cpp.server
does not report cached tokens, so its "evaluated" column is the whole prompt. Prints a table and writes JSON to
benchmarks/results/server.json. Run it alone: two model processes on 2 cores slow each other ~10x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tether import Agent, Limits, Trace
from tether import llama_server as builds
from tether.engine.backends.local_server import llama_cpp_server, llama_server
from tether.engine.backends.openai_server import OpenAIServerBackend
from tether.models import load_backend, resolve_model
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
WARM_UP = [f"What is {n} * {n + 1}?" for n in range(11, 19)]  # not among QUESTIONS: no answer is cached
LIMITS = Limits(max_steps=6, time_limit_s=3600.0)
SERVERS = ("llama-server", "llama_cpp.server")


def _agent(backend: Any) -> Agent:
    return Agent(backend, resolve_tools(["calculate"]), limits=LIMITS)


async def _run_all(agent: Agent, questions: list[str], concurrency: int) -> list[tuple[Trace, float]]:
    # Agent.arun runs in the loop's default executor: min(32, CPUs + 4) threads, 6 here, fewer than 8
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=concurrency))
    gate = asyncio.Semaphore(concurrency)

    async def one(question: str) -> tuple[Trace, float]:
        async with gate:
            began = time.perf_counter()
            trace = await agent.arun(question)
            return trace, time.perf_counter() - began

    return await asyncio.gather(*(one(q) for q in questions))


def _per_step(traces: list[Trace]) -> dict[str, float]:
    steps = [s for t in traces for s in t.steps]
    later = [s for t in traces for s in t.steps[1:]]  # the first step of a run shares only the instructions
    n = max(1, len(steps))
    return {
        "steps": len(steps),
        "prompt_tokens_per_step": sum(s.tokens.prompt for s in steps) / n,
        "evaluated_per_step": sum(s.tokens.prompt_evaluated for s in steps) / n,
        "evaluated_per_later_step": sum(s.tokens.prompt_evaluated for s in later) / max(1, len(later)),
    }


def measure(url: str, questions: list[str], level: int, slots: int | None) -> dict[str, Any]:
    agent = _agent(OpenAIServerBackend(url, timeout_s=3600.0, slots=slots))
    # steady state: every slot has the instructions cached, as on a server that has been up a while
    # (cold, each of the first N questions evaluates its whole ~370-token prompt)
    asyncio.run(_run_all(agent, WARM_UP[:level], level))
    began = time.perf_counter()
    done = asyncio.run(_run_all(agent, questions, level))
    wall = time.perf_counter() - began
    traces = [trace for trace, _ in done]
    return {
        "concurrency": level,
        "questions": len(questions),
        "wall_s": wall,
        "questions_per_min": 60 * len(questions) / wall,
        "mean_latency_s": sum(latency for _, latency in done) / len(done),
        "answers": [t.answer for t in traces],
        **_per_step(traces),
    }


def decode_rate(url: str, questions: list[str], level: int) -> float:
    """The server's own ceiling: tokens per second decoded with `level` plain requests at once (48 tokens
    each, no grammar, no agent), over 8 requests in all."""

    def one(question: str) -> int:
        body: dict[str, Any] = {"prompt": f"Question: {question}\nAnswer:", "max_tokens": 48, "temperature": 0.0}
        body["ignore_eos"] = True  # always 48 tokens
        reply = requests.post(f"{url}/v1/completions", json=body, timeout=3600)
        count: int = reply.json()["timings"]["predicted_n"]
        return count

    one(questions[0])
    began = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        tokens = sum(pool.map(one, (questions * 8)[: max(8, level)]))
    return tokens / (time.perf_counter() - began)


@contextmanager
def _serving(server: str, model: Path, level: int, threads: int, log: Path) -> Iterator[str]:
    if server == "llama-server":
        with llama_server(builds.binary(), model, parallel=level, threads=threads, log=log) as running:
            yield running.url
    else:
        with llama_cpp_server(model, threads=threads, log=log) as url:
            yield url


def bench_model(name: str, questions: list[str], levels: list[int], threads: int, servers: list[str]) -> dict[str, Any]:
    model = resolve_model(name)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as logs:
        for server in servers:
            for level in levels:
                log = Path(logs) / f"{server}-{level}.log"
                with _serving(server, model, level, threads, log) as url:
                    slots = level if server == "llama-server" else None  # each run keeps its slot
                    row = {"model": name, "server": server, **measure(url, questions, level, slots)}
                    if server == "llama-server":
                        row["decode_tokens_per_s"] = decode_rate(url, questions, level)
                rows.append(row)
                print(_line(row), flush=True)
    for row in rows:
        base = next(r for r in rows if r["server"] == row["server"] and r["concurrency"] == levels[0])
        row["speedup"] = row["questions_per_min"] / base["questions_per_min"]
    backend = load_backend(name)
    began = time.perf_counter()
    traces = [_agent(backend).run(q) for q in questions]
    in_process = {"questions_per_min": 60 * len(questions) / (time.perf_counter() - began), **_per_step(traces)}
    del backend
    return {"rows": rows, "in_process": in_process}


HEADER = (
    f"{'model':<20}{'server':<18}{'conc':>5}{'q/min':>8}{'latency s':>10}{'speedup':>9}{'eval tok/step':>14}"
    f"{'decode tok/s':>13}"
)


def _line(r: dict[str, Any]) -> str:
    speedup = f"{r['speedup']:>9.2f}" if "speedup" in r else f"{'':>9}"
    return (
        f"{r['model']:<20}{r['server']:<18}{r['concurrency']:>5}{r['questions_per_min']:>8.1f}"
        f"{r['mean_latency_s']:>10.1f}{speedup}{r['evaluated_per_step']:>14.1f}"
        + (f"{r['decode_tokens_per_s']:>13.0f}" if "decode_tokens_per_s" in r else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    levels = [int(n) for n in args.concurrency.split(",")]
    questions = QUESTIONS[: args.questions]
    print(HEADER, flush=True)
    servers = args.servers.split(",")
    results = {name: bench_model(name, questions, levels, args.threads, servers) for name in args.models.split(",")}
    print(f"\n{HEADER}")
    for name, result in results.items():
        for row in result["rows"]:
            print(_line(row))
        ip = result["in_process"]
        print(
            f"{name:<20}{'in-process':<18}{1:>5}{ip['questions_per_min']:>8.1f}{'':>19}{ip['evaluated_per_step']:>14.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "models": results,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "llama_cpp_python": builds.cache_dir().name,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
