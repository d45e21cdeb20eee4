"""Untrusted model files: a GGUF's chat template is refused with one line when it does not compile,
raises, loops, or allocates without bound (report rows K5, K6).

The hostile files are the default model with one metadata value rewritten (tests/gguf_craft.py), built
under a temporary directory. These tests read only the header and vocabulary (llama.cpp's vocab-only
load) and render the template in the bounded child; the weights are never loaded, except in the tests
marked `model`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from gguf_craft import with_metadata
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from test_cli import run

from tether.engine.backends.base import Message
from tether.engine.backends.llama_cpp import LlamaCppBackend, _read_chat_templates, render_chat_template
from tether.errors import ModelFileError
from tether.models import default_model_path

SYNTAX = "{% for m in messages %}{{ m.content }"
RAISES = "{{ raise_exception('template says no') }}"
LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
FOLDS = '{{ "x" * 10**10 }}'  # constant-folded (10 GB) while compiling, before any render
PICKY = "{% if '17' in messages[-1].content %}{{ raise_exception('no 17 here') }}{% endif %}{{ messages[-1].content }}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The default model with this chat template, written once per template for the module."""
    folder = tmp_path_factory.mktemp("gguf")
    built: dict[str, Path] = {}

    def build(template: str) -> Path:
        if template not in built:
            out = folder / f"template{len(built)}.gguf"
            built[template] = with_metadata(default_model_path(), out, {"tokenizer.chat_template": template})
        return built[template]

    return build


def test_the_header_rewriter_rebuilds_the_default_model_byte_for_byte(tmp_path: Path) -> None:
    copy = with_metadata(default_model_path(), tmp_path / "same.gguf", {})
    assert copy.read_bytes() == default_model_path().read_bytes()


@pytest.mark.parametrize(
    ("template", "reason"),
    [(SYNTAX, "TemplateSyntaxError: unexpected '}'"), (RAISES, "ValueError: template says no")],
)
def test_k5_a_template_that_does_not_compile_or_raises_is_one_model_load_error(
    hostile: Callable[[str], Path], template: str, reason: str
) -> None:
    path = hostile(template)
    with pytest.raises(ModelFileError) as caught:
        LlamaCppBackend(path, n_ctx=256)
    message = str(caught.value)
    assert message == f"the chat template of {path} is unusable: {reason}"


def test_k5_tether_ask_prints_one_line_for_a_broken_template(
    hostile: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = hostile(SYNTAX)
    code, out, err = run(capsys, "ask", "What is 2+2?", "--model", str(path), "--max-steps", "1", "--time-limit", "5")
    assert code == 1 and out == ""
    assert err == f"error: the chat template of {path} is unusable: TemplateSyntaxError: unexpected '}}'\n"


def test_k6_a_looping_template_is_stopped_at_the_render_time_limit(hostile: Callable[[str], Path]) -> None:
    """10^10 loop iterations: the child is killed at the limit (it ran 45 s past a 5 s limit before)."""
    path = hostile(LOOPS)
    started = time.monotonic()
    with pytest.raises(ModelFileError, match=r"is unusable: rendering took more than 1 s$"):
        LlamaCppBackend(path, n_ctx=256, template_time_limit_s=1)
    assert time.monotonic() - started < 15  # generous: the loop alone would run for minutes


def test_k6_a_template_that_allocates_at_compile_time_is_refused_before_llama_compiles_it(
    hostile: Callable[[str], Path],
) -> None:
    """`Llama` compiles every template at load; jinja2 folds `"x" * 10**10` there. The bounded child
    compiles it first, under a memory cap, so the process never tries."""
    path = hostile(FOLDS)
    with pytest.raises(ModelFileError, match=r"is unusable: MemoryError"):
        LlamaCppBackend(path, n_ctx=256)


def test_k6_every_later_render_is_bounded_the_same_way(hostile: Callable[[str], Path]) -> None:
    """A template that fails only on some content passes the load's probe; the render for that
    content fails with the same one-line error, and a good one is the template's own output."""
    path = hostile(PICKY)
    templates, bos, eos = _read_chat_templates(path)
    assert templates == {"tokenizer.chat_template": PICKY}

    def render(content: str) -> str | None:
        messages = [{"role": "user", "content": content}]
        return render_chat_template(templates, bos=bos, eos=eos, messages=messages, time_limit_s=5, model_path=path)

    assert render("What is 2+2?") == "What is 2+2?"
    with pytest.raises(ModelFileError, match=r"^the chat template of .* is unusable: ValueError: no 17 here$"):
        render("What is 17*23?")


def test_k5_untrusted_error_text_is_one_printable_capped_line(hostile: Callable[[str], Path]) -> None:
    path = hostile("{{ raise_exception('line one\\nline two\\x1b]0;pwned\\x07' ~ 'x' * 5000) }}")
    with pytest.raises(ModelFileError) as caught:
        LlamaCppBackend(path, n_ctx=256)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and "\x07" not in message
    assert "line one line two ]0;pwned xxx" in message and len(message) < 400


def test_the_default_template_renders_exactly_as_llama_cpp_python_does() -> None:
    templates, bos, eos = _read_chat_templates(default_model_path())
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Question: 2+2?"}]
    reference = Jinja2ChatFormatter(templates["tokenizer.chat_template"], eos_token=eos, bos_token=bos)
    rendered = render_chat_template(
        templates, bos=bos, eos=eos, messages=messages, time_limit_s=30, model_path=default_model_path()
    )
    assert rendered == reference(messages=messages).prompt  # type: ignore[arg-type]
    assert rendered is not None and rendered.endswith("<|im_start|>assistant\n")


@pytest.mark.model
def test_k6_format_chat_on_the_loaded_model_is_guarded_and_cached(
    hostile: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LlamaCppBackend(hostile(PICKY), n_ctx=256)
    calls: list[object] = []
    import tether.engine.backends.llama_cpp as module

    real = module.render_chat_template
    monkeypatch.setattr(module, "render_chat_template", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    good = [Message(role="user", content="What is 2+2?")]
    assert backend.format_chat(good) == backend.format_chat(good) == "What is 2+2?"
    assert len(calls) == 1  # the controller asks for the same opening every step: rendered once
    with pytest.raises(ModelFileError, match="no 17 here"):
        backend.format_chat([Message(role="user", content="What is 17*23?")])
