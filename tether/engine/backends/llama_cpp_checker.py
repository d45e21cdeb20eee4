"""llama.cpp's own grammar engine behind the `TokenChecker` seam: the default checker of LlamaCppBackend."""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from tether.errors import GrammarError

__all__ = ["GrammarChecker", "llama_cpp_checker"]

_NEG_INF = -math.inf


class GrammarChecker:
    """llama.cpp's grammar engine used as a checker: one token at a time, the full mask on demand."""

    def __init__(self, vocab: Any, gbnf: str, n_vocab: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
        if not self._sampler:
            raise GrammarError("llama.cpp refused the grammar")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._cell: Any = self._one[0]  # a view of the one slot: `allows` writes the token id into it
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._one_ref = ctypes.byref(self._one_array)
        dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        self._all = np.zeros(n_vocab, dtype=dtype)
        self._all_array = llama_cpp.llama_token_data_array(
            data=self._all.ctypes.data_as(llama_cpp.llama_token_data_p), size=n_vocab, selected=-1, sorted=False
        )
        self._ids = np.arange(n_vocab, dtype=np.intc)
        self.full_masks = 0  # how often the cheap check failed and the full mask was needed

    def allows(self, token: int) -> bool:
        """One token through the grammar engine: called for every sampled token, so kept to field writes."""
        cell = self._cell
        cell.id = token
        cell.logit = 0.0
        self._one_array.size = 1
        self._one_array.selected = -1
        self._lib.llama_sampler_apply(self._sampler, self._one_ref)
        return bool(cell.logit != _NEG_INF)

    def allowed(self, tokens: npt.NDArray[np.intc]) -> npt.NDArray[np.bool_]:
        """Which of `tokens` the grammar admits next: one call into the engine for all of them."""
        n = int(tokens.size)
        chunk = self._all[:n]
        chunk["id"] = tokens
        chunk["logit"] = 0.0
        self._all_array.size = n
        self._all_array.selected = -1
        self._all_array.sorted = False
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(self._all_array))
        kept = self._all[: self._all_array.size]
        if kept.size == n and np.array_equal(kept["id"], tokens):  # llama.cpp marks refusals in place
            return np.asarray(np.isfinite(kept["logit"]), dtype=np.bool_)
        return np.isin(tokens, kept["id"][np.isfinite(kept["logit"])])  # an engine that compacts or reorders

    def masked(self, logits: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        """The logits with every token the grammar forbids set to -inf."""
        self.full_masks += 1
        return np.where(self.allowed(self._ids), logits, np.single(_NEG_INF)).astype(np.single, copy=False)

    def accept(self, token: int) -> None:
        self._lib.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None

    def __del__(self) -> None:
        self.close()


def llama_cpp_checker(llm: Any, gbnf: str) -> GrammarChecker:
    """The `CheckerFactory` for llama.cpp's engine, over the vocabulary of the `Llama` being decoded."""
    return GrammarChecker(llm._model.vocab, gbnf, llm.n_vocab())
