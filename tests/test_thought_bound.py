"""The thought bound (Limits.max_thought_chars): the grammar the decoder gets, the validator, the
options that set it, and tether.testing's strategies under any bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import Agent, Limits, ScriptedBackend, Tool
from tether.cli import main
from tether.engine.grammar import DEFAULT_THOUGHT_CHARS, MAX_THOUGHT_CHARS, compose_step_grammar
from tether.errors import ConfigError, ParseError
from tether.testing import invalid_steps, valid_steps
from tether.tools import resolve_tools


def step(thought: str, command: str = "answer", text: str = "x") -> str:
    return f"Thought: {thought}\n{command}: {text}\n"


@pytest.mark.parametrize("bound", [1, 10, DEFAULT_THOUGHT_CHARS, MAX_THOUGHT_CHARS])
def test_a_thought_of_the_bound_parses_and_one_more_character_does_not(bound: int) -> None:
    grammar = compose_step_grammar(resolve_tools(["calculate"]), thought_chars=bound)
    assert grammar.parse(step("t" * bound)).thought == "t" * bound
    with pytest.raises(ParseError, match=f"line 1, column {len('Thought: ') + bound + 1}: found 't'"):
        grammar.parse(step("t" * (bound + 1)))
    assert grammar.has_shipped_layout


def test_the_default_is_the_shipped_step_grammar_file() -> None:
    shipped = Path("tether/grammars/step.gbnf").read_text(encoding="utf-8")
    assert f"thought ::= [^\\n] [^\\n]{{0,{DEFAULT_THOUGHT_CHARS - 1}}}" in shipped
    assert Limits().max_thought_chars == DEFAULT_THOUGHT_CHARS


@pytest.mark.parametrize("bound", [0, -3, MAX_THOUGHT_CHARS + 1])
def test_a_bound_outside_its_range_is_a_config_error_naming_the_field(bound: int) -> None:
    with pytest.raises(ConfigError, match="max_thought_chars"):
        Limits(max_thought_chars=bound)
    with pytest.raises(ConfigError, match="thought_chars must be between 1 and"):
        compose_step_grammar([], thought_chars=bound)


def test_the_agent_decodes_and_validates_under_its_limit(echo_tools: list[Tool]) -> None:
    backend = ScriptedBackend(step("1234567890", "echo", "a"), step("12345678901"), step("ok"))
    trace = Agent(backend, echo_tools, limits=Limits(max_thought_chars=10)).run("q")
    assert all("[^\\n]{0,9}" in g for g in backend.grammars)
    assert trace.steps[0].error is None and trace.steps[0].observation == "A"
    assert trace.steps[1].error is not None and "line 1, column 20" in trace.steps[1].error
    assert trace.answer == "x" and trace.steps[2].error is None


@settings(max_examples=15, deadline=None)
@given(bound=st.integers(1, 30), data=st.data())
def test_the_strategies_keep_to_any_bound(bound: int, data: st.DataObject) -> None:
    grammar = compose_step_grammar(resolve_tools(["calculate"]), thought_chars=bound)
    text = data.draw(valid_steps(grammar))
    action = grammar.parse(text)
    assert 1 <= len(action.thought) <= bound
    with pytest.raises(ParseError):
        grammar.parse(data.draw(invalid_steps(grammar)))


def test_eval_records_the_bound_in_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n", encoding="utf-8")
    captured: list[int] = []

    def scripted(*args: object, **kwargs: object) -> ScriptedBackend:
        return ScriptedBackend(step("add", "calculate", "1+1"), step("two", text="2"))

    monkeypatch.setattr("tether.models.build_backend", scripted)
    monkeypatch.setattr(
        "tether.evaluation.runner.Agent",
        lambda *a, **k: captured.append(k["limits"].max_thought_chars) or Agent(*a, **k),
    )
    out = tmp_path / "out"
    code = main(["eval", str(data), "--mode", "constrained", "--max-thought-chars", "77", "--out", str(out)])
    assert code == 0 and captured == [77]
    assert json.loads((out / "settings.json").read_text(encoding="utf-8"))["max_thought_chars"] == 77
    # a resumed run under another bound would mix two configurations in one folder
    assert main(["eval", str(data), "--mode", "constrained", "--out", str(out)]) != 0


def test_ask_refuses_a_bound_of_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "q", "--max-thought-chars", "0"]) == 2
    assert "--max-thought-chars" in capsys.readouterr().err
