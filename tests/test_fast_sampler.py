"""The fast constrained sampler: same tokens as the full-mask sampler under greedy decoding, and
nothing it emits (sampled or forced) leaves the grammar."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tether import Agent, LlamaCppBackend, Restriction, Sampling, compose_step_grammar
from tether.engine.backends.checker import CheckerFactory, TokenChecker
from tether.engine.backends.fast_sampler import choose_token
from tether.engine.backends.llama_cpp_checker import llama_cpp_checker
from tether.engine.prompt import render_prompt
from tether.engine.protocol import TokenCounts
from tether.models import default_model_path
from tether.tools import resolve_tools

PROMPTS = [
    "What is 17 * 23?",
    "How many minutes are in 3.5 hours?",
    "What is the capital of Japan?",
    "Compute 2 ** 16 - 1.",
    "Who painted the Mona Lisa?",
    "If a pizza has 8 slices and 3 people eat 2 each, how many are left?",
]


@pytest.fixture(scope="module")
def builtin() -> LlamaCppBackend:
    return LlamaCppBackend(default_model_path(), sampler="builtin")


def _complete(backend: LlamaCppBackend, prompt: str, gbnf: str, **kw: object) -> tuple[str, TokenCounts]:
    stats = TokenCounts()
    sampling = kw.pop("sampling", Sampling())
    text = "".join(backend.stream(prompt, grammar=gbnf, max_tokens=300, sampling=sampling, stats=stats, **kw))  # type: ignore[arg-type]
    return text, stats


@pytest.mark.model
@pytest.mark.parametrize("question", PROMPTS)
def test_greedy_fast_sampler_matches_full_mask_sampler(
    smollm2: LlamaCppBackend, builtin: LlamaCppBackend, question: str
) -> None:
    agent = Agent(smollm2, resolve_tools(["calculate"]))
    grammar = agent.grammars[Restriction.ALL]
    prompt = render_prompt(smollm2, question, [], agent.tools)
    fast, fast_stats = _complete(smollm2, prompt, grammar.gbnf)
    full, full_stats = _complete(builtin, prompt, grammar.gbnf)
    assert fast == full
    assert fast_stats.sampled == full_stats.sampled
    grammar.parse(fast)


@pytest.mark.model
@pytest.mark.parametrize("question", PROMPTS)
def test_forced_text_stays_in_the_grammar(smollm2: LlamaCppBackend, question: str) -> None:
    agent = Agent(smollm2, resolve_tools(["calculate"]))
    for restriction in (Restriction.ALL, Restriction.ANSWER_ONLY_LAST_STEP):
        grammar = agent.grammars[restriction]
        prompt = render_prompt(smollm2, question, [], agent.tools)
        text, stats = _complete(smollm2, prompt, grammar.gbnf, forced=grammar.forced_text)
        action = grammar.parse(text)
        assert stats.forced >= 1  # at least the opening "Thought:"
        if restriction is Restriction.ANSWER_ONLY_LAST_STEP:
            assert action.command == "answer"


@pytest.mark.model
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampling_with_temperature_stays_in_the_grammar(smollm2: LlamaCppBackend, seed: int) -> None:
    agent = Agent(smollm2, resolve_tools(["calculate"]))
    grammar = agent.grammars[Restriction.ALL]
    prompt = render_prompt(smollm2, "What is 3 + 4 * 5?", [], agent.tools)
    sampling = Sampling(temperature=1.2, top_k=0, top_p=1.0, seed=seed)
    smollm2.reset()
    text, _ = _complete(smollm2, prompt, grammar.gbnf, sampling=sampling, forced=grammar.forced_text)
    grammar.parse(text)
    smollm2.reset()
    again, _ = _complete(smollm2, prompt, grammar.gbnf, sampling=sampling, forced=grammar.forced_text)
    assert again == text  # the seed makes sampling reproducible from the same cache state


def test_forced_text_follows_the_step_template() -> None:
    grammar = compose_step_grammar(resolve_tools(["calculate"]))
    assert grammar.forced_text("") == "Thought:"
    assert grammar.forced_text("Thought: x") == ""
    assert grammar.forced_text("Thought: x\n") == ""  # calculate or answer: the model chooses
    assert grammar.forced_text("Thought: x\nc") == "alculate:"
    assert grammar.forced_text("Thought: x\nan") == "swer:"
    assert grammar.forced_text("Thought: x\nanswer:") == ""  # the space joins the model's next word
    assert grammar.forced_text("Thought: x\nanswer: 4") == ""
    answer_only = compose_step_grammar(resolve_tools(["calculate"]), allowed=["answer"])
    assert answer_only.forced_text("Thought: x\n") == "answer:"


def test_forced_text_waits_while_command_names_share_a_prefix() -> None:
    from tether import Tool

    calc = Tool(name="calc", description="Short.", func=str, example="1")
    calculator = Tool(name="calculator", description="Long.", func=str, example="1")
    grammar = compose_step_grammar([calc, calculator])
    assert grammar.forced_text("Thought: x\nca") == ""
    assert grammar.forced_text("Thought: x\ncalcu") == "lator:"


class FakeSetChecker:
    """A grammar engine that admits a given set of token ids: any engine behind the TokenChecker seam."""

    def __init__(self, allowed: set[int] | None = None) -> None:
        self.admits = allowed
        self.full_masks = 0
        self.batches = 0
        self.asked: list[int] = []

    def allows(self, token: int) -> bool:
        self.asked.append(token)
        return token % 2 == 0 if self.admits is None else token in self.admits

    def allowed(self, tokens: npt.NDArray[np.intc]) -> npt.NDArray[np.bool_]:
        self.batches += 1
        return np.array([self.allows(int(t)) for t in tokens], dtype=bool)

    def masked(self, logits: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        self.full_masks += 1
        keep = self.allowed(np.arange(logits.size, dtype=np.intc))
        return np.where(keep, logits, -np.inf).astype(np.single)

    def accept(self, token: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_choose_token_asks_any_checker_one_token_then_the_next_candidates() -> None:
    checker: TokenChecker = FakeSetChecker()  # even ids only
    rng = np.random.default_rng(0)
    allowed_best = np.array([0.0, 1.0, 5.0, 2.0], dtype=np.single)  # argmax 2 is even: one check
    assert choose_token(allowed_best, checker, Sampling(), rng) == 2 and checker.full_masks == 0
    refused_best = np.array([0.0, 9.0, 5.0, 7.0], dtype=np.single)  # argmax 1 is odd: masked argmax 2
    assert choose_token(refused_best, checker, Sampling(), rng) == 2 and checker.full_masks == 0
    hot = Sampling(temperature=1.0, top_k=0, top_p=1.0)  # no top-k: only the full mask is exact
    picks = {choose_token(refused_best, checker, hot, rng) for _ in range(200)}
    assert picks <= {0, 2} and 0 < checker.full_masks <= 200


def test_greedy_falls_back_to_the_full_mask_when_no_candidate_is_allowed() -> None:
    logits = np.arange(1000, dtype=np.single)  # best tokens have the highest ids
    checker = FakeSetChecker({3})
    assert choose_token(logits, checker, Sampling(), np.random.default_rng(0)) == 3
    assert checker.full_masks == 1


def test_greedy_ties_go_to_the_lowest_id_as_the_full_masks_argmax() -> None:
    logits = np.zeros(1000, dtype=np.single)
    logits[999] = 5.0  # refused; every other token ties, and the lowest allowed id wins, as np.argmax says
    checker = FakeSetChecker(set(range(1, 999)))
    assert choose_token(logits, checker, Sampling(), np.random.default_rng(0)) == 1
    assert checker.full_masks == 0 and checker.batches == 2  # 999 alone is within 3 of the best; then all


def test_the_candidates_widen_before_the_full_mask() -> None:
    logits = np.zeros(1000, dtype=np.single)
    logits[999], logits[5] = 30.0, 10.0  # 999 refused; 5 is 20 below it: outside the first margin, inside the second
    checker = FakeSetChecker({5, 7})
    assert choose_token(logits, checker, Sampling(), np.random.default_rng(0)) == 5
    assert checker.full_masks == 0 and checker.batches == 3


@given(
    logits=hnp.arrays(np.single, st.integers(1, 300), elements=st.integers(-20, 20).map(float)),
    allowed=st.sets(st.integers(0, 299), min_size=1),
)
@settings(max_examples=200, deadline=None)
def test_greedy_choice_is_always_the_full_masks_argmax(logits: npt.NDArray[np.single], allowed: set[int]) -> None:
    """Integer logits make ties common: the lowest-id rule must hold at the candidates' edge too."""
    allowed = {t % logits.size for t in allowed}
    checker = FakeSetChecker(allowed)
    masked = np.where(np.isin(np.arange(logits.size), list(allowed)), logits, -np.inf)
    assert choose_token(logits, checker, Sampling(), np.random.default_rng(0)) == int(np.argmax(masked))


def test_top_k_sampling_after_a_refusal_is_the_masked_top_k_distribution() -> None:
    logits = np.log(np.array([50, 1, 4, 3, 2, 8, 1], dtype=np.single))  # token 0 is refused; 6 is allowed
    checker = FakeSetChecker({2, 3, 4, 6})
    sampling = Sampling(temperature=1.0, top_k=2, top_p=1.0)
    rng = np.random.default_rng(7)
    counts = np.zeros(logits.size)
    for _ in range(4000):
        counts[choose_token(logits, checker, sampling, rng)] += 1
    assert checker.full_masks == 0
    assert counts[[0, 1, 4, 5, 6]].sum() == 0  # masked top-2: tokens 2 (p 4/7) and 3 (p 3/7)
    assert abs(counts[2] / counts.sum() - 4 / 7) < 0.03


def test_importing_tether_and_its_backends_loads_neither_llama_cpp_nor_numpy() -> None:
    factory: CheckerFactory = llama_cpp_checker  # mypy checks that llama.cpp's engine fits the seam
    assert callable(factory)
    code = (
        "import sys, tether, tether.engine.backends.llama_cpp\nprint(sorted({'numpy', 'llama_cpp'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.model
def test_the_backend_decodes_through_the_checker_it_is_given() -> None:
    built: list[str] = []

    def counting_checker(llm: object, gbnf: str) -> TokenChecker:
        built.append(gbnf)
        return llama_cpp_checker(llm, gbnf)

    backend = LlamaCppBackend(default_model_path(), checker=counting_checker, n_ctx=1024)
    grammar = compose_step_grammar(resolve_tools(["calculate"]))
    text, _ = _complete(backend, "Question: What is 2 + 2?\n", grammar.gbnf, forced=grammar.forced_text)
    grammar.parse(text)
    assert built == [grammar.gbnf]


def test_the_backends_package_has_one_sorted_complete_all() -> None:
    import tether.engine.backends as backends

    assert backends.__all__ == sorted(backends.__all__) and all(hasattr(backends, n) for n in backends.__all__)
    assert {"Backend", "LlamaCppBackend", "OpenAIServerBackend", "ScriptedBackend", "TokenChecker"} <= set(
        backends.__all__
    )
