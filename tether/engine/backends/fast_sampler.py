"""Grammar-constrained sampling at (almost) the cost of unconstrained sampling.

llama-cpp-python's built-in chain applies the grammar to the whole vocabulary at every token. Here
the token is chosen first from the raw logits and only that one token is checked against the grammar
engine (a `TokenChecker`). When the grammar refuses it, the next candidates are checked one by one in
descending logit order, and the whole vocabulary goes through the grammar engine (the full mask, several
milliseconds for a 150k vocabulary) only if they do not settle the choice exactly:

- Greedy: the first allowed candidate is the masked argmax, because masking only removes tokens. Ties
  are broken as `np.argmax` breaks them (lowest id), so the token is the full mask's token.
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

__all__ = ["CANDIDATES", "choose_token"]

CANDIDATES = 64
"""How many of the most likely tokens are checked one by one after a refusal, before the full mask."""


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
    found among the `CANDIDATES` most likely tokens; None when those cannot prove it (too few allowed,
    or a tie with tokens outside the candidates), and the full mask must decide."""
    n = min(CANDIDATES, logits.size)
    candidates = np.argpartition(-logits, n - 1)[:n] if n < logits.size else np.arange(logits.size)
    candidates = candidates[np.lexsort((candidates, -logits[candidates]))]
    found = _allowed_in_order(candidates, checker, want)
    if len(found) < want:
        return None
    if n < logits.size and logits[found[-1]] <= logits[candidates[-1]]:
        return None  # a token outside the candidates may tie with the last one found
    return np.array(found, dtype=np.intp)


def _allowed_in_order(candidates: npt.NDArray[np.intp], checker: TokenChecker, want: int) -> list[int]:
    found: list[int] = []
    for token in candidates:
        if checker.allows(int(token)):
            found.append(int(token))
            if len(found) == want:
                break
    return found


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
