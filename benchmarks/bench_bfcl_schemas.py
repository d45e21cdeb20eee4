"""How many of BFCL's real function schemas tether registers as typed tools, and why it refuses the rest.

    python benchmarks/bench_bfcl_schemas.py [--categories simple_python multiple] [--out FILE]

Reads the categories from the bfcl-eval wheel (scripts/bootstrap fetches it), converts every distinct
function definition's parameters to JSON Schema as BFCL does (tether.evaluation.bfcl.json_schema) and
registers it with `Tool.from_schema` (grammar derivation, llama.cpp's own grammar check where
llama-cpp-python is installed, bounded nesting, the derived example). Refusals are grouped by reason:
the error with its field path and quoted names left out. Also counts the questions all of whose
functions register (those `tether eval` can ask). Prints a table and writes the numbers to
benchmarks/results/bfcl_schemas.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tether.engine.tool import Tool
from tether.errors import ToolRegistrationError
from tether.evaluation.bfcl import json_schema
from tether.evaluation.bfcl_data import BFCL_VERSION, open_category, read_items

RESULTS = Path(__file__).resolve().parent / "results" / "bfcl_schemas.json"


def reason(error: str) -> str:
    """The kind of refusal: the message without the tool name, field path and quoted values."""
    text = re.sub(r"^tool '[^']*': ", "", error)
    text = re.sub(r"^[\w.\[\]-]+: ", "", text)  # the field path
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "…", text)


def register(function: dict[str, Any]) -> str | None:
    """None if the function's schema registers as a tool, else why not."""
    try:
        Tool.from_schema("f", "A function.", json_schema(function["parameters"]), lambda args: args)
    except ToolRegistrationError as exc:
        return str(exc)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="+", default=["simple_python", "multiple"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    definitions: dict[str, dict[str, Any]] = {}
    questions: dict[str, list[list[str]]] = {}
    for category in args.categories:
        path, text, answers = open_category(category)
        items = read_items(path, text, answers)
        questions[category] = [[json.dumps(f, sort_keys=True) for f in item.functions] for item in items]
        for item in items:
            for function in item.functions:
                definitions.setdefault(json.dumps(function, sort_keys=True), function)
    refused = {key: why for key, f in definitions.items() if (why := register(f)) is not None}
    reasons = Counter(reason(why) for why in refused.values())
    askable = {c: sum(all(k not in refused for k in q) for q in qs) for c, qs in questions.items()}
    result = {
        "bfcl_eval": BFCL_VERSION,
        "categories": args.categories,
        "functions": len(definitions),
        "supported": len(definitions) - len(refused),
        "supported_rate": (len(definitions) - len(refused)) / len(definitions),
        "refusals_by_reason": dict(reasons.most_common()),
        "refused": {json.loads(k)["name"]: why for k, why in refused.items()},
        "questions": {c: len(qs) for c, qs in questions.items()},
        "questions_askable": askable,
        "seconds": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
    }
    print(f"BFCL {BFCL_VERSION} {' + '.join(args.categories)}: {len(definitions)} distinct function definitions")
    print()
    print("| | count | share |\n|---|---|---|")
    print(f"| registered | {result['supported']} | {result['supported_rate']:.1%} |")
    for why, n in reasons.most_common():
        print(f"| refused: {why} | {n} | {n / len(definitions):.1%} |")
    print()
    for category, n in askable.items():
        print(f"{category}: {n} of {len(questions[category])} questions have every function registered")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
