"""Property tests over an MCP server's real tool schemas (the fixture server, listed over stdio): valid
arguments written as JSON are in each tool's derived grammar, and every text the grammar can write is
valid arguments under the schema. The same properties run over BFCL's schemas in test_bfcl_schemas."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from schema_instances import instances

from tether import Tool
from tether.mcp import MCPServer

FIXTURE = Path(__file__).with_name("mcp_server_fixture.py")
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def tools() -> dict[str, Tool]:
    """Each tool the fixture server lists (several schema shapes); the connection is closed before the tests."""
    with MCPServer([sys.executable, str(FIXTURE)]) as server:
        listed = {t.name: t for t in server.tools if t.input_schema is not None}
    assert len(listed) >= 5
    return listed


@SETTINGS
@given(data=st.data())
def test_valid_arguments_written_as_json_are_in_every_tools_grammar(
    tools: dict[str, Tool], data: st.DataObject
) -> None:
    for name, tool in tools.items():
        value = data.draw(instances(tool.input_schema), label=name)
        for text in (
            json.dumps(value, ensure_ascii=False, separators=(",", ":")),
            json.dumps(value, ensure_ascii=False),
        ):
            assume("\x7f" not in text)  # the grammar (as llama.cpp's) never writes DEL raw
            assert tool.accepts(text), (name, text)


@SETTINGS
@given(data=st.data())
def test_every_text_a_tools_grammar_writes_is_valid_arguments(tools: dict[str, Tool], data: st.DataObject) -> None:
    for name, tool in tools.items():
        grammar = tool.input_grammar
        text = data.draw(from_lark(grammar.parser, start=grammar.lark_start), label=name)
        assume(len(text) < 2000)
        jsonschema.validate(json.loads(text), tool.input_schema)
