"""In-process inference with llama-cpp-python: one `Llama` reused across steps, grammar sampling."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tether.engine.backends.base import ForcedText, Message, Sampling, StreamStats
from tether.engine.backends.fast_sampler import GrammarChecker, choose_token
from tether.errors import ConfigError, ContextOverflow, ModelLoadError

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["LlamaCppBackend"]

_GGUF_MAGIC = b"GGUF"


def check_model_file(path: str | os.PathLike[str]) -> Path:
    """The path, if it is a readable GGUF file; else ModelLoadError saying which of those it is not."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelLoadError(f"model path is not a file: {p}")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelLoadError(f"model file is not readable: {p} ({exc.strerror})") from None
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(f"not a GGUF model file (bad magic bytes): {p}")
    return p


class LlamaCppBackend:
    """A GGUF model in this process. The `Llama` object lives as long as the backend, so each step's
    prompt, which extends the previous one, only evaluates the tokens added since."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        sampler: Literal["fast", "builtin"] = "fast",
    ) -> None:
        if sampler not in ("fast", "builtin"):
            raise ConfigError(f"unknown sampler {sampler!r}: use 'fast' or 'builtin'")
        self.sampler = sampler
        self.model_path = check_model_file(model_path)
        from llama_cpp import Llama

        try:
            self._llm: Llama = Llama(
                model_path=str(self.model_path),
                n_ctx=n_ctx,
                n_threads=n_threads or os.cpu_count() or 2,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {self.model_path}: {exc}") from None
        self._template = self._llm.metadata.get("tokenizer.chat_template")

    @property
    def name(self) -> str:
        return self.model_path.name

    @property
    def family(self) -> str | None:
        architecture = self._llm.metadata.get("general.architecture")
        return str(architecture) if architecture else None

    @property
    def llm(self) -> Llama:
        return self._llm

    def format_chat(self, messages: Sequence[Message]) -> str | None:
        if not self._template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos = self._llm.detokenize([self._llm.token_eos()], special=True).decode("utf-8", "replace")
        bos = self._llm.detokenize([self._llm.token_bos()], special=True).decode("utf-8", "replace")
        formatter = Jinja2ChatFormatter(self._template, eos_token=eos, bos_token=bos)
        result = formatter(messages=[m.model_dump() for m in messages])  # type: ignore[misc]
        prompt: str = result.prompt
        return prompt

    def reset(self) -> None:
        """Forget the KV cache so the next prompt is evaluated whole. Sampled runs with one seed are
        reproducible from the same cache state: a reused prefix re-evaluates only the last prompt token,
        whose logits differ from a whole-batch evaluation in the last float bits."""
        self._llm.reset()  # type: ignore[no-untyped-call]

    def tokenize(self, text: str) -> list[int]:
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        bos = self._llm.token_bos()
        return tokens[1:] if len(tokens) > 1 and tokens[0] == tokens[1] == bos else tokens  # template's BOS

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
        tokens = self.tokenize(prompt)
        if len(tokens) + max_tokens > self._llm.n_ctx():
            raise ContextOverflow(
                f"prompt of {len(tokens)} tokens plus {max_tokens} new ones exceeds the context of "
                f"{self._llm.n_ctx()} tokens"
            )
        stats.prompt_tokens = len(tokens)
        reuse = self._cached_prefix(tokens)
        stats.prompt_evaluated = len(tokens) - reuse
        if self.sampler == "builtin":
            return self._generate_builtin(tokens, grammar, max_tokens, sampling, stats)
        return self._generate_fast(tokens, reuse, grammar, max_tokens, sampling, stats, forced)

    def _cached_prefix(self, tokens: list[int]) -> int:
        cached = self._llm.n_tokens
        common = 0
        for a, b in zip(self._llm.input_ids[:cached], tokens, strict=False):
            if a != b:
                break
            common += 1
        return max(0, min(common, len(tokens) - 1))  # the last prompt token is always re-evaluated

    def _generate_fast(
        self,
        tokens: list[int],
        reuse: int,
        grammar: str | None,
        max_tokens: int,
        sampling: Sampling,
        stats: StreamStats,
        forced: ForcedText | None,
    ) -> Iterator[str]:
        """Tether's own loop: check-one-token grammar sampling, forced text appended without sampling."""
        import llama_cpp

        llm = self._llm
        n_vocab = llm.n_vocab()
        checker = GrammarChecker(llm._model.vocab, grammar, n_vocab) if grammar else None
        rng = np.random.default_rng(sampling.seed)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = ""
        llm.n_tokens = reuse
        llm.eval(tokens[reuse:])
        try:
            while stats.sampled + stats.forced < max_tokens:
                push = forced(text) if forced else ""
                if push:
                    pushed = llm.tokenize(push.encode("utf-8"), add_bos=False, special=False)
                    for token in pushed:
                        if checker is not None:
                            checker.accept(token)
                    llm.eval(pushed)
                    stats.forced += len(pushed)
                    text += push
                    yield push
                    continue
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
                token = choose_token(logits, checker, sampling, rng)
                if _is_end_of_generation(llm, token):
                    break
                if checker is not None:
                    checker.accept(token)
                stats.sampled += 1
                piece = decoder.decode(llm.detokenize([token]))
                text += piece
                llm.eval([token])
                if piece:
                    yield piece
        finally:
            stats.full_masks = checker.full_masks if checker else 0
            if checker is not None:
                checker.close()

    def _generate_builtin(
        self, tokens: list[int], grammar: str | None, max_tokens: int, sampling: Sampling, stats: StreamStats
    ) -> Iterator[str]:
        """llama-cpp-python's own chain (the grammar masks the whole vocabulary every token): the reference."""
        llm = self._llm
        llm.set_seed(sampling.seed)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        generator = llm.generate(
            tokens,
            temp=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=0.0,
            repeat_penalty=1.0,
            grammar=_compiled_grammar(grammar) if grammar else None,
        )
        try:
            for token in generator:
                if _is_end_of_generation(llm, token):
                    break
                stats.sampled += 1
                piece = decoder.decode(llm.detokenize([token]))
                if piece:
                    yield piece
                if stats.sampled >= max_tokens:
                    break
        finally:
            generator.close()


def _is_end_of_generation(llm: Any, token: int) -> bool:
    import llama_cpp

    return token == llm.token_eos() or bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


@lru_cache(maxsize=32)
def _compiled_grammar(gbnf: str) -> LlamaGrammar:
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False)
