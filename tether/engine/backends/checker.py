"""The seam between tether's sampler and a grammar engine: what the fast sampler asks of a grammar.

`LlamaCppBackend` decodes with tether's own loop (see fast_sampler) and asks a `TokenChecker` about
each sampled token. llama.cpp's grammar engine is the default (`llama_cpp_checker`); another engine
(llguidance, XGrammar, ...) fits behind the same Protocol by adding one module with a factory and
passing it as `LlamaCppBackend(..., checker=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["CheckerFactory", "TokenChecker"]


class TokenChecker(Protocol):
    """One step's grammar, advanced one token at a time. Owned by one stream; closed when it ends."""

    @property
    def full_masks(self) -> int:
        """How often `masked` was needed (the cheap `allows` check refused the sampled token)."""
        ...

    def allows(self, token: int) -> bool:
        """Whether the grammar, in its current state, admits `token` next."""
        ...

    def allowed(self, tokens: npt.NDArray[np.intc]) -> npt.NDArray[np.bool_]:
        """For each of `tokens`, whether the grammar admits it next (one batched question)."""
        ...

    def masked(self, logits: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        """`logits` with every token the grammar forbids next set to -inf."""
        ...

    def accept(self, token: int) -> None:
        """Advance the grammar past `token` (sampled, or forced text)."""
        ...

    def close(self) -> None:
        """Free the engine's state; called once, when the stream ends."""
        ...


CheckerFactory = Callable[[Any, str], TokenChecker]
"""Builds a step's checker from the `llama_cpp.Llama` being decoded (its vocabulary) and the GBNF."""
