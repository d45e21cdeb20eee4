"""The knowledge base's SQLite layout, shared by the builder and the reader.

`docs(id, title, body, title_fold, title_key, base_key)` holds each paragraph with its sentences
separated by newlines in `body`; `docs_fts` is an external-content FTS5 index over (title, body)
with the `porter unicode61 remove_diacritics 2` tokenizer; `meta` records the format version.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tether.errors import ConfigError

__all__ = ["FORMAT_VERSION", "INDEXES", "SCHEMA", "TOKENIZER", "format_of", "require_fts5", "statements"]

FORMAT_VERSION = "tether-corpus/1"
TOKENIZER = "porter unicode61 remove_diacritics 2"

SCHEMA = f"""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs(
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,          -- the sentences, one per line
    title_fold TEXT NOT NULL,    -- casefolded title
    title_key TEXT NOT NULL,     -- folded words of the title (see title_key)
    base_key TEXT NOT NULL       -- the same without a trailing "(...)"
);
CREATE VIRTUAL TABLE docs_fts USING fts5(
    title, body, content='docs', content_rowid='id', tokenize='{TOKENIZER}'
);
"""
INDEXES = """
CREATE INDEX docs_title ON docs(title);
CREATE INDEX docs_title_fold ON docs(title_fold);
CREATE INDEX docs_title_key ON docs(title_key);
CREATE INDEX docs_base_key ON docs(base_key);
"""


def statements(script: str) -> list[str]:
    """The SQL statements of `script`, comments removed."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def require_fts5(conn: sqlite3.Connection) -> None:
    """Raise a ConfigError saying what to do if this Python's SQLite lacks FTS5."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.tether_fts5_probe USING fts5(x)")
        conn.execute("DROP TABLE temp.tether_fts5_probe")
    except sqlite3.OperationalError:
        raise ConfigError(
            f"this Python's SQLite ({sqlite3.sqlite_version}) lacks the FTS5 extension, which the offline "
            "knowledge base needs; use a Python built with FTS5 (the python.org and most Linux builds are)"
        ) from None


def format_of(path: Path) -> str | None:
    """The format version recorded in an existing file, or None if it is no tether corpus."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
    return str(row[0]) if row else None
