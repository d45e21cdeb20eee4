"""The public API is exactly `tether.__all__`, sorted, and every name in it exists."""

from __future__ import annotations

import tether


def test_all_is_sorted_and_complete() -> None:
    assert tether.__all__ == sorted(tether.__all__)
    for name in tether.__all__:
        assert getattr(tether, name) is not None
    public = {n for n in dir(tether) if not n.startswith("_") and not isinstance(getattr(tether, n), type(tether))}
    assert public - {"annotations"} == set(tether.__all__)


def test_every_public_error_is_exported() -> None:
    """Completeness, not only consistency: an error added to tether.errors is public at the top."""
    import tether.errors

    assert set(tether.errors.__all__) <= set(tether.__all__)
    for name in tether.errors.__all__:
        assert getattr(tether, name) is getattr(tether.errors, name)


def test_every_backend_is_exported() -> None:
    import tether.engine.backends

    backends = {n for n in tether.engine.backends.__all__ if n.endswith("Backend")}
    assert {"Backend", "LlamaCppBackend", "OpenAIServerBackend", "ScriptedBackend"} <= backends
    assert backends <= set(tether.__all__)
