"""Self-consistency on the scripted backend: k sampled runs, normalised answers, a majority vote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether import Agent, ConfigError, Limits, Sampling, ScriptedBackend, Voted, reason_then_act, self_consistent
from tether.engine.vote import agreed, majority, normalise_answer


class FakeSampledBackend(ScriptedBackend):
    """Records the sampling of each call, so the test sees what each run was decoded with."""

    def __init__(self, *outputs: str) -> None:
        super().__init__(*outputs)
        self.samplings: list[Sampling] = []

    def stream(self, prompt: str, **kwargs: object) -> Iterator[str]:
        sampling = kwargs["sampling"]
        assert isinstance(sampling, Sampling)
        self.samplings.append(sampling)
        return super().stream(prompt, **kwargs)  # type: ignore[arg-type]


def closed_book(*answers: str) -> Agent:
    return Agent(FakeSampledBackend(*(f"answer: {a}\n" for a in answers)), [], mode="closed-book")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("1,000", "1000.0"),
        ("1000", " 1000 "),
        ("-3.50", "-3.5"),
        ("0.0", "0"),
        ("The Eiffel Tower.", "eiffel tower"),
        ("an  apple", "Apple!"),
        ("Yes", "yes."),
    ],
)
def test_normalised_answers_that_say_the_same_are_equal(first: str, second: str) -> None:
    assert normalise_answer(first) == normalise_answer(second)


@pytest.mark.parametrize(("first", "second"), [("1,000", "100"), ("10", "1.0"), ("yes", "no"), ("Paris", "Parish")])
def test_different_answers_stay_different(first: str, second: str) -> None:
    assert normalise_answer(first) != normalise_answer(second)


def test_k_runs_with_seeds_vote_for_the_majority() -> None:
    agent = closed_book("42", "41", "42.0", "1", "41")
    voted = self_consistent(agent, "q", k=5, temperature=0.9)
    assert isinstance(voted, Voted)
    assert voted.answer == "42" and voted.votes == {"42": 2, "41": 2, "1": 1}  # a tie: the earliest run wins
    assert [t.answer for t in voted.traces] == ["42", "41", "42.0", "1", "41"]
    backend = agent.backend
    assert isinstance(backend, FakeSampledBackend)
    assert [(s.temperature, s.seed) for s in backend.samplings] == [(0.9, i) for i in range(5)]
    assert agent.sampling == Sampling() and voted.elapsed_s >= 0


def test_a_tie_goes_to_the_earliest_run_among_the_tied() -> None:
    voted = self_consistent(closed_book("y", "x", "x", "y"), "q", k=4)
    assert voted.answer == "y" and voted.votes == {"y": 2, "x": 2}


def test_the_vote_over_the_first_runs_is_the_vote_of_that_many_runs() -> None:
    answers = ("7", "8", "8", "7", "7")
    voted = self_consistent(closed_book(*answers), "q", k=5)
    for k in (1, 3, 5):
        fewer = self_consistent(closed_book(*answers), "q", k=k)
        assert majority(voted.traces[:k]) == (fewer.answer, fewer.votes)
    assert [majority(voted.traces[:k])[0] for k in (1, 3, 5)] == ["7", "8", "7"]


def test_runs_without_an_answer_do_not_vote() -> None:
    agent = Agent(
        FakeSampledBackend("answer: 57 stickers\n", "answer: 7\n"), [], mode="closed-book", answer_type="number"
    )
    voted = self_consistent(agent, "q", k=2)
    assert voted.answer == "7" and voted.votes == {"7": 1} and voted.traces[0].answer is None
    nobody = self_consistent(
        Agent(ScriptedBackend("answer: ?!\n"), [], mode="closed-book", answer_type="number"), "q", k=1
    )
    assert nobody.answer is None and nobody.votes == {}


def test_the_agent_keeps_its_other_settings_in_every_run() -> None:
    backend = FakeSampledBackend("answer: x\n", "answer: x\n")
    agent = Agent(backend, [], mode="closed-book", sampling=Sampling(top_k=5), limits=Limits(max_reasoning_tokens=32))
    voted = self_consistent(agent, "q", k=2, temperature=0.5)
    assert [s.top_k for s in backend.samplings] == [5, 5] and voted.votes == {"x": 2}


@pytest.mark.parametrize(("k", "temperature"), [(0, 0.7), (-1, 0.7), (3, -0.1), (3, float("nan"))])
def test_bad_settings_are_config_errors(k: int, temperature: float) -> None:
    with pytest.raises(ConfigError):
        self_consistent(closed_book(), "q", k=k, temperature=temperature)


def thinker_then_agent(passes: list[str], agent_answer: str | None = None) -> Agent:
    """Closed-book passes' outputs, then (if given) the agent's one answering step, on one fake backend."""
    outputs = [f"answer: {a}\n" for a in passes]
    if agent_answer is not None:
        outputs.append(f"Thought: check\nanswer: {agent_answer}\n")
    return Agent(FakeSampledBackend(*outputs), [], limits=Limits(act_first=False, max_steps=1, fallback=False))


def test_reasoning_first_an_answer_most_passes_give_stands_and_the_agent_does_not_run() -> None:
    agent = thinker_then_agent(["42", "41", "42.0"])
    voted = reason_then_act(agent, "q", samples=3, temperature=0.5)
    assert voted.answer == "42" and voted.votes == {"42": 2, "41": 1} and voted.winner == 0
    assert [t.mode.value for t in voted.traces] == ["closed-book"] * 3  # no agent run
    backend = agent.backend
    assert isinstance(backend, FakeSampledBackend)
    # the first pass with the agent's own (greedy) sampling, the others sampled with seeds 0, 1
    assert [(s.temperature, s.seed) for s in backend.samplings] == [(0.0, 0), (0.5, 0), (0.5, 1)]
    assert agent.mode.value == "constrained"  # the caller's agent is not changed


def test_reasoning_first_passes_that_disagree_hand_the_question_to_the_agent() -> None:
    voted = reason_then_act(thinker_then_agent(["1", "2", "3"], "2"), "q", samples=3)
    assert voted.answer == "2" and voted.votes == {"1": 1, "2": 1, "3": 1}
    assert voted.winner == 3 and voted.traces[3].mode.value == "constrained"  # the agent decided, not pass 2
    tie = reason_then_act(thinker_then_agent(["1", "2"], "9"), "q", samples=2)  # 1 of 2 is not a majority
    assert tie.answer == "9" and tie.winner == 2


def test_reasoning_first_without_any_answer_is_none_and_bad_settings_are_refused() -> None:
    refused = Agent(
        FakeSampledBackend("answer: 57 stickers\n", "Thought: t\nanswer: 57 stickers\n"),
        [],
        answer_type="number",
        limits=Limits(act_first=False, max_steps=1, fallback=False),
    )
    voted = reason_then_act(refused, "q", samples=1)
    assert voted.answer is None and voted.winner is None and len(voted.traces) == 2
    with pytest.raises(ConfigError, match="at least one closed-book pass"):
        reason_then_act(thinker_then_agent([]), "q", samples=0)
    with pytest.raises(ConfigError, match="needs an agent with tools"):
        reason_then_act(closed_book("1"), "q")
    with pytest.raises(ConfigError, match="temperature"):
        reason_then_act(thinker_then_agent([]), "q", temperature=-1)


def test_agreed_needs_more_than_half_of_all_runs_and_a_run_without_an_answer_counts_against() -> None:
    assert agreed(["7", None, "7.0"]) == "7"
    assert agreed(["7", None]) is None and agreed(["7", "8"]) is None and agreed([]) is None
    assert agreed(["Paris", "paris.", "Rome"]) == "Paris"  # the earliest wording of the normalised answer


def test_reasoning_first_passes_read_the_agents_passages() -> None:
    backend = FakeSampledBackend("answer: Paris\n", "answer: Paris\n", "answer: Lyon\n")
    agent = Agent(backend, [], limits=Limits(max_steps=1), retriever=lambda q: ["Louvre: a museum in Paris."])
    voted = reason_then_act(agent, "Where is the Louvre?", samples=3)
    assert voted.answer == "Paris" and all(t.passages == ["Louvre: a museum in Paris."] for t in voted.traces)
    assert all("1. Louvre: a museum in Paris." in p for p in backend.prompts)
