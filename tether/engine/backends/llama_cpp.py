"""In-process inference with llama-cpp-python: one `Llama` reused across steps, grammar sampling.

Importing this module loads neither llama-cpp-python nor numpy (the `llama` extra): they load when a
backend is built, so `import tether` works in an install that only talks to servers."""

from __future__ import annotations

import codecs
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tether.engine.backends.base import ForcedText, Message, Sampling
from tether.engine.backends.checker import CheckerFactory
from tether.engine.protocol import TokenCounts
from tether.errors import ConfigError, ContextOverflow, ModelFileError
from tether.text import one_line

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["LlamaCppBackend"]

_GGUF_MAGIC = b"GGUF"
_TEMPLATE_KEY = "tokenizer.chat_template"
_TEMPLATE_MEMORY = 1 << 30  # address space a template render may add (bytes)
_TEMPLATE_MAX_CHARS = 1 << 22  # a longer rendered prompt fits no context window: refused in the child
_TEMPLATE_START_S = 60.0  # for the render child to start (imports), apart from the render's own limit
_PROBE = [
    {"role": "system", "content": "You answer questions."},
    {"role": "user", "content": "Question: What is 2 + 2?"},
]

# The child that compiles and renders chat templates. A template comes from the model file, so it is
# untrusted: jinja2's sandbox stops attribute tricks but not loops, deep recursion, or constant
# expressions folded at compile time ("x" * 10**10 allocates while compiling). The child is killed at
# the time limit and its address space is capped; it uses llama-cpp-python's own formatter, so what
# it compiles is exactly what `Llama` compiles at load.
_RENDER_CHILD = """
import json, resource, sys
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
try:
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    limit = used + int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except (OSError, ValueError):
    pass
print("ready", flush=True)
request = json.loads(sys.stdin.readline())
try:
    formatters = {
        name: Jinja2ChatFormatter(template, eos_token=request["eos"], bos_token=request["bos"])
        for name, template in request["templates"].items()
    }
    render = request["render"]
    prompt = formatters[render](messages=request["messages"]).prompt if render else None
    if prompt is not None and len(prompt) > request["max_chars"]:
        raise ValueError("the rendered prompt has %d characters" % len(prompt))
    answer = {"prompt": prompt}
except BaseException as exc:
    answer = {"error": type(exc).__name__ + ": " + str(exc)}
print(json.dumps(answer), flush=True)
"""


def check_model_file(path: str | os.PathLike[str]) -> Path:
    """The path, if it is a readable GGUF file; else ModelFileError saying which of those it is not."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelFileError(f"model path is not a file: {p}")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelFileError(f"model file is not readable: {p} ({exc.strerror})") from None
    if magic != _GGUF_MAGIC:
        raise ModelFileError(f"not a GGUF model file (bad magic bytes): {p}")
    return p


def _read_chat_templates(path: Path) -> tuple[dict[str, str], str, str]:
    """The file's chat templates (every key `Llama` compiles at load) and its BOS and EOS text, from a
    vocab-only load: llama.cpp's own header parser, no tensors read, no template compiled."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        model = LlamaModel(path_model=str(path), params=params, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"llama.cpp could not load {path}: {exc}") from None
    try:
        templates = {
            key: value
            for key, value in model.metadata().items()
            if key == _TEMPLATE_KEY or key.startswith(_TEMPLATE_KEY + ".")
        }
        bos, eos = model.token_bos(), model.token_eos()
        bos_text = model.token_get_text(bos) if bos != -1 else ""
        eos_text = model.token_get_text(eos) if eos != -1 else ""
    finally:
        model.close()  # type: ignore[no-untyped-call]
    return templates, bos_text, eos_text


def render_chat_template(
    templates: dict[str, str],
    *,
    bos: str,
    eos: str,
    messages: Sequence[dict[str, str]] | None,
    time_limit_s: float,
    model_path: Path,
) -> str | None:
    """Compile every template and render the default one with `messages` (None: compile only), in a
    child process killed after `time_limit_s` with its memory capped. The prompt, or ModelFileError
    naming the model file and why its template failed (one line)."""
    request = {"templates": templates, "bos": bos, "eos": eos, "messages": messages, "max_chars": _TEMPLATE_MAX_CHARS}
    request["render"] = _TEMPLATE_KEY if messages is not None and _TEMPLATE_KEY in templates else None
    command = [sys.executable, "-I", "-c", _RENDER_CHILD, str(_TEMPLATE_MEMORY)]

    def failed(why: str) -> ModelFileError:
        return ModelFileError(f"the chat template of {model_path} is unusable: {one_line(why, 240)}")

    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as child:  # on exit: pipes closed, child reaped
        try:
            assert child.stdout is not None
            ready, _, _ = select.select([child.stdout], [], [], _TEMPLATE_START_S)
            if not ready or child.stdout.readline() != "ready\n":
                raise ModelFileError("could not start the chat template renderer (is llama-cpp-python installed?)")
            try:
                out, _ = child.communicate(json.dumps(request) + "\n", timeout=time_limit_s)
            except subprocess.TimeoutExpired:
                raise failed(f"rendering took more than {time_limit_s:g} s") from None
        finally:
            if child.poll() is None:
                child.kill()
    try:
        answer = json.loads(out)
    except ValueError:
        raise failed(f"the renderer ended with code {child.returncode} (out of memory?)") from None
    if "error" in answer:
        raise failed(str(answer["error"]))
    prompt: str | None = answer["prompt"]
    return prompt


class LlamaCppBackend:
    """A GGUF model in this process. The `Llama` object lives as long as the backend, so each step's
    prompt, which extends the previous one, only evaluates the tokens added since.

    The model file's chat template is untrusted: a broken or hostile one is refused. At load every
    template in the file is compiled, and the default one rendered once, in a child process held to
    `template_time_limit_s` with its memory capped, before `Llama` compiles them itself; any failure
    (syntax error, `raise_exception`, a loop, a memory bomb) is a ModelFileError naming the file, not
    a fallback to the raw prompt style. Each later render runs in the same kind of child (one per new
    conversation opening; the result is cached, as the controller asks for the same opening each step),
    and fails the same way.

    `sampler="fast"` decodes with tether's loop (fast_sampler), asking the grammar engine that
    `checker` builds (default: llama.cpp's, `llama_cpp_checker`) about each sampled token;
    `"builtin"` uses llama-cpp-python's own chain, the reference that masks every token.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        sampler: Literal["fast", "builtin"] = "fast",
        checker: CheckerFactory | None = None,
        template_time_limit_s: float = 5.0,
    ) -> None:
        if sampler not in ("fast", "builtin"):
            raise ConfigError(f"unknown sampler {sampler!r}: use 'fast' or 'builtin'")
        self.sampler = sampler
        if checker is None:
            from tether.engine.backends.llama_cpp_checker import llama_cpp_checker

            checker = llama_cpp_checker
        self.checker = checker
        self.model_path = check_model_file(model_path)
        self.template_time_limit_s = template_time_limit_s
        self._templates, self._bos, self._eos = _read_chat_templates(self.model_path)
        self._template = self._templates.get(_TEMPLATE_KEY)
        self._rendered: dict[tuple[tuple[str, str], ...], str | None] = {}
        if self._templates:
            self._render_guarded(_PROBE)  # raises before Llama compiles what we could not
        from llama_cpp import Llama

        try:
            self._llm: Llama = Llama(
                model_path=str(self.model_path),
                n_ctx=n_ctx,
                n_threads=n_threads or os.cpu_count() or 2,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"llama.cpp could not load {self.model_path}: {exc}") from None

    @property
    def name(self) -> str:
        return self.model_path.name

    @property
    def architecture(self) -> str | None:
        architecture = self._llm.metadata.get("general.architecture")
        return str(architecture) if architecture else None

    @property
    def llm(self) -> Llama:
        return self._llm

    def format_chat(self, messages: Sequence[Message]) -> str | None:
        if not self._template:
            return None
        return self._render_guarded([{"role": m.role, "content": m.content} for m in messages])

    def _render_guarded(self, messages: list[dict[str, str]]) -> str | None:
        """The default template rendered with `messages` in a bounded child, cached per messages."""
        key = tuple((m["role"], m["content"]) for m in messages)
        if key not in self._rendered:
            if len(self._rendered) >= 64:
                self._rendered.clear()
            first = not self._rendered  # the load's probe compiles every template; later renders only the one
            self._rendered[key] = render_chat_template(
                self._templates if first else {_TEMPLATE_KEY: self._template or ""},
                bos=self._bos,
                eos=self._eos,
                messages=messages,
                time_limit_s=self.template_time_limit_s,
                model_path=self.model_path,
            )
        return self._rendered[key]

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
        stats: TokenCounts,
        forced: ForcedText | None = None,
        deadline: float | None = None,
    ) -> Iterator[str]:
        tokens = self.tokenize(prompt)
        if len(tokens) + max_tokens > self._llm.n_ctx():
            raise ContextOverflow(
                f"prompt of {len(tokens)} tokens plus {max_tokens} new ones exceeds the context of "
                f"{self._llm.n_ctx()} tokens"
            )
        stats.prompt = len(tokens)
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
        stats: TokenCounts,
        forced: ForcedText | None,
    ) -> Iterator[str]:
        """Tether's own loop: check-one-token grammar sampling, forced text appended without sampling."""
        import llama_cpp
        import numpy as np

        from tether.engine.backends.fast_sampler import choose_token

        llm = self._llm
        n_vocab = llm.n_vocab()
        checker = self.checker(llm, grammar) if grammar else None
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
        self, tokens: list[int], grammar: str | None, max_tokens: int, sampling: Sampling, stats: TokenCounts
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
