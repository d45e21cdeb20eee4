"""The one interface the controller needs from a model: render a chat, stream a completion."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from tether.engine.protocol import TokenCounts

__all__ = ["Backend", "ForcedText", "Message", "Sampling", "StreamStats"]

ForcedText = Callable[[str], str]
"""Given the step text so far, the text the grammar forces next ("" when the model must choose)."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: str
    content: str


class Sampling(BaseModel):
    """Decoding settings; temperature 0 means greedy (the default, for reproducible runs)."""

    model_config = ConfigDict(frozen=True)

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    seed: int = 0


StreamStats = TokenCounts
"""What a backend counts while it streams is what the Step records: one record, `TokenCounts`, which the
controller hands to `stream` and then keeps as the step's `tokens`."""


@runtime_checkable
class Backend(Protocol):
    """A model the controller can drive. `stream` yields the completion text piece by piece (one
    token each for local models); the caller may stop early by closing the iterator. `deadline` is the
    run's end on the `time.monotonic()` clock: a backend that waits on I/O must not wait past it."""

    @property
    def name(self) -> str: ...

    @property
    def architecture(self) -> str | None:
        """The model's GGUF architecture ("llama", "qwen2", ...), which picks the measured prompt style;
        None if unknown. Not a chat family (`ModelSpec.family`): one architecture serves several."""
        ...

    def format_chat(self, messages: Sequence[Message]) -> str | None:
        """The prompt text that opens an assistant turn after `messages`, or None without a template."""
        ...

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
    ) -> Iterator[str]: ...
