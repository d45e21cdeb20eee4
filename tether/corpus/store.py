"""Querying a knowledge base: `Corpus`, opened read-only, and the records it returns.

Searches weight the title above the body (BM25); lookups by title go exact, then case-insensitive,
then up to case, accents and punctuation, then by the title without its disambiguation.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.corpus.schema import FORMAT_VERSION, format_of, require_fts5
from tether.corpus.text import STOPWORDS, fts_query, normalise, title_key
from tether.errors import ConfigError

__all__ = ["BODY_WEIGHT", "MAX_NAME_WORDS", "TITLE_WEIGHT", "Corpus", "Document", "Hit"]

TITLE_WEIGHT = 4.0
BODY_WEIGHT = 1.0
MAX_NAME_WORDS = 6  # the longest name `names_in` looks for, in words
_SQL_VARIABLES = 500  # parameters per query, well under SQLite's limit
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class Document:
    """One paragraph: its title, its sentences, and `text` (the sentences joined by spaces)."""

    title: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass(frozen=True)
class Hit:
    """A search result: a paragraph and its `score`, the negated BM25 (higher is better)."""

    title: str
    sentences: tuple[str, ...]
    score: float

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


class Corpus:
    """A knowledge base built by `build_corpus`, opened read-only. Safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such knowledge base (build one with: tether corpus build FILE -o KB)")
        version = format_of(self.path)
        if version != FORMAT_VERSION:
            found = f"format {version!r}" if version else "not a tether knowledge base"
            raise ConfigError(f"{self.path}: {found}; rebuild it with: tether corpus build FILE -o KB")
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        require_fts5(self._conn)
        documents = self._scalar("SELECT value FROM meta WHERE key = 'documents'")
        try:
            self.documents = int(documents or 0)
        except (TypeError, ValueError):
            self._conn.close()
            raise ConfigError(
                f"{self.path}: damaged knowledge base (its document count is {str(documents)[:40]!r}); "
                "rebuild it with: tether corpus build FILE -o KB"
            ) from None

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r}, documents={self.documents})"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.documents

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self._all(sql, params)
        return rows[0][0] if rows else None

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The `k` paragraphs that best match the words of `query` (BM25, title weighted above text),
        best first. Any text is accepted: punctuation and FTS5 syntax are ignored; no words, no hits."""
        if k < 1:
            return []
        match = fts_query(query)
        if not match:
            return []
        # Rank in a subquery and join only the k winners: joining first would read the text of
        # every matching paragraph (about 1.5x slower on 100k paragraphs).
        rows = self._all(
            "SELECT d.title, d.body, h.rank FROM (SELECT rowid, bm25(docs_fts, ?, ?) AS rank FROM docs_fts "
            "WHERE docs_fts MATCH ? ORDER BY rank, rowid LIMIT ?) h "
            "JOIN docs d ON d.id = h.rowid ORDER BY h.rank, d.id",
            (TITLE_WEIGHT, BODY_WEIGHT, match, k),
        )
        return _hits(rows)

    def search_among(self, query: str, titles: Collection[str], k: int = 5) -> list[Hit]:
        """`search`, ranking only the paragraphs with these titles; those the query's words do not
        match are left out."""
        match = fts_query(query)
        if k < 1 or not match:
            return []
        hits: list[Hit] = []
        for chunk in _batches(list(dict.fromkeys(titles))):
            rows = self._all(
                "SELECT d.title, d.body, bm25(docs_fts, ?, ?) AS rank "
                "FROM docs_fts JOIN docs d ON d.id = docs_fts.rowid "
                f"WHERE docs_fts MATCH ? AND d.title IN ({_marks(chunk)}) ORDER BY rank, d.id LIMIT ?",
                (TITLE_WEIGHT, BODY_WEIGHT, match, *chunk, k),
            )
            hits += _hits(rows)
        return sorted(hits, key=lambda hit: -hit.score)[:k]

    def names_in(self, text: str) -> list[str]:
        """Titles of the paragraphs that `text` names: a run of at most MAX_NAME_WORDS words that starts
        with a capital or a digit and equals a title without its disambiguation, up to case, accents
        and punctuation ("... born in Zurich ..." names "Zürich" and "Zurich (band)"). One-word names
        need four letters and must not be a common word. In order of first mention."""
        tokens = _TOKEN.findall(text)
        keys: dict[str, None] = {}
        for i, token in enumerate(tokens):
            if not (token[0].isupper() or token[0].isdigit()):
                continue
            for n in range(1, min(MAX_NAME_WORDS, len(tokens) - i) + 1):
                key = title_key(" ".join(tokens[i : i + n]))
                if n > 1 or (len(key) >= 4 and key not in STOPWORDS):
                    keys.setdefault(key)
        order = {key: i for i, key in enumerate(keys)}
        found: list[tuple[int, int, str]] = []
        for chunk in _batches(list(keys)):
            sql = f"SELECT base_key, MIN(id), title FROM docs WHERE base_key IN ({_marks(chunk)}) GROUP BY title"
            found += [(order[key], first, title) for key, first, title in self._all(sql, tuple(chunk))]
        return [title for *_, title in sorted(found)]

    def get(self, title: str) -> Document | None:
        """The paragraph with exactly this title, else one whose title matches it case-insensitively
        (the first stored, if several do)."""
        title = normalise(title)
        if not title:
            return None
        for column, value in (("title", title), ("title_fold", title.casefold())):
            row = self._all(f"SELECT title, body FROM docs WHERE {column} = ? ORDER BY id LIMIT 1", (value,))
            if row:
                return Document(row[0][0], tuple(row[0][1].split("\n")))
        return None

    def titles_with_key(self, title: str) -> list[str]:
        """Titles equal to `title` up to case, accents and punctuation: "zurich" finds "Zürich"."""
        key = title_key(title)
        if not key:
            return []
        rows = self._all("SELECT title FROM docs WHERE title_key = ? GROUP BY title ORDER BY MIN(id)", (key,))
        return [r[0] for r in rows]

    def titles_with_base(self, title: str, limit: int = 20) -> list[str]:
        """Titles that are `title` plus a disambiguation: "Mercury" finds "Mercury (planet)"."""
        key = title_key(title)
        if not key:
            return []
        sql = "SELECT title FROM docs WHERE base_key = ? GROUP BY title ORDER BY MIN(id) LIMIT ?"
        rows = self._all(sql, (key, limit))
        return [r[0] for r in rows]


def _hits(rows: list[tuple[Any, ...]]) -> list[Hit]:
    """Hits from (title, body, bm25 rank) rows: the body's lines are the sentences; higher is better."""
    return [Hit(title, tuple(body.split("\n")), -float(rank)) for title, body, rank in rows]


def _batches(items: list[str]) -> Iterator[list[str]]:
    """`items` in runs of at most _SQL_VARIABLES, one query's parameters each."""
    for start in range(0, len(items), _SQL_VARIABLES):
        yield items[start : start + _SQL_VARIABLES]


def _marks(chunk: list[str]) -> str:
    """The "?, ?, ..." placeholders of an IN list of `chunk`."""
    return ",".join("?" * len(chunk))
