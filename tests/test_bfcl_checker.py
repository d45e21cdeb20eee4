"""BFCL's AST checker, ported: hand-written calls against functions and possible answers copied from
BFCL's simple_python and multiple sets (each case names the question it comes from)."""

from __future__ import annotations

from typing import Any

import pytest

from tether.evaluation.bfcl_checker import check_call, standardize_string


def fn(name: str, required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "description": "",
        "parameters": {"type": "dict", "properties": properties, "required": required},
    }


# simple_python_0
TRIANGLE = [fn("calculate_triangle_area", ["base", "height"], base={"type": "integer"}, height={"type": "integer"},
               unit={"type": "string"})]  # fmt: skip
TRIANGLE_TRUTH = {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}
# the calculate_final_velocity question of simple_python: a float with an int among its answers
VELOCITY = [fn("calculate_final_velocity", ["height"], height={"type": "integer"},
               initial_velocity={"type": "integer"}, gravity={"type": "float"})]  # fmt: skip
VELOCITY_TRUTH = {"calculate_final_velocity": {"height": [150], "initial_velocity": [0, ""], "gravity": [9.81, ""]}}
# route.estimate_time: a list of strings, two orders allowed
ROUTE = [fn("route.estimate_time", ["start_location", "end_location"], start_location={"type": "string"},
            end_location={"type": "string"}, stops={"type": "array", "items": {"type": "string"}})]  # fmt: skip
ROUTE_TRUTH = {
    "route.estimate_time": {
        "start_location": ["San Francisco"],
        "end_location": ["Los Angeles"],
        "stops": [["Santa Barbara", "Monterey"], ["Monterey", "Santa Barbara"]],
    }
}
# calculate_distance: tuples of floats
DISTANCE = [fn("calculate_distance", ["coord1", "coord2", "unit"], coord1={"type": "tuple", "items": {"type": "float"}},
               coord2={"type": "tuple", "items": {"type": "float"}}, unit={"type": "string"})]  # fmt: skip
DISTANCE_TRUTH = {
    "calculate_distance": {"coord1": [[33.4484, -112.074]], "coord2": [[34.0522, -118.2437]], "unit": ["miles"]}
}
# db_fetch_records: a dict parameter, compared key by key
RECORDS = [fn("db_fetch_records", ["database_name", "table_name", "conditions"], database_name={"type": "string"},
              table_name={"type": "string"}, fetch_limit={"type": "integer"},
              conditions={"type": "dict", "properties": {"department": {"type": "string"},
                                                         "school": {"type": "string"}}})]  # fmt: skip
RECORDS_TRUTH = {
    "db_fetch_records": {
        "database_name": ["StudentDB"],
        "table_name": ["students"],
        "conditions": [{"department": ["Science"], "school": ["Bluebird High School", "Bluebird HS"]}],
        "fetch_limit": ["", 0],
    }
}
# multiple_0: two functions offered, the answer names one
SHAPES = [
    fn("triangle_properties.get", ["side1", "side2", "side3"], side1={"type": "integer"}, side2={"type": "integer"},
       side3={"type": "integer"}, get_area={"type": "boolean"}),
    fn("circle_properties.get", ["radius"], radius={"type": "float"}, get_area={"type": "boolean"}),
]  # fmt: skip
SHAPES_TRUTH = {"triangle_properties.get": {"side1": [5], "side2": [4], "side3": [3], "get_area": ["", True]}}
# random_forest.train: BFCL's `any` is checked as a string
FOREST = [fn("random_forest.train", ["n_estimators", "max_depth", "data"], n_estimators={"type": "integer"},
             max_depth={"type": "integer"}, data={"type": "any"})]  # fmt: skip
FOREST_TRUTH = {"random_forest.train": {"n_estimators": [100], "max_depth": [5], "data": ["my_data"]}}


@pytest.mark.parametrize(
    ("functions", "truth", "name", "args"),
    [
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 10, "height": 5}),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 10, "height": 5, "unit": "units"}),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 10, "height": 5, "unit": "Units"}),
        (VELOCITY, VELOCITY_TRUTH, "calculate_final_velocity", {"height": 150, "gravity": 9.81}),
        (VELOCITY, VELOCITY_TRUTH, "calculate_final_velocity", {"height": 150, "initial_velocity": 0}),
        (ROUTE, ROUTE_TRUTH, "route.estimate_time",
         {"start_location": "san francisco", "end_location": "Los-Angeles", "stops": ["Monterey", "santa barbara"]}),
        (DISTANCE, DISTANCE_TRUTH, "calculate_distance",
         {"coord1": [33.4484, -112.074], "coord2": [34.0522, -118.2437], "unit": "Miles"}),
        (RECORDS, RECORDS_TRUTH, "db_fetch_records",
         {"database_name": "StudentDB", "table_name": "students",
          "conditions": {"department": "science", "school": "Bluebird HS"}}),
        (SHAPES, SHAPES_TRUTH, "triangle_properties.get", {"side1": 5, "side2": 4, "side3": 3, "get_area": True}),
        (FOREST, FOREST_TRUTH, "random_forest.train", {"n_estimators": 100, "max_depth": 5, "data": "my_data"}),
    ],
)  # fmt: skip
def test_right_calls_pass(
    functions: list[dict[str, Any]], truth: dict[str, Any], name: str, args: dict[str, Any]
) -> None:
    assert check_call(functions, truth, name, args).valid


@pytest.mark.parametrize(
    ("functions", "truth", "name", "args", "error_type"),
    [
        (SHAPES, SHAPES_TRUTH, "circle_properties.get", {"radius": 5.0}, "simple_function_checker:wrong_func_name"),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 10},
         "simple_function_checker:missing_required"),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 10, "height": 5, "colour": "red"},
         "simple_function_checker:unexpected_param"),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 10.0, "height": 5}, "type_error:simple"),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": "10", "height": 5}, "type_error:simple"),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 11, "height": 5}, "value_error:others"),
        (TRIANGLE, TRIANGLE_TRUTH, "calculate_triangle_area", {"base": 10, "height": 5, "unit": "cm"},
         "value_error:string"),
        (VELOCITY, VELOCITY_TRUTH, "calculate_final_velocity", {"height": 150, "gravity": 9.8}, "value_error:others"),
        (ROUTE, ROUTE_TRUTH, "route.estimate_time",
         {"start_location": "San Francisco", "end_location": "Los Angeles", "stops": ["Monterey"]},
         "value_error:list/tuple"),
        (DISTANCE, DISTANCE_TRUTH, "calculate_distance",
         {"coord1": ["33.4484", "-112.074"], "coord2": [34.0522, -118.2437], "unit": "miles"}, "type_error:nested"),
        (RECORDS, RECORDS_TRUTH, "db_fetch_records",
         {"database_name": "StudentDB", "table_name": "students", "conditions": {"department": "Arts"}},
         "value_error:dict_value"),
        (RECORDS, RECORDS_TRUTH, "db_fetch_records",
         {"database_name": "StudentDB", "table_name": "students", "conditions": {"department": "Science"}},
         "value_error:dict_key"),
        (SHAPES, SHAPES_TRUTH, "triangle_properties.get", {"side1": 5, "side2": 4, "side3": 3, "get_area": 1},
         "type_error:simple"),
    ],
)  # fmt: skip
def test_wrong_calls_fail_as_bfcl_says(
    functions: list[dict[str, Any]], truth: dict[str, Any], name: str, args: dict[str, Any], error_type: str
) -> None:
    verdict = check_call(functions, truth, name, args)
    assert not verdict.valid and verdict.error_type == error_type, verdict


def test_an_int_passes_for_a_float_and_only_there() -> None:
    assert check_call(VELOCITY, VELOCITY_TRUTH, "calculate_final_velocity", {"height": 150, "gravity": 9.81}).valid
    truth = {"calculate_final_velocity": {"height": [150], "initial_velocity": [0, ""], "gravity": [10.0, ""]}}
    assert check_call(VELOCITY, truth, "calculate_final_velocity", {"height": 150, "gravity": 10}).valid
    assert not check_call(VELOCITY, VELOCITY_TRUTH, "calculate_final_velocity", {"height": 150.0}).valid


def test_an_optional_parameter_without_an_empty_answer_must_be_given() -> None:
    truth = {"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units"]}}
    verdict = check_call(TRIANGLE, truth, "calculate_triangle_area", {"base": 10, "height": 5})
    assert verdict.error_type == "simple_function_checker:missing_optional"


def test_standardize_string_is_bfcls() -> None:
    assert standardize_string("April 1, 2024") == standardize_string("april 1,2024") == "april12024"
    assert standardize_string("New-York_City/NY.") == "newyorkcityny"
    assert standardize_string("it's") == 'it"s'
