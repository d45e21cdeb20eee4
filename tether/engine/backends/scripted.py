"""A scripted backend for unit tests: replays queued completions and records every prompt."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from tether.engine.backends.base import ForcedText, Message, Sampling
from tether.engine.protocol import TokenCounts

__all__ = ["ScriptedBackend"]


class ScriptedBackend:
    """The fake model of the unit tests, given the texts it should produce, in order; each
    `stream` call replays the next one character by character, ignoring the grammar (so the
    validator's handling of bad text can be tested too). `prompts` and `grammars` record each call."""

    def __init__(self, *outputs: str, delay_s: float = 0.0, name: str = "scripted") -> None:
        self._outputs = list(outputs)
        self._delay_s = delay_s
        self._name = name
        self.prompts: list[str] = []
        self.grammars: list[str | None] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def architecture(self) -> str | None:
        return None

    def format_chat(self, messages: Sequence[Message]) -> str | None:
        turns = "".join(f"<|{m.role}|>\n{m.content}\n" for m in messages)
        return turns + "<|assistant|>\n"

    def stream(
        self,
        prompt: str,
        *,
        grammar: str | None,
        max_tokens: int,
        sampling: Sampling,
        stats: TokenCounts,
        forced: ForcedText | None = None,
        deadline: float | None = None,
    ) -> Iterator[str]:
        if not self._outputs:
            raise AssertionError("ScriptedBackend ran out of scripted outputs")
        self.prompts.append(prompt)
        self.grammars.append(grammar)
        text = self._outputs.pop(0)
        stats.prompt = stats.prompt_evaluated = len(prompt.split())
        return self._replay(text[:max_tokens], stats)

    def _replay(self, text: str, stats: TokenCounts) -> Iterator[str]:
        for ch in text:
            if self._delay_s:
                time.sleep(self._delay_s)
            stats.sampled += 1
            yield ch
