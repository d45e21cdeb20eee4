"""Grammar-constrained sampling at (almost) the cost of unconstrained sampling.

llama-cpp-python's built-in chain applies the grammar to the whole vocabulary at every token. Here
the token is chosen first from the raw logits and only that one token is checked against the grammar
engine (a `TokenChecker`); the full mask is computed only when the check fails (what llama.cpp's own
`common` sampler does). Under greedy decoding the result is the same token the full mask would give:
masking only removes tokens, so an allowed argmax is the masked argmax. Under temperature sampling,
resampling from the masked distribution after a rejection gives exactly the masked, renormalised
distribution.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tether.engine.backends.base import Sampling
from tether.engine.backends.checker import TokenChecker

__all__ = ["choose_token"]


def _pick(logits: npt.NDArray[np.single], sampling: Sampling, rng: np.random.Generator) -> int:
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    k = min(sampling.top_k, int(np.isfinite(scaled).sum())) if sampling.top_k > 0 else scaled.size
    top = np.argpartition(-scaled, k - 1)[:k]
    top = top[np.argsort(-scaled[top])]
    probs = np.exp(scaled[top] - scaled[top[0]])
    probs /= probs.sum()
    if sampling.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p) + 1)
        top, probs = top[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(top, p=probs))


def choose_token(
    logits: npt.NDArray[np.single], checker: TokenChecker | None, sampling: Sampling, rng: np.random.Generator
) -> int:
    """Sample from the raw logits, check that one token, and fall back to the full mask if refused."""
    token = _pick(logits, sampling, rng)
    if checker is None or checker.allows(token):
        return token
    return _pick(checker.masked(logits), sampling, rng)
