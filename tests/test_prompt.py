"""The prompt's worked examples: valid steps, shown only for registered tools, never from a question set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tether import ScriptedBackend, Tool, compose_step_grammar
from tether.engine.prompt import _EXAMPLES, examples_for, render_prompt
from tether.tools import BUILTIN_TOOLS, resolve_tools

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_STEP = re.compile(r"^(Thought: .*\n[a-z][a-z0-9_]*: .*\n)(?:Observation: .*\n)?", re.MULTILINE)


def test_every_example_is_a_sequence_of_valid_steps_ending_in_an_answer() -> None:
    grammar = compose_step_grammar(resolve_tools(BUILTIN_TOOLS))
    assert len(_EXAMPLES) >= 4
    for text, commands in _EXAMPLES:
        question, _, transcript = text.partition("\n")
        assert question.startswith("Question: ")
        steps = _STEP.findall(transcript)
        assert "".join(steps) == re.sub(r"^Observation: .*\n", "", transcript, flags=re.MULTILINE)
        actions = [grammar.parse(step) for step in steps]
        assert actions[-1].is_answer and not any(a.is_answer for a in actions[:-1])
        assert {a.command for a in actions[:-1]} == commands


def test_examples_are_shown_only_when_every_command_they_call_is_registered() -> None:
    calculate_only = examples_for(resolve_tools(["calculate"]))
    assert calculate_only and all("calculate: " in e and "wikipedia: " not in e for e in calculate_only)
    encyclopedia = examples_for(resolve_tools(["wikipedia"]))
    assert encyclopedia and all("lookup: " not in e and "calculate: " not in e for e in encyclopedia)
    assert any("lookup: " in e for e in examples_for(resolve_tools(["wikipedia", "lookup"])))
    assert len(examples_for(resolve_tools(BUILTIN_TOOLS))) == 4


def test_a_custom_tool_set_gets_no_examples_and_a_clean_prompt() -> None:
    shout = Tool(name="shout", description="Capitalise.", func=str.upper, example="hi")
    prompt = render_prompt(ScriptedBackend(), "q?", [], [shout], style="raw")
    assert "Examples:" not in prompt and "calculate" not in prompt
    assert prompt.endswith("Example: answer: 42\n\nQuestion: q?\n")


def test_examples_are_not_taken_from_the_development_questions() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no development data at {SHARED_DATA}")
    questions: set[str] = set()
    for path in SHARED_DATA.glob("*.jsonl"):
        questions |= {json.loads(line)["question"].strip().lower() for line in path.read_text().splitlines() if line}
    for path in SHARED_DATA.glob("*.json"):
        questions |= {q["question"].strip().lower() for q in json.loads(path.read_text())}
    assert len(questions) > 900
    shown = {text.partition("\n")[0].removeprefix("Question: ").strip().lower() for text, _ in _EXAMPLES}
    assert not shown & questions


class FakeArchitectureBackend(ScriptedBackend):
    """The scripted fake model, claiming a GGUF architecture."""

    def __init__(self, architecture: str | None) -> None:
        super().__init__()
        self._architecture = architecture

    @property
    def architecture(self) -> str | None:
        return self._architecture


def test_auto_picks_the_measured_style_per_architecture() -> None:
    tools = resolve_tools(["calculate"])
    assert render_prompt(FakeArchitectureBackend("qwen2"), "q?", [], tools).startswith("You answer")  # raw
    assert render_prompt(FakeArchitectureBackend("llama"), "q?", [], tools).startswith("<|system|>")  # chat
    assert render_prompt(FakeArchitectureBackend(None), "q?", [], tools).startswith("<|system|>")
    assert render_prompt(FakeArchitectureBackend("qwen2"), "q?", [], tools, style="chat").startswith("<|system|>")
