"""Grammar cost, measured side by side in one process: per-token decode time unconstrained (llama-cpp-
python's own loop, and tether's loop with no grammar), with llama-cpp-python's built-in grammar sampler,
and with tether's sampler; full-mask fallbacks per step; KV reuse per agent step; and whole agent runs
on the built-in path vs tether's. Each path's spread (min/median/max over repeats of the same prompts)
goes into the JSON with the machine's core count. Prints a table and writes JSON.

    python benchmarks/bench_sampler.py [--models smollm2-135m,qwen2.5-coder-1.5b] [--repeats 3]

Run it alone: llama.cpp spin-waits, so another model process on the machine distorts every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from tether import Agent, Limits, LlamaCppBackend, Restriction, Sampling, StreamStats
from tether.engine.prompt import render_prompt
from tether.errors import ModelFileError
from tether.models import resolve_model
from tether.tools import resolve_tools

PROMPTS = [
    "What is 17 * 23?",
    "A train travels 120 km in 1.5 hours. What is its average speed?",
    "What is the capital of Japan?",
    "How many seconds are in a week?",
    "Who wrote Pride and Prejudice?",
    "What is 15% of 80?",
]
AGENT_QUESTIONS = PROMPTS[:4]
RESULTS = Path(__file__).parent / "results" / "sampler.json"


def _model_paths(names: list[str]) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name in names:
        try:
            paths[name] = resolve_model(name)
        except ModelFileError as exc:
            print(f"skipping {name}: {exc}")
    return paths


def _decode(backend: LlamaCppBackend, prompt: str, grammar: str | None, max_tokens: int) -> tuple[float, StreamStats]:
    """Decode seconds after the first token, and the counts (the prompt is cached by a warm-up, so this is
    decode only). A constrained step is read as the controller reads it, up to the end of its action line."""
    for _attempt in range(2):  # the first call evaluates the prompt into the KV cache
        stats = StreamStats()
        stream = backend.stream(prompt, grammar=grammar, max_tokens=max_tokens, sampling=Sampling(), stats=stats)
        text = next(stream, "")
        began = time.perf_counter()
        for piece in stream:
            text += piece
            if grammar is not None and text.count("\n") >= 2:
                break  # the step is complete: the controller stops reading here, so the end token is never sampled
        elapsed = time.perf_counter() - began
        getattr(stream, "close", lambda: None)()  # a generator: ends the decode and frees its checker
    return elapsed, stats


PATHS = ("unconstrained", "tether_unconstrained", "builtin_grammar", "tether_grammar")


def bench_model(name: str, path: Path, repeats: int) -> dict[str, Any]:
    fast = LlamaCppBackend(path, sampler="fast")
    builtin = LlamaCppBackend(path, sampler="builtin")
    tools = resolve_tools(["calculate"])
    grammar = Agent(fast, tools).grammars[Restriction.ALL].gbnf
    prompts = [render_prompt(fast, question, [], tools) for question in PROMPTS]
    per: dict[str, list[float]] = {k: [] for k in PATHS}  # ms per token, one value per repeat
    full_masks = sampled = 0
    for _ in range(repeats):
        seconds = dict.fromkeys(PATHS, 0.0)
        tokens = dict.fromkeys(PATHS, 0)  # each path's own count: an unconstrained one may stop early at EOS
        for prompt in prompts:  # the paths interleave per prompt, so load drifts hit all of them alike
            decoded = {"tether_grammar": _decode(fast, prompt, grammar, 300)}
            n = decoded["tether_grammar"][1].sampled
            full_masks, sampled = full_masks + decoded["tether_grammar"][1].full_masks, sampled + n
            decoded["builtin_grammar"] = _decode(builtin, prompt, grammar, 300)
            decoded["unconstrained"] = _decode(builtin, prompt, None, n)
            decoded["tether_unconstrained"] = _decode(fast, prompt, None, n)
            for k, (elapsed, stats) in decoded.items():
                seconds[k] += elapsed
                tokens[k] += stats.sampled - 1  # the timed part starts after the first token
        for k in PATHS:
            per[k].append(1000 * seconds[k] / max(1, tokens[k]))
    base = statistics.median(per["unconstrained"])
    decode = {
        k: {
            "median_ms_per_token": statistics.median(v),
            "min_ms_per_token": min(v),
            "max_ms_per_token": max(v),
            "ratio_to_unconstrained": statistics.median(v) / base,
            "ratios_per_repeat": [x / u for x, u in zip(v, per["unconstrained"], strict=True)],
        }
        for k, v in per.items()
    }
    steps_decoded = repeats * len(prompts)
    runs: dict[str, Any] = {}
    for label, backend in (("builtin", builtin), ("tether", fast)):
        agent = Agent(backend, tools, limits=Limits(max_steps=6))
        latencies, steps = [], []
        for _ in range(repeats):
            for question in AGENT_QUESTIONS:
                began = time.perf_counter()
                trace = agent.run(question)
                latencies.append(time.perf_counter() - began)
                steps.extend(trace.steps)
        later = [s for s in steps if s.index > 0]
        runs[label] = {
            "median_run_s": statistics.median(latencies),
            "full_masks_per_step": sum(s.tokens.full_masks for s in steps) / max(1, len(steps)),
            "total_s": sum(latencies),
            "steps": len(steps),
            "sampled_per_step": statistics.mean(s.tokens.sampled for s in steps),
            "forced_per_step": statistics.mean(s.tokens.forced for s in steps),
            "prompt_tokens_per_later_step": statistics.mean(s.tokens.prompt for s in later) if later else None,
            "prompt_evaluated_per_later_step": statistics.mean(s.tokens.prompt_evaluated for s in later)
            if later
            else None,
        }
    runs["speedup"] = runs["builtin"]["median_run_s"] / runs["tether"]["median_run_s"]
    return {
        "model": name,
        "decode": decode,
        "decode_full_masks_per_step": full_masks / steps_decoded,
        "decode_sampled_per_step": sampled / steps_decoded,
        "agent_runs": runs,
        "agent_full_masks_per_step": runs["tether"]["full_masks_per_step"],
        "llama_threads": fast.llm.n_threads,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'model':<22}{'path':<22}{'ms/token min/median/max':>26}{'x unconstrained':>17}{'per repeat':>22}")
    for r in results:
        for path, d in r["decode"].items():
            spread = f"{d['min_ms_per_token']:.2f}/{d['median_ms_per_token']:.2f}/{d['max_ms_per_token']:.2f}"
            repeats = " ".join(f"{x:.3f}" for x in d["ratios_per_repeat"])
            print(f"{r['model']:<22}{path:<22}{spread:>26}{d['ratio_to_unconstrained']:>17.3f}{repeats:>22}")
        print(
            f"{r['model']:<22}full masks per step: {r['decode_full_masks_per_step']:.2f} "
            f"(of {r['decode_sampled_per_step']:.1f} sampled tokens); in agent runs "
            f"{r['agent_full_masks_per_step']:.2f}"
        )
    print(
        f"\n{'model':<22}{'agent path':<12}{'median run s':>13}{'sampled/step':>13}{'forced/step':>12}"
        f"{'prompt/step':>12}{'evaluated/step':>15}"
    )
    for r in results:
        for label in ("builtin", "tether"):
            a = r["agent_runs"][label]
            prompt = a["prompt_tokens_per_later_step"] or 0
            evaluated = a["prompt_evaluated_per_later_step"] or 0
            print(
                f"{r['model']:<22}{label:<12}{a['median_run_s']:>13.2f}{a['sampled_per_step']:>13.1f}"
                f"{a['forced_per_step']:>12.1f}{prompt:>12.0f}{evaluated:>15.1f}"
            )
        print(f"{r['model']:<22}agent-run speedup (builtin / tether): {r['agent_runs']['speedup']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = [bench_model(n, p, args.repeats) for n, p in _model_paths(args.models.split(",")).items()]
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu_count": os.cpu_count()}  # each result holds the threads llama.cpp used
    args.out.write_text(json.dumps({"results": results, "repeats": args.repeats, "machine": machine}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
