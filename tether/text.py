"""Text cleaning for every boundary where outside text enters tether (servers, files, argv, tools).

Python strings can hold lone surrogates (a JSON `"\\ud800"` escape, or undecodable bytes on argv
under `surrogateescape`); they cannot be encoded as UTF-8, so one of them would crash a terminal
write, a JSON record or an SQLite insert far from where it came in. Clean once, where text enters.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_text", "one_line"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it always encodes as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def one_line(text: str, limit: int) -> str:
    """One line of printable text, capped with "…": untrusted text (tool output, a server's or a model
    file's error) can never forge a line. Only the head is cleaned (the rest would be cut anyway), so
    100 MB costs no more than 1 KB."""
    head = text[: 4 * limit + 64]
    flat = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in head)
    flat = _SPACES.sub(" ", flat).strip()
    if len(flat) <= limit and len(head) == len(text):
        return flat
    return flat[: limit - 1].rstrip() + "…"
