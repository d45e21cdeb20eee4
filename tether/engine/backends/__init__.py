"""Backends: what the controller drives (`Backend`), and the models and servers that implement it.

Importing this package loads neither llama-cpp-python nor numpy; `LlamaCppBackend` loads them when
one is built. A new backend is one module here implementing `Backend`; a new grammar engine for the
in-process sampler is one module implementing `TokenChecker` (see checker.py). `llama_cpp_server`
starts a local `llama_cpp.server` for an `OpenAIServerBackend` (tests, benchmarks).
"""

from __future__ import annotations

from tether.engine.backends.base import Backend, ForcedText, Message, Sampling, StreamStats
from tether.engine.backends.checker import CheckerFactory, TokenChecker
from tether.engine.backends.llama_cpp import LlamaCppBackend, check_model_file
from tether.engine.backends.local_server import llama_cpp_server, local_server
from tether.engine.backends.openai_server import OpenAIServerBackend, ServerKind
from tether.engine.backends.scripted import ScriptedBackend

__all__ = [
    "Backend",
    "CheckerFactory",
    "ForcedText",
    "LlamaCppBackend",
    "Message",
    "OpenAIServerBackend",
    "Sampling",
    "ScriptedBackend",
    "ServerKind",
    "StreamStats",
    "TokenChecker",
    "check_model_file",
    "llama_cpp_server",
    "local_server",
]
