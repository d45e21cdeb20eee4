"""Text cleaning for every boundary where outside text enters tether (servers, files, argv, tools).

Python strings can hold lone surrogates (a JSON `"\\ud800"` escape, or undecodable bytes on argv
under `surrogateescape`); they cannot be encoded as UTF-8, so one of them would crash a terminal
write, a JSON record or an SQLite insert far from where it came in. Clean once, where text enters.
"""

from __future__ import annotations

import re

__all__ = ["clean_text"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it always encodes as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)
