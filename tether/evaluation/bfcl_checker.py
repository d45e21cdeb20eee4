"""BFCL's AST checker for one Python call (its `simple` and `multiple` categories), ported.

A port of `simple_function_checker` and its helpers from bfcl-eval 2026.3.23
(`bfcl_eval/eval_checker/ast_eval/ast_checker.py`), Python only, with the same rules in the same
order: the expected function's name; every required parameter present; no parameter that the
function or the possible answer lacks; each value of the declared type (an int passes for a float;
a value of the possible answers' own type passes as a "variable") and among the possible answers
(strings compared after BFCL's `standardize_string`, lists element-wise in order, dicts key by key);
an optional parameter left out only where its answers include `""`. `multiple` questions check the
one call against the function their answer names. Its verdicts and error types are BFCL's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["CALL_STATUSES", "CallScore", "CallStatus", "Check", "check_call", "standardize_string"]

# BFCL's PYTHON_TYPE_MAPPING ("any" is a str there); the last four are GORILLA_TO_PYTHON aliases that
# its checker would fail on with a KeyError, and that no simple or multiple function uses.
_PYTHON_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "boolean": bool, "array": list, "tuple": list,
    "dict": dict, "any": str, "number": float, "bool": bool, "list": list, "object": dict,
}  # fmt: skip
_NESTED = ("array", "tuple")  # types whose items are type-checked (one level, as BFCL does)
_STANDARDIZE = re.compile(r"[ \,\.\/\-\_\*\^]")


class Check(BaseModel):
    """BFCL's verdict on one call: valid, or the first error found and its BFCL error type."""

    model_config = ConfigDict(frozen=True)

    valid: bool
    error: str | None = None
    error_type: str | None = None


_OK = Check(valid=True)

CallStatus = Literal["valid", "no_call", "unknown_function", "not_json", "schema_invalid", "cut", "schema_refused"]
CALL_STATUSES: tuple[CallStatus, ...] = (
    "valid", "no_call", "unknown_function", "not_json", "schema_invalid", "cut", "schema_refused",
)  # fmt: skip
"""How a BFCL question's call turned out: valid (then scored by the AST checker); no call (an `answer:`,
or no `command: input` line); a command that names none of the question's functions; an input that is
not JSON; a JSON input that its schema refuses; a step the token budget cut before its call was
complete (as the controller, which runs no cut command, reads it); or a question that was not asked, because tether
refuses one of its function schemas (it cannot derive their grammar)."""


class CallScore(BaseModel):
    """A BFCL question's one call, judged: whether it was a valid call (it named one of the
    question's functions with a JSON object that validates against its schema) and whether BFCL's
    AST checker accepts it. Only a valid call can be correct."""

    model_config = ConfigDict(frozen=True)

    status: CallStatus
    function: str | None = None  # the BFCL function (or, for unknown_function, the command written)
    arguments: dict[str, Any] | None = None
    correct: bool = False
    error: str | None = None  # why the call is invalid or wrong
    error_type: str | None = None  # BFCL's error type for a valid but wrong call

    @property
    def valid(self) -> bool:
        return self.status == "valid"


def _fail(error_type: str, error: str) -> Check:
    return Check(valid=False, error=error, error_type=error_type)


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and `,./-_*^`, lower-case, single quotes to double."""
    return _STANDARDIZE.sub("", text).lower().replace("'", '"')


def _std(value: Any) -> Any:
    return standardize_string(value) if type(value) is str else value


def check_call(
    functions: Sequence[dict[str, Any]], ground_truth: dict[str, dict[str, list[Any]]], name: str, args: dict[str, Any]
) -> Check:
    """BFCL's AST verdict on the call `name(**args)`: `functions` are the question's BFCL function
    descriptions, `ground_truth` its one possible answer (`{function: {param: [allowed values]}}`)."""
    expected, possible = next(iter(ground_truth.items()))
    description = next((f for f in functions if f["name"] == expected), None)
    if description is None:
        return _fail("simple_function_checker:wrong_func_name", f"no description of {expected!r}")
    if name != expected:
        return _fail(
            "simple_function_checker:wrong_func_name", f"Function name {expected!r} not found in model output."
        )
    details: dict[str, Any] = description["parameters"].get("properties", {})
    for param in description["parameters"].get("required", []):
        if param not in args:
            return _fail("simple_function_checker:missing_required", f"Missing required parameter: {param!r}.")
    for param, value in args.items():
        if param not in details or param not in possible:
            return _fail("simple_function_checker:unexpected_param", f"Unexpected parameter: {param!r}.")
        verdict = _check_param(param, value, details[param], possible[param])
        if not verdict.valid:
            return verdict
    for param, allowed in possible.items():
        if param not in args and "" not in allowed:
            return _fail(
                "simple_function_checker:missing_optional",
                f"Optional parameter {param!r} not provided and not marked as optional.",
            )
    return _OK


def _check_param(param: str, value: Any, detail: dict[str, Any], allowed: list[Any]) -> Check:
    declared = detail.get("type", "string")
    expected = _PYTHON_TYPES.get(declared, str)
    nested = _PYTHON_TYPES.get(detail.get("items", {}).get("type", "string"), str) if declared in _NESTED else None
    if declared == "float" and type(value) is int:  # Python's own int -> float
        value = float(value)
    typed, is_variable = _type_check(param, value, allowed, declared, expected, nested)
    if not typed.valid:
        return typed
    if not is_variable:
        if expected is dict:
            return _dict_check(param, value, allowed)
        if expected is list and nested is dict:
            return _list_dict_check(value, allowed)
        if expected is str:
            if _std(value) not in [_std(a) for a in allowed if type(a) is str]:
                return _fail(
                    "value_error:string",
                    f"Invalid value for parameter {param!r}: {value!r}. Expected one of {allowed}. Case insensitive.",
                )
            return _OK
        if expected is list:
            options = [[_std(x) for x in a] if isinstance(a, (list, str)) else a for a in allowed]
            if [_std(v) for v in value] not in options:
                return _fail("value_error:list/tuple", f"Invalid value for parameter {param!r}: {value!r}.")
            return _OK
    if value not in allowed:
        return _fail(
            "value_error:others", f"Invalid value for parameter {param!r}: {value!r}. Expected one of {allowed}."
        )
    return _OK


def _answer_type(allowed: list[Any]) -> type | None:
    """The type of the first possible answer that is not `""` (the mark of an optional parameter)."""
    return next((type(a) for a in allowed if a != ""), None)


def _type_check(
    param: str, value: Any, allowed: list[Any], declared: str, expected: type, nested: type | None
) -> tuple[Check, bool]:
    """BFCL's `type_checker`: (verdict, whether the value counts as a variable, compared as is)."""
    answer_type = _answer_type(allowed)
    is_variable = answer_type is not None and answer_type is not expected
    failed: Check | None = None
    items: Any = value  # (kept as Any: `type(value) is expected` narrows value to object)
    if type(value) is expected:
        if nested is None:
            return _OK, is_variable
        for answer in allowed:
            items_ok = not isinstance(answer, list) or all(
                _type_check(param, item, answer, nested.__name__, nested, None)[0].valid for item in items
            )
            if items_ok:
                return _OK, is_variable
        failed = _fail(
            "type_error:nested",
            f"Nested type checking failed for parameter {param!r}. Expected outer type {declared} with inner type "
            f"{nested.__name__}. Parameter value: {value!r}.",
        )
    if answer_type is not None and type(value) is answer_type:
        return failed or _OK, True
    return _fail(
        "type_error:simple",
        f"Incorrect type for parameter {param!r}. Expected type {declared}, got {type(value).__name__}. "
        f"Parameter value: {value!r}.",
    ), is_variable


def _dict_check(param: str, value: dict[str, Any], allowed: list[Any]) -> Check:
    """BFCL's `dict_checker`: some possible dict has every key given, with a matching value, and
    every key it lacks marked optional."""
    verdict = _fail("dict_checker:unclear", f"No possible answer matches {param!r}.")
    for answer in allowed:
        if answer == "":
            continue
        verdict = _dict_matches(value, answer)
        if verdict.valid:
            return verdict
    return verdict


def _dict_matches(value: Any, answer: Any) -> Check:
    if not isinstance(value, dict) or not isinstance(answer, dict):  # BFCL's checker would raise here
        return _fail("value_error:dict_value", f"Expected a dict like {answer!r}, got {value!r}.")
    for key, item in value.items():
        if key not in answer:
            return _fail("value_error:dict_key", f"Unexpected dict key parameter: {key!r}.")
        if _std(item) not in [_std(a) for a in answer[key]]:
            return _fail("value_error:dict_value", f"Invalid value for parameter {key!r}: {item!r}.")
    for key, options in answer.items():
        if key not in value and "" not in options:
            return _fail("value_error:dict_key", f"Missing dict key parameter: {key!r}.")
    return _OK


def _list_dict_check(value: list[Any], allowed: list[Any]) -> Check:
    """BFCL's `list_dict_checker`: some possible list of dicts matches the list, dict by dict, in order."""
    verdict = _fail("list_dict_checker:unclear", "No possible answer matches.")
    for answer in allowed:
        if not isinstance(answer, (list, str)) or len(value) != len(answer):
            verdict = _fail("value_error:list_dict_count", "Wrong number of dictionaries in the list.")
            continue
        for item, wanted in zip(value, answer, strict=True):
            verdict = _dict_check("", item, [wanted])
            if not verdict.valid:
                break
        else:
            return _OK
    return verdict
