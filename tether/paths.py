"""Where tether keeps what it downloads or builds (models, question sets, llama-server): one cache
root, `${XDG_CACHE_HOME:-~/.cache}/tether`, and one environment variable per kind that overrides it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str, override: str) -> Path:
    """`$override` when it is set and non-empty, else `${XDG_CACHE_HOME:-~/.cache}/tether/<kind>`."""
    configured = os.environ.get(override)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tether" / kind
