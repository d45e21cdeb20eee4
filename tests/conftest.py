"""Shared fixtures: the scripted fake model for unit tests, the real SmolLM2 model for `model` tests."""

from __future__ import annotations

import pytest

from tether import LlamaCppBackend, Tool, tool
from tether.models import default_model_path


@tool(example="hello")
def echo(text: str) -> str:
    """Repeat the text in capitals."""
    return text.upper()


@tool(example="hi")
def other(text: str) -> str:
    """Reverse the text."""
    return text[::-1]


@pytest.fixture
def echo_tools() -> list[Tool]:
    return [echo, other]


@pytest.fixture(scope="session")
def smollm2() -> LlamaCppBackend:
    """One real model for the whole session (loading it costs about a second)."""
    return LlamaCppBackend(default_model_path(), n_ctx=4096)
