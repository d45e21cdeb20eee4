"""BFCL in `tether eval`: schema conversion, tool names, the first call parsed and judged, and whole
runs on the scripted fake model (both modes, invalid calls counted, one step per question), plus the
real `tether eval` on three BFCL questions with SmolLM2 (`model`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_bfcl_data import FUNCTION, bfcl_files
from test_cli import run

from tether import ScriptedBackend
from tether.engine.prompt import tool_list
from tether.engine.protocol import Mode, Step, StopReason, Trace
from tether.errors import ConfigError
from tether.evaluation import EvalConfig, run_eval
from tether.evaluation.bfcl import bfcl_tools, describe, first_action, json_schema, score_call, tool_names
from tether.evaluation.report import calls_table, write_reports
from tether.evaluation.runner import read_records

AREA = {
    "name": "calculate_triangle_area",
    "description": "Calculate the area of a triangle given its base and height.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "The base of the triangle."},
            "height": {"type": "float", "description": "The height of the triangle."},
            "unit": {"type": "string", "enum": ["units", "cm"], "optional": True},
        },
        "required": ["base", "height"],
    },
}
AREA_TRUTH = {"calculate_triangle_area": {"base": [10], "height": [5.0], "unit": ["units", ""]}}


def test_bfcl_types_become_json_schema_as_bfcl_converts_them() -> None:
    parameters = {
        "type": "dict",
        "properties": {
            "x": {"type": "float", "description": "d"},
            "point": {"type": "tuple", "items": {"type": "float"}},
            "data": {"type": "any"},
            "untyped": {"description": "no type"},
            "rows": {"type": "array", "items": {"type": "dict", "properties": {"k": {"type": "integer"}}}},
            "where": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "free": {"type": "dict"},
            "flag": {"type": "boolean", "default": True, "optional": True},
        },
        "required": ["x"],
    }
    schema = json_schema(parameters)
    props = schema["properties"]
    assert schema["type"] == "object" and schema["required"] == ["x"] and schema["additionalProperties"] is False
    assert props["x"] == {"type": "number", "description": "d"}
    assert props["point"] == {"type": "array", "items": {"type": "number"}}
    assert props["data"] == {"type": "string"} and props["untyped"] == {"type": "string", "description": "no type"}
    assert props["rows"]["items"] == {
        "type": "object", "properties": {"k": {"type": "integer"}}, "required": [], "additionalProperties": False,
    }  # fmt: skip
    assert props["where"]["required"] == ["city"] and props["where"]["additionalProperties"] is False
    assert props["free"] == {"type": "object"}  # no properties listed: any object
    assert props["flag"] == {"type": "boolean", "default": True}  # BFCL's `optional` is not JSON Schema
    assert parameters["type"] == "dict"  # the question's own description is left as it was


def test_tool_names_keep_bfcl_names_and_map_back() -> None:
    names = tool_names(["math.factorial", "fetch_DNA_sequence", "get weather", "answer", "get_weather"])
    assert list(names) == ["math.factorial", "fetch_DNA_sequence", "get_weather", "answer_", "get_weather_2"]
    assert list(names.values()) == ["math.factorial", "fetch_DNA_sequence", "get weather", "answer", "get_weather"]


def test_the_prompt_lists_the_arguments_in_bfcl_types_on_one_line() -> None:
    description, arguments = describe(AREA)
    assert description == "Calculate the area of a triangle given its base and height."
    assert "base (integer, required): The base of the triangle." in arguments
    assert "unit (string, optional, one of units, cm)" in arguments and "\n" not in arguments
    [area], _names = bfcl_tools([AREA])
    line = tool_list([area])
    assert line.startswith(f"- calculate_triangle_area: {description} Arguments: {arguments}. Example: ")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('Thought: call it\ncalculate_triangle_area: {"base": 10}\n', ("calculate_triangle_area", '{"base": 10}')),
        ("math.factorial: {}\n", ("math.factorial", "{}")),
        ("Thought: x\nI will call: nothing\nanswer: 5\n", ("answer", "5")),
        ("Thought: x: y\n", None),
        ("Thought: x\n<command>: math.factorial: {}\n", ("<command>", "math.factorial: {}")),
        ("The area: 50\n", None),
        ("calculate_triangle_area(base=10)\n", None),
    ],
)
def test_first_action_is_the_first_command_line(text: str, found: tuple[str, str] | None) -> None:
    assert first_action(text) == found


def judged(text: str, functions: tuple[dict[str, Any], ...] = (AREA, FUNCTION)) -> Any:
    truth = AREA_TRUTH
    tools, names = bfcl_tools(functions)
    trace = Trace(question="q", model="m", mode=Mode.FREE, steps=[Step(index=0, raw_text=text)])
    return score_call(functions, truth, tools, names, trace)


def test_a_right_call_is_valid_and_correct() -> None:
    call = judged('Thought: t\ncalculate_triangle_area: {"base": 10, "height": 5}\n')
    assert (call.status, call.correct, call.function) == ("valid", True, "calculate_triangle_area")
    assert call.arguments == {"base": 10, "height": 5}


def test_a_valid_but_wrong_call_carries_bfcls_error_type() -> None:
    call = judged('Thought: t\ncalculate_triangle_area: {"base": 12, "height": 5}\n')
    assert (call.status, call.correct, call.error_type) == ("valid", False, "value_error:others")
    other = judged('Thought: t\nmath.factorial: {"number": 5}\n')
    assert (other.status, other.error_type) == ("valid", "simple_function_checker:wrong_func_name")


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Thought: t\nanswer: 50\n", "no_call"),
        ("Thought: I should compute the area.\n", "no_call"),
        ('Thought: t\narea: {"base": 10, "height": 5}\n', "unknown_function"),
        ('Thought: t\n<command>: calculate_triangle_area: {"base": 10, "height": 5}\n', "unknown_function"),
        ("Thought: t\ncalculate_triangle_area: base=10, height=5\n", "not_json"),
        ('Thought: t\ncalculate_triangle_area: {"base": 10, "height": 5} done\n', "not_json"),
        ('Thought: t\ncalculate_triangle_area: {"base": "10", "height": 5}\n', "schema_invalid"),
        ('Thought: t\ncalculate_triangle_area: {"base": 10}\n', "schema_invalid"),
        ('Thought: t\ncalculate_triangle_area: {"base": 10, "height": 5, "colour": "red"}\n', "schema_invalid"),
        ('Thought: t\ncalculate_triangle_area: {"base": 10, "height": 5, "unit": "m"}\n', "schema_invalid"),
        ("Thought: t\ncalculate_triangle_area: [10, 5]\n", "schema_invalid"),
    ],
)
def test_invalid_calls_are_wrong_and_say_why(text: str, status: str) -> None:
    call = judged(text)
    assert (call.status, call.valid, call.correct) == (status, False, False)


def test_a_step_the_budget_cut_is_a_cut_call() -> None:
    tools, names = bfcl_tools((AREA,))
    text = 'Thought: t\ncalculate_triangle_area: {"base":10,"height":5000000000'
    trace = Trace(question="q", model="m", mode=Mode.CONSTRAINED, steps=[Step(index=0, raw_text=text, truncated=True)])
    call = score_call((AREA,), AREA_TRUTH, tools, names, trace)
    assert (call.status, call.function, call.valid) == ("cut", "calculate_triangle_area", False)


def test_a_run_without_steps_made_no_call() -> None:
    tools, names = bfcl_tools((AREA,))
    trace = Trace(question="q", model="m", mode=Mode.FREE, stop_reason=StopReason.BACKEND_ERROR)
    assert score_call((AREA,), AREA_TRUTH, tools, names, trace).status == "no_call"


def area_file(tmp_path: Path) -> Path:
    questions = [
        {"id": f"simple_python_{n}", "question": [[{"role": "user", "content": f"Area of a triangle, base {n}?"}]],
         "function": [AREA, FUNCTION]}
        for n in (10, 11, 12)
    ]  # fmt: skip
    answers = [
        {"id": f"simple_python_{n}", "ground_truth": [{"calculate_triangle_area": {"base": [n], "height": [5.0]}}]}
        for n in (10, 11, 12)
    ]
    return bfcl_files(tmp_path / "data", questions, answers)


class Loader:
    """Hands out one scripted backend that plays `outputs` in order, and keeps it for inspection."""

    def __init__(self, outputs: list[str]) -> None:
        self.backend = ScriptedBackend(*outputs)

    def __call__(self, model: str) -> ScriptedBackend:
        return self.backend


def test_a_bfcl_run_scores_each_questions_first_call_in_both_modes(tmp_path: Path) -> None:
    constrained = [
        'Thought: area\ncalculate_triangle_area: {"base":10,"height":5}\n',
        'Thought: area\ncalculate_triangle_area: {"base":11,"height":5.0}\n',
        'Thought: area\ncalculate_triangle_area: {"base":99,"height":5}\n',
    ]
    free = [
        'Thought: area\ncalculate_triangle_area: {"base": 10, "height": 5}\n',
        "Thought: area\ncalculate_triangle_area: base=11, height=5\n",
        "Thought: I know it\nanswer: 30\n",
    ]
    loader = Loader(constrained + free)
    out = tmp_path / "out"
    config = EvalConfig(datasets=(area_file(tmp_path),), out=out)
    summaries = run_eval(config, load_backend=loader)
    assert len(loader.backend.prompts) == 6  # one step per question: the run stops after its call
    assert "calculate_triangle_area: Calculate the area of a triangle" in loader.backend.prompts[0]
    assert "Arguments: base (integer, required)" in loader.backend.prompts[0]
    grammar = loader.backend.grammars[0]
    assert grammar is not None and "base" in grammar
    (action,) = [line for line in grammar.splitlines() if line.startswith("action ::=")]
    assert "calculate_triangle_area" in action and "answer" not in action  # a call, never an early answer
    assert loader.backend.grammars[3] is None  # free mode: no grammar
    by_mode = {s.mode: s for s in summaries}
    con, fre = by_mode["constrained"], by_mode["free"]
    assert (con.correct, con.valid_calls, con.invalid_calls) == (2, 3, 0)
    assert (fre.correct, fre.valid_calls, fre.invalid_calls) == (1, 1, 2)
    assert fre.call_outcomes == {
        "valid": 1, "no_call": 1, "unknown_function": 0, "not_json": 1, "schema_invalid": 0, "cut": 0,
        "schema_refused": 0,
    }  # fmt: skip
    assert con.accuracy_low < 2 / 3 < con.accuracy_high
    assert con.stop_reasons["step_limit"] == 3 and con.mean_steps == 1.0
    records = read_records(out / "BFCL_v4_simple_python" / "smollm2-135m.constrained.jsonl")
    record = records["simple_python_12"]
    assert record.call is not None and record.call.error_type == "value_error:others"
    assert json.loads(record.gold) == {"calculate_triangle_area": {"base": [12], "height": [5.0]}}
    table = calls_table(summaries)
    assert (
        "| BFCL_v4_simple_python | smollm2-135m | free | 3 | 33.3% [" in table
        and "| 33.3% | 2 | 1 / 0 / 1 / 0 / 0 / 0 |" in table
    )
    write_reports(summaries, out)
    assert "## Function calls (BFCL)" in (out / "report.md").read_text(encoding="utf-8")


def test_a_refused_schema_leaves_its_question_unasked(tmp_path: Path) -> None:
    lookaround = {
        "name": "find",
        "description": "Find a thing.",
        "parameters": {"type": "dict", "properties": {"q": {"type": "string", "pattern": "(?=a)b"}}, "required": []},
    }
    path = bfcl_files(
        tmp_path / "data",
        [{"id": "simple_python_1", "question": [[{"role": "user", "content": "Find b."}]], "function": [lookaround]}],
        [{"id": "simple_python_1", "ground_truth": [{"find": {"q": ["b"]}}]}],
    )
    loader = Loader([])
    (summary,) = run_eval(EvalConfig(datasets=(path,), out=tmp_path / "out", modes=(Mode.FREE,)), load_backend=loader)
    assert loader.backend.prompts == []
    assert summary.call_outcomes["schema_refused"] == 1 and summary.correct == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"modes": (Mode.CLOSED_BOOK,)}, "closed-book runs make none"),
        ({"vote": 3}, "--vote and --reason-first vote on answers"),
        ({"reason_first": 3}, "--vote and --reason-first vote on answers"),
    ],
)
def test_bfcl_refuses_closed_book_and_votes(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    config = EvalConfig(datasets=(area_file(tmp_path),), out=tmp_path / "out", **changes)
    with pytest.raises(ConfigError, match=message):
        run_eval(config, load_backend=Loader([]))


@pytest.mark.model
def test_tether_eval_on_three_bfcl_questions_with_smollm2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The real model through the CLI: every constrained call parses and validates against its schema."""
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "eval", str(area_file(tmp_path)), "--out", str(out), "--max-step-tokens", "96")
    assert code == 0 and "| BFCL_v4_simple_python | smollm2-135m | constrained | 3 |" in stdout
    summaries = {s["mode"]: s for s in json.loads((out / "summary.json").read_text(encoding="utf-8"))}
    assert summaries["constrained"]["valid_calls"] == 3 and summaries["constrained"]["questions"] == 3
    assert summaries["free"]["questions"] == 3 and "AST accuracy" in stdout
