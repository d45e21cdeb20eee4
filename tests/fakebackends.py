"""Model test doubles beyond the ScriptedBackend that tether ships (named Fake*, as every fake here)."""

from __future__ import annotations

from collections.abc import Iterator

from tether import ScriptedBackend
from tether.engine.backends.base import ForcedText, Sampling, StreamStats


class FakeFloodBackend(ScriptedBackend):
    """A server that ignores `max_tokens`: a megabyte a piece, no newline, forever. Given a script, it
    floods on its first call only and replays the script after (e.g. the continuation after a cut)."""

    def stream(
        self,
        prompt: str,
        *,
        grammar: str | None,
        max_tokens: int,
        sampling: Sampling,
        stats: StreamStats,
        forced: ForcedText | None = None,
        deadline: float | None = None,
    ) -> Iterator[str]:
        if self.prompts and self._outputs:
            return super().stream(
                prompt, grammar=grammar, max_tokens=max_tokens, sampling=sampling, stats=stats, deadline=deadline
            )
        self.prompts.append(prompt)
        return iter(["y" * 1_000_000] * 1_000_000)
