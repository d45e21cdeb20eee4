"""The Berkeley Function-Calling Leaderboard as a `tether eval` question set: its function schemas
as typed tools, and the one call each question is scored on (its data: tether.evaluation.bfcl_data).

Schemas: BFCL writes parameters with its own type names; `json_schema` converts them as BFCL's
`_cast_to_openai_type` does with GORILLA_TO_OPENAPI (`dict` -> object, `float` -> number, `tuple` ->
array, `any` -> string, a missing or unknown type -> string), keeping enums, defaults and bounds,
leaving out BFCL's non-standard `optional` and its OpenAPI-only `format: float`, and closing every
object that lists its properties (`additionalProperties: false`): BFCL's checker counts an unknown
parameter as wrong, and the derived grammar writes only the listed keys.

Scoring: the run's first step is the call (its first `command: input` line, parsed from the raw text
in both modes, so the grammar is not the judge of the free mode's text): the command must name one of
the question's functions, its input must be a JSON object (parsed with json, never evaluated) that
validates against that function's schema, and BFCL's AST checker (tether.evaluation.bfcl_checker)
must accept it. A call that fails the first two is wrong and counted as invalid.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from tether.engine.controller import Agent
from tether.engine.events import ObservationMade, RunFinished
from tether.engine.protocol import StopReason, Trace
from tether.engine.tool import Tool, safe_tool_name
from tether.errors import ToolInputError
from tether.evaluation.bfcl_checker import CallScore, check_call
from tether.text import clean_text, one_line

__all__ = [
    "RECORDED",
    "bfcl_tools",
    "describe",
    "first_action",
    "first_step_trace",
    "json_schema",
    "score_call",
    "tool_names",
]

RECORDED = "recorded"  # every BFCL tool's observation: the call is what is scored, not a result
DESCRIPTION_LIMIT = 1200  # characters of a tool's one-line description in the prompt

# BFCL's GORILLA_TO_OPENAPI (bfcl_eval/constants/type_mappings.py), the Python and Java/JS names alike
_TYPES = {
    "integer": "integer", "number": "number", "float": "number", "string": "string", "boolean": "boolean",
    "bool": "boolean", "array": "array", "list": "array", "dict": "object", "object": "object",
    "tuple": "array", "any": "string", "byte": "integer", "short": "integer", "long": "integer",
    "double": "number", "char": "string", "ArrayList": "array", "Array": "array", "HashMap": "object",
    "Hashtable": "object", "Queue": "array", "Stack": "array", "Any": "string", "String": "string",
    "Bigint": "integer",
}  # fmt: skip
_KEPT = (
    "description", "enum", "default", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minItems", "maxItems", "minLength", "maxLength", "pattern",
)  # fmt: skip
_ACTION = re.compile(r"\s*([^\s:]+)\s*:\s?(.*)")  # any word before a colon: `<command>: ...` is a wrong command


def json_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function's parameters as JSON Schema (BFCL's own conversion; see the module docstring)."""
    schema = _convert(parameters)
    schema["type"] = "object"  # as BFCL's convert_to_tool sets it, whatever the file says
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    schema["additionalProperties"] = False
    return schema


def _convert(node: dict[str, Any]) -> dict[str, Any]:
    declared = node.get("type")
    kind = _TYPES.get(declared, "string") if isinstance(declared, str) else "string"
    out: dict[str, Any] = {"type": kind, **{k: node[k] for k in _KEPT if k in node}}
    if out.get("format") == "float":
        del out["format"]
    properties = node.get("properties")
    if kind == "object" and isinstance(properties, dict) and properties:
        out["properties"] = {k: _convert(v if isinstance(v, dict) else {}) for k, v in properties.items()}
        out["required"] = [r for r in node.get("required", []) if r in properties]
        out["additionalProperties"] = False
    items = node.get("items")
    if kind == "array" and isinstance(items, dict):
        out["items"] = _convert(items)
    return out


def tool_names(functions: Sequence[str]) -> dict[str, str]:
    """A tool name for each BFCL function name, in order, mapping back to it: the name itself where it
    is a valid tool name (`math.factorial`), else `safe_tool_name`'s; a second function that would
    get a name already given gets `_2` (`_3`, ...) after it."""
    names: dict[str, str] = {}
    for function in functions:
        base = safe_tool_name(function)
        name, n = base, 2
        while name.casefold() in {k.casefold() for k in names}:
            name, n = f"{base[:60]}_{n}", n + 1
        names[name] = function
    return names


def describe(function: dict[str, Any]) -> tuple[str, str]:
    """The function's description and its arguments in BFCL's own type names (`float`, `dict`,
    `tuple of ...`), each on one line: the prompt's tool list shows `<description> Arguments: <arguments>.`"""
    parameters = function["parameters"]
    required = set(parameters.get("required", []))
    args = []
    for name, spec in (parameters.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type", "string")
        if kind in ("array", "tuple") and isinstance(spec.get("items"), dict):
            kind = f"{kind} of {spec['items'].get('type', 'string')}"
        notes = [kind, "required" if name in required else "optional"]
        if "enum" in spec:
            notes.append("one of " + ", ".join(map(str, spec["enum"])))
        args.append(f"{name} ({', '.join(notes)}): {spec.get('description', '')}".rstrip(": "))
    text = str(function.get("description", "")).strip() or function["name"]
    return one_line(text, DESCRIPTION_LIMIT), one_line("; ".join(args), DESCRIPTION_LIMIT)


def _tool(name: str, function: dict[str, Any]) -> Tool:
    description, arguments = describe(function)
    schema = json_schema(function["parameters"])
    return Tool.from_schema(name, description, schema, lambda _args: RECORDED, arguments=arguments)


def bfcl_tools(functions: Sequence[dict[str, Any]]) -> tuple[list[Tool], dict[str, str]]:
    """The question's functions as typed tools whose input is one JSON object (their schema's
    grammar), each returning RECORDED; and the map from tool name back to BFCL function name."""
    names = tool_names([f["name"] for f in functions])
    tools = [_tool(name, f) for name, f in zip(names, functions, strict=True)]
    return tools, names


def first_step_trace(agent: Agent, question: str) -> Trace:
    """The agent's run stopped after its first step, which is the call BFCL scores.

    Why one step: BFCL scores one call and these tools only record it, so any later step would cost
    a decode (tens of seconds for a 1.5B model on a CPU) and change nothing. The agent's step limit is
    2, so its first step is its tools-only step (`Limits.act_first`: in constrained mode a call, never
    an early `answer:`; every simple and multiple question has a right call). The run is left at
    its first ObservationMade and recorded with stop reason `step_limit`; a run that ended sooner
    (time or context limit, a server failure, a free-mode `answer:`) keeps its own trace."""
    started = time.monotonic()
    events = agent.iter_run(question)
    close = getattr(events, "close", None)
    try:
        for event in events:
            if isinstance(event, RunFinished):
                return event.trace
            if isinstance(event, ObservationMade):
                return Trace(
                    question=clean_text(question),
                    model=agent.backend.name,
                    mode=agent.mode,
                    steps=[event.step],
                    stop_reason=StopReason.STEP_LIMIT,
                    elapsed_s=time.monotonic() - started,
                )
    finally:
        if close is not None:
            close()
    raise AssertionError("iter_run ended without RunFinished")  # pragma: no cover


def first_action(text: str) -> tuple[str, str] | None:
    """The first `command: input` line of a step's text that is not its Thought line, or None. The
    command is whatever word comes before the colon, so a line that echoes the prompt's template
    (`<command>: math.factorial: {...}`) is a call of an unknown function, as the validator reads it."""
    for line in text.splitlines():
        found = _ACTION.fullmatch(line)
        if found and found.group(1).lower() != "thought":
            return found.group(1), found.group(2)
    return None


def score_call(
    functions: Sequence[dict[str, Any]],
    ground_truth: dict[str, dict[str, list[Any]]],
    tools: Sequence[Tool],
    names: dict[str, str],
    trace: Trace,
) -> CallScore:
    """The run's first call, judged: parsed as JSON, validated by its tool (the schema's own
    validator, as in the run), then BFCL's AST check. `functions` are BFCL's descriptions, `tools`
    the run's, `names` maps tool names back to BFCL's; the command may be either name (a free-mode
    model may write `math.factorial` for `math_factorial`)."""
    action = first_action(trace.steps[0].raw_text) if trace.steps else None
    if action is None or action[0] == "answer":
        return CallScore(status="no_call")
    command, text = action
    if trace.steps[0].truncated:  # the budget ended the step mid-call: not a call the model finished
        return CallScore(status="cut", function=names.get(command, command), error="cut by the step's token budget")
    by_function = {names[t.name]: t for t in tools}
    function = names.get(command, command)
    if function not in by_function:
        return CallScore(status="unknown_function", function=command)
    try:
        args = json.loads(text.strip())
    except (ValueError, RecursionError):
        return CallScore(status="not_json", function=function)
    if not isinstance(args, dict):
        return CallScore(status="schema_invalid", function=function, error="the input is not a JSON object")
    try:
        by_function[function].validate_input(text.strip())
    except ToolInputError as exc:
        return CallScore(status="schema_invalid", function=function, arguments=args, error=one_line(str(exc), 300))
    check = check_call(functions, ground_truth, function, args)
    return CallScore(
        status="valid",
        function=function,
        arguments=args,
        correct=check.valid,
        error=check.error,
        error_type=check.error_type,
    )
