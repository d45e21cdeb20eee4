"""Benchmark of the offline knowledge base: build time for 100k paragraphs and query latency.

    python benchmarks/bench_corpus.py [--paragraphs 100000] [--queries 200] [--seed 0]

Generates deterministic synthetic paragraphs (titles and sentences whose words are drawn, with
their frequencies, from the HotpotQA files in /work/shared/data when present, else from a
synthetic Zipf vocabulary) into a temporary JSONL file, builds a knowledge base from it with
`tether.corpus.build_corpus`, then times `Corpus.search` and the corpus-backed `wikipedia` tool
on three kinds of query: a sentence of some paragraph, the title of some paragraph, and 2-4
random non-stopwords; and the corpus retriever (`--read 5`: a search, the names in the 2 best
paragraphs, a search among them) on the sentences, as a question would be. Prints a table and
writes the numbers to benchmarks/results/corpus.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

from tether.corpus import STOPWORDS, Corpus, build_corpus, split_sentences
from tether.tools.corpus_tool import make_corpus_retriever, make_corpus_tools

DATA = Path("/work/shared/data")
HOTPOT_FILES = ("hotpotqa_dev_distractor_first53.json", "hotpotqa_dev_distractor_sample150.json")
RESULTS = Path(__file__).resolve().parent / "results" / "corpus.json"


def vocabulary(rng: random.Random) -> tuple[str, list[str], list[float]]:
    """(where the words came from, words, cumulative weights)."""
    counts: Counter[str] = Counter()
    for name in HOTPOT_FILES:
        path = DATA / name
        if not path.is_file():
            continue
        for question in json.loads(path.read_text("utf-8")):
            for _title, sentences in question["context"]:
                for sentence in sentences:
                    counts.update(w.strip(".,;:!?\"'()[]") for w in sentence.split())
    counts.pop("", None)
    if len(counts) >= 1000:
        words, weights = zip(*counts.most_common(), strict=True)
        return "hotpotqa", list(words), list(accumulate(map(float, weights)))
    letters = "abcdefghijklmnopqrstuvwxyz"
    synthetic = list(dict.fromkeys("".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(30000)))
    return "synthetic", synthetic, list(accumulate(1.0 / rank for rank in range(1, len(synthetic) + 1)))


def generate(path: Path, n: int, rng: random.Random) -> tuple[str, list[dict[str, str]]]:
    """Write `n` paragraphs as JSONL; return the vocabulary source and a sample of 2000 of them."""
    source, words, cum = vocabulary(rng)
    capitalised = [w for w in words[:20000] if w[:1].isupper()] or [w.title() for w in words[:5000]]
    sample: list[dict[str, str]] = []
    sample_every = max(1, n // 2000)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            title = " ".join(rng.choices(capitalised, k=rng.randint(1, 3)))
            if rng.random() < 0.3:
                title += f" ({rng.choice(('film', 'album', 'band', 'novel', 'river', 'politician'))})"
            sentences = []
            for _ in range(rng.randint(2, 6)):
                body = rng.choices(words, cum_weights=cum, k=rng.randint(8, 24))
                sentences.append(" ".join([title, *body[1:]] if rng.random() < 0.3 else body).capitalize() + ".")
            doc = {"title": title, "text": " ".join(sentences)}
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            if i % sample_every == 0:
                sample.append(doc)
    return source, sample


def queries(sample: list[dict[str, str]], n: int, rng: random.Random) -> dict[str, list[str]]:
    # keywords as a model would type them: no stopwords (a stopword-only query such as "of the"
    # matches almost every paragraph and is the slow case; see tether.corpus)
    vocab = [w for doc in sample for w in doc["text"].split() if w.strip(".,").casefold() not in STOPWORDS]
    return {
        "sentence": [rng.choice(split_sentences(rng.choice(sample)["text"])) for _ in range(n)],
        "title": [rng.choice(sample)["title"] for _ in range(n)],
        "words": [" ".join(rng.choices(vocab, k=rng.randint(2, 4))) for _ in range(n)],
    }


def timed(call: Callable[[str], object], items: list[str]) -> dict[str, float]:
    for q in items[:5]:  # warm the page cache
        call(q)
    ms = []
    for q in items:
        started = time.perf_counter()
        call(q)
        ms.append((time.perf_counter() - started) * 1000)
    ms.sort()
    return {
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * len(ms)) - 1)],
        "max_ms": ms[-1],
        "n": len(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--paragraphs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="per query kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="bench_corpus_") as tmp:
        jsonl, kb_path = Path(tmp) / "paragraphs.jsonl", Path(tmp) / "kb.sqlite"
        started = time.perf_counter()
        vocab_source, sample = generate(jsonl, args.paragraphs, rng)
        generate_s = time.perf_counter() - started
        stats = build_corpus(jsonl, kb_path)
        size_mb = kb_path.stat().st_size / 2**20
        source_mb = jsonl.stat().st_size / 2**20
        kb = Corpus(kb_path)
        wikipedia, _lookup = make_corpus_tools(kb)
        qs = queries(sample, args.queries, rng)
        latency = {f"search/{kind}": timed(lambda q: kb.search(q, k=5), items) for kind, items in qs.items()}
        latency |= {f"wikipedia/{kind}": timed(wikipedia, items) for kind, items in qs.items()}
        retrieve = make_corpus_retriever(kb, k=5)  # what --read 5 asks for each question
        latency["retriever/sentence"] = timed(retrieve, qs["sentence"])
        all_search = timed(lambda q: kb.search(q, k=5), [q for items in qs.values() for q in items])
        kb.close()

    results = {
        "paragraphs": stats.documents,
        "duplicates": stats.duplicates,
        "vocabulary": vocab_source,
        "seed": args.seed,
        "generate_s": round(generate_s, 3),
        "build_s": round(stats.seconds, 3),
        "build_paragraphs_per_s": round(stats.documents / stats.seconds),
        "source_mb": round(source_mb, 1),
        "kb_mb": round(size_mb, 1),
        "search_all": {k: round(v, 3) for k, v in all_search.items()},
        "latency": {name: {k: round(v, 3) for k, v in row.items()} for name, row in latency.items()},
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "processor": platform.machine(),
    }
    print(f"built {stats.documents} paragraphs ({source_mb:.1f} MiB JSONL, vocabulary: {vocab_source})")
    print(f"  in {stats.seconds:.2f} s ({results['build_paragraphs_per_s']} paragraphs/s) -> {size_mb:.1f} MiB")
    print(f"{'query':<22}{'n':>5}{'median ms':>12}{'p95 ms':>10}{'max ms':>10}")
    for name, row in [*latency.items(), ("search/all", all_search)]:
        print(f"{name:<22}{row['n']:>5.0f}{row['median_ms']:>12.2f}{row['p95_ms']:>10.2f}{row['max_ms']:>10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
