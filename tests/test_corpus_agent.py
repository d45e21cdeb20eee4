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


def test_the_corpus_retriever_gives_the_best_paragraphs_for_the_question(kb: Path) -> None:
    from tether.tools.corpus_tool import make_corpus_retriever

    found = make_corpus_retriever(kb, k=2)("Who wrote The Glass Orchard novel?")
    assert len(found) == 2 and {p.split(":")[0] for p in found} == {"The Glass Orchard", "Quentin Halloway"}
    assert "The Glass Orchard: The Glass Orchard is a 1988 novel by Quentin Halloway." in found
    assert make_corpus_retriever(kb)("?!") == []  # no words, no passages
    backend = ScriptedBackend("It says Quentin Halloway.\nanswer: Quentin Halloway\n")
    agent = Agent(backend, [], mode="closed-book", answer_type="short", retriever=make_corpus_retriever(kb, k=1))
    trace = agent.run("Who wrote The Glass Orchard novel?")
    assert trace.answer == "Quentin Halloway" and len(trace.passages) == 1
    assert "1. The Glass Orchard: The Glass Orchard is a 1988 novel" in backend.prompts[0]


BRIDGE = [  # the second page of a two-hop question shares one word with it; its first page names it
    {"title": "Marlow Bay (novel)", "text": "Marlow Bay is a 1931 novel by Edith Crane about a lighthouse keeper."},
    {"title": "Edith Crane", "text": "Edith Crane was born in Dunmore in 1890."},
    {"title": "Lighthouse keeper", "text": "A lighthouse keeper tends a lighthouse; the novel Keeper is about one."},
    {"title": "Born Free (novel)", "text": "Born Free is a novel about a lioness, by a writer born in Austria."},
]


def test_the_corpus_retriever_follows_the_names_in_its_best_paragraphs(tmp_path: Path) -> None:
    from tether.corpus import build_corpus
    from tether.tools.corpus_tool import make_corpus_retriever

    source = tmp_path / "bridge.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in BRIDGE), encoding="utf-8")
    build_corpus(source, tmp_path / "bridge.sqlite")
    question = "Where was the writer of the lighthouse keeper novel Marlow Bay born?"

    def titles(found: list[str]) -> list[str]:
        return [passage.split(":")[0] for passage in found]

    plain = titles(make_corpus_retriever(tmp_path / "bridge.sqlite", k=2, follow=0)(question))
    assert plain[0] == "Marlow Bay (novel)" and "Edith Crane" not in plain  # BM25 alone misses the author
    followed = make_corpus_retriever(tmp_path / "bridge.sqlite", k=2, follow=1)(question)
    assert titles(followed) == ["Marlow Bay (novel)", "Edith Crane"]  # the first page names the second
    assert followed[1] == "Edith Crane: Edith Crane was born in Dunmore in 1890."
    everything = titles(make_corpus_retriever(tmp_path / "bridge.sqlite", k=9)(question))
    assert sorted(everything) == sorted(p["title"] for p in BRIDGE)  # each page once, then no more


def test_a_corpus_retriever_needs_a_positive_k_and_a_knowledge_base(tmp_path: Path, kb: Path) -> None:
    from tether.errors import ConfigError
    from tether.tools.corpus_tool import make_corpus_retriever

    with pytest.raises(ConfigError, match="k of at least 1"):
        make_corpus_retriever(kb, k=0)
    with pytest.raises(ConfigError, match="follows the names in 0 or more paragraphs, not -1"):
        make_corpus_retriever(kb, follow=-1)
    with pytest.raises(ConfigError):
        make_corpus_retriever(tmp_path / "missing.sqlite")


def test_ask_read_lets_the_closed_book_pass_read_the_knowledge_base(
    capsys: pytest.CaptureFixture[str], kb: Path
) -> None:
    from fakeservers import FakeServer, completion_reply

    from tether.cli import main

    question = "Who wrote The Glass Orchard novel?"
    with FakeServer(lambda _: completion_reply("It says so.\nanswer: Quentin Halloway\n")) as server:
        code = main(["ask", question, "--server", server.url, "--closed-book", "--kb", str(kb), "--read", "1"])
        out, _ = capsys.readouterr()
        assert code == 0 and "Answer: Quentin Halloway" in out and "read: 1 passage (The Glass Orchard)" in out
        prompt = json.loads(server.requests[-1].body)["prompt"]
        assert "1. The Glass Orchard: The Glass Orchard is a 1988 novel" in prompt
        code = main(["ask", question, "--server", server.url, "--closed-book", "--read", "1"])
    _, err = capsys.readouterr()
    assert code == 2 and "--read reads paragraphs of a knowledge base: give it with --kb" in err


@pytest.mark.model
def test_real_model_reads_the_passages_and_answers_one_short_phrase(smollm2: LlamaCppBackend, kb: Path) -> None:
    from tether import Mode, reason_then_act
    from tether.engine.closed_book import closed_book_grammar
    from tether.tools.corpus_tool import make_corpus_retriever

    retriever = make_corpus_retriever(kb, k=2)
    limits = Limits(max_steps=3, time_limit_s=24 * 3600.0)  # bounded by tokens, not by the machine's speed
    agent = Agent(smollm2, resolve_tools([], kb=kb), limits=limits, answer_type="short", retriever=retriever)
    voted = reason_then_act(agent, "Who wrote The Glass Orchard?", samples=2)
    passes = [t for t in voted.traces if t.mode is Mode.CLOSED_BOOK]
    assert len(passes) == 2 and all(t.passages == passes[0].passages for t in passes)
    assert any(p.startswith("The Glass Orchard: ") for p in passes[0].passages)
    assert all(t.stop_reason is not None for t in voted.traces)  # every run ended
    for trace in passes:  # a pass that answered wrote one short phrase, as its grammar allows
        step = trace.steps[-1]
        if step.action is not None:
            assert step.action == closed_book_grammar("short").parse(step.raw_text)
            assert len(step.action.input.split()) <= 8 and '"' not in step.action.input
