"""The agent answering from the offline knowledge base: the scripted model shows the wiring end to
end, the real SmolLM2 model shows every step stays valid with the corpus tools in the grammar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether import Agent, Limits, LlamaCppBackend, ScriptedBackend, StopReason
from tether.tools import resolve_tools

PAGES = [
    {"title": "Zorbania", "text": "Zorbania is a small island nation. Its capital is Velmora. It has 41,000 people."},
    {"title": "Velmora", "text": "Velmora is the capital of Zorbania. It was founded in 1712 by fishermen."},
    {"title": "Quentin Halloway", "text": "Quentin Halloway is a novelist. He wrote The Glass Orchard in 1988."},
    {"title": "The Glass Orchard", "text": "The Glass Orchard is a 1988 novel by Quentin Halloway."},
]


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    source = tmp_path / "pages.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PAGES), encoding="utf-8")
    from tether.corpus import build_corpus

    out = tmp_path / "kb.sqlite"
    build_corpus(source, out)
    return out


def test_scripted_agent_answers_from_the_corpus(kb: Path) -> None:
    backend = ScriptedBackend(
        "Thought: Look up the country.\nwikipedia: Zorbania\n",
        "Thought: Find the founding year.\nlookup: founded\n",
        "Thought: Open the capital's page.\nwikipedia: Velmora\n",
        "Thought: It says 1712.\nanswer: 1712\n",
    )
    trace = Agent(backend, resolve_tools(["calculate"], kb=kb)).run("When was the capital of Zorbania founded?")
    assert (trace.steps[0].observation or "").startswith("Zorbania: Zorbania is a small island nation.")
    assert "Velmora was founded" not in (trace.steps[1].observation or "")
    assert "founded in 1712" in (trace.steps[2].observation or "")
    assert trace.answer == "1712" and trace.stop_reason is StopReason.ANSWER
    assert "- wikipedia: " in backend.prompts[0] and "- lookup: " in backend.prompts[0]


@pytest.mark.model
@pytest.mark.parametrize(
    "question",
    ["What is the capital of Zorbania?", "Who wrote The Glass Orchard?", "When was Velmora founded?"],
)
def test_real_model_with_the_corpus_keeps_every_step_valid(smollm2: LlamaCppBackend, kb: Path, question: str) -> None:
    tools = resolve_tools(["calculate"], kb=kb)
    limits = Limits(max_steps=5, time_limit_s=24 * 3600.0)  # bounded by steps, not by the machine's speed
    trace = Agent(smollm2, tools, limits=limits).run(question)
    assert trace.stop_reason in (StopReason.ANSWER, StopReason.STEP_LIMIT, StopReason.LOOP)
    assert trace.answer
    assert all(step.action is not None for step in trace.steps)
    titles = {p["title"] for p in PAGES}
    for step in trace.steps:
        if step.action is not None and step.action.command == "wikipedia" and step.loop is None:
            observation = step.observation or ""
            assert (
                any(observation.startswith(t + ":") for t in titles)
                or "No page titled" in observation
                or (observation.startswith("error:"))
            )
