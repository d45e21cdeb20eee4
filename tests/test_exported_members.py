"""The public API is exactly `tether.__all__`, sorted, and every name in it exists."""

from __future__ import annotations

import tether


def test_all_is_sorted_and_complete() -> None:
    assert tether.__all__ == sorted(tether.__all__)
    for name in tether.__all__:
        assert getattr(tether, name) is not None
    public = {n for n in dir(tether) if not n.startswith("_") and not isinstance(getattr(tether, n), type(tether))}
    assert public - {"annotations"} == set(tether.__all__)
