"""Grammar-constrained sampling at (almost) the cost of unconstrained sampling.

llama-cpp-python's built-in chain applies the grammar to the whole vocabulary at every token. Here
the token is chosen first from the raw logits and only that one token is checked against the grammar
engine (a `TokenChecker`). When the grammar refuses it, the tokens whose logits come closest to the
best are checked in one batched call, and the whole vocabulary goes through the grammar engine (the
full mask, several milliseconds for a 150k vocabulary) only if they do not settle the choice exactly:

- Greedy: the best allowed candidate is the masked argmax, because masking only removes tokens and
  every token outside the candidates scores lower. Ties are broken as `np.argmax` breaks them (lowest
  id), so the token is the full mask's token.
- Temperature with top-k: the `top_k` best allowed candidates are exactly the masked distribution's
  top-k, so sampling from them (then top-p) is sampling from the masked, renormalised distribution.
- Temperature without top-k needs every allowed token's mass: the full mask.

Accepting an allowed first draw from the raw distribution is what llama.cpp's own `common` sampler
does. Under greedy decoding it is exact; with temperature and no truncation (top_k 0, top_p 1) it is
exact rejection sampling; with top-k/top-p truncation it slightly favours the allowed tokens that were
in the raw top-k, a bias shared with llama.cpp that the greedy default never meets.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tether.engine.backends.base import Sampling
from tether.engine.backends.checker import TokenChecker

__all__ = ["CANDIDATE_MARGINS", "MAX_CANDIDATES", "choose_token"]

CANDIDATE_MARGINS = (3.0, 8.0, 24.0)
"""After a refusal, the tokens whose logit is within each margin of the best are checked, widening, before
the full mask: most refusals are settled by a few dozen tokens within 3 of the best."""
MAX_CANDIDATES = 8192
"""Past this many candidates a batched check costs about what the full mask does."""


def _pick(logits: npt.NDArray[np.single], sampling: Sampling, rng: np.random.Generator) -> int:
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    k = min(sampling.top_k, int(np.isfinite(scaled).sum())) if sampling.top_k > 0 else scaled.size
    top = np.argpartition(-scaled, k - 1)[:k]
    top = top[np.lexsort((top, -scaled[top]))]
    return _sample_sorted(top, scaled[top], sampling, rng)


def _sample_sorted(
    top: npt.NDArray[np.intp], scaled: npt.NDArray[np.float64], sampling: Sampling, rng: np.random.Generator
) -> int:
    """Sample from tokens already cut to top-k and sorted best first (`scaled`: logits / temperature)."""
    probs = np.exp(scaled - scaled[0])
    probs /= probs.sum()
    if sampling.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p) + 1)
        top, probs = top[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(top, p=probs))


def _best_allowed(logits: npt.NDArray[np.single], checker: TokenChecker, want: int) -> npt.NDArray[np.intp] | None:
    """The `want` highest-logit tokens the grammar allows, best first (ties by lower id, as `np.argmax`),
    or None when the full mask must decide. Each tier takes every token within `margin` of the best logit
    (a threshold, not a sort: cheaper than `argpartition` on a large vocabulary) and asks the grammar about
    them in one batched call; every token left out scores strictly lower than every token taken, so the
    allowed ones found are exactly the masked distribution's best."""
    best = float(np.max(logits))
    for margin in CANDIDATE_MARGINS:
        candidates = np.flatnonzero(logits >= best - margin)  # ascending ids
        if candidates.size > MAX_CANDIDATES:
            return None
        allowed = candidates[checker.allowed(candidates.astype(np.intc))]
        if allowed.size >= want:
            order = np.lexsort((allowed, -logits[allowed]))  # by logit, then by id
            return allowed[order[:want]]
    return None


def choose_token(
    logits: npt.NDArray[np.single], checker: TokenChecker | None, sampling: Sampling, rng: np.random.Generator
) -> int:
    """Sample from the raw logits and check that one token; on a refusal, choose exactly among the next
    candidates the grammar allows, or from the full mask where the candidates cannot settle it."""
    token = _pick(logits, sampling, rng)
    if checker is None or checker.allows(token):
        return token
    greedy = sampling.temperature <= 0
    if greedy or sampling.top_k > 0:
        best = _best_allowed(logits, checker, 1 if greedy else sampling.top_k)
        if best is not None:
            if greedy:
                return int(best[0])
            return _sample_sorted(best, logits[best].astype(np.float64) / sampling.temperature, sampling, rng)
    return _pick(checker.masked(logits), sampling, rng)
