"""A JSON-input tool's arguments in the prompt: derived from its schema, so a model learns the
optional keys, the types and the enums that the single example call cannot show."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tether import Tool, tool
from tether.engine.prompt import tool_list
from tether.engine.schema_describe import describe_arguments


@tool
def convert(value: float, unit: Literal["C", "F"] = "C") -> str:
    """Convert a temperature."""
    return f"{value}{unit}"


class Place(BaseModel):
    city: str = Field(description="The city's name")
    country: str | None = None


@tool
def population(place: Place) -> str:
    """The population of a place."""
    return place.city


@tool(example="Paris")
def shout(text: str) -> str:
    """Repeat the text in capitals."""
    return text.upper()


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "Where."},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "units": {"enum": ["metric", "imperial"], "description": "Unit system"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["city"],
}


def test_several_parameters_are_listed_with_types_defaults_and_enums() -> None:
    assert convert.arguments == "value (number, required); unit (string, optional, one of C, F, default C)"


def test_a_pydantic_models_fields_are_listed_with_their_descriptions() -> None:
    assert population.arguments == "city (string, required): The city's name; country (string or null, optional)"


def test_a_json_schema_tool_lists_every_key_in_the_schemas_order() -> None:
    weather = Tool.from_schema("weather", "The forecast.", WEATHER_SCHEMA, lambda args: "sunny")
    assert weather.arguments == (
        "city (string, required): Where; days (integer, optional); "
        "units (string, optional, one of metric, imperial): Unit system; tags (array of string, optional)"
    )


def test_references_are_followed_and_other_schemas_have_no_arguments() -> None:
    nested = {"$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}}}}, "$ref": "#/$defs/P"}
    assert describe_arguments(nested) == "x (integer, optional)"
    assert describe_arguments({"type": "integer"}) == ""
    assert describe_arguments(None) == ""
    assert shout.arguments == ""


def test_the_tool_list_shows_arguments_only_for_json_inputs_and_an_author_may_replace_them() -> None:
    written = Tool.from_schema("weather", "The forecast.", WEATHER_SCHEMA, lambda args: "", arguments="city: where")
    hidden = Tool.from_schema("quiet", "No list.", WEATHER_SCHEMA, lambda args: "", arguments="")
    lines = tool_list([shout, written, hidden]).splitlines()
    assert lines[0] == "- shout: Repeat the text in capitals. Example: shout: Paris"
    assert lines[1].startswith("- weather: The forecast. Arguments: city: where. Example: weather: {")
    assert lines[2].startswith("- quiet: No list. Example: quiet: {")
