"""Building a knowledge base: a source file (see `tether.corpus.readers`) into SQLite with FTS5.

The database is written to a temporary file beside `out` and moved into place only when complete,
so a failed build never leaves half a knowledge base (nor destroys the previous one). Paragraphs
with the same title and text are stored once. An existing `out` that is not a regular file (a
directory, FIFO, device node or symbolic link) is never replaced.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tether.corpus.readers import Paragraph, read_source
from tether.corpus.schema import FORMAT_VERSION, INDEXES, SCHEMA, TOKENIZER, format_of, require_fts5, statements
from tether.corpus.text import base_title, title_key
from tether.errors import ConfigError

__all__ = ["CorpusStats", "build_corpus"]

_BATCH = 5000


@dataclass(frozen=True)
class CorpusStats:
    """What `build_corpus` did: paragraphs stored, seconds taken, and what it read."""

    documents: int
    seconds: float
    source_format: str = "jsonl"  # "jsonl", "json" or "hotpotqa"
    duplicates: int = 0  # paragraphs read but not stored because the same title and text came before


_Row = tuple[int, str, str, str, str, str]


def _rows(paragraphs: Iterable[Paragraph], counts: list[int]) -> Iterator[_Row]:
    """Rows for `docs`, duplicates dropped; counts[0] = stored, counts[1] = duplicates."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for p in paragraphs:
        key = (p.title, p.sentences)
        if key in seen:
            counts[1] += 1
            continue
        seen.add(key)
        counts[0] += 1
        yield (counts[0], p.title, "\n".join(p.sentences), p.title.casefold(), title_key(p.title),
               title_key(base_title(p.title)))  # fmt: skip


def _batches(rows: Iterator[_Row]) -> Iterator[list[_Row]]:
    batch: list[_Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_output(source: Path, out: Path) -> None:
    """Refuse an `out` whose replacement would destroy something: anything but a regular file (a
    directory, FIFO, socket, device node, or a symbolic link, which `os.replace` would swap for a
    file), the source itself, or a file that is not a tether knowledge base."""
    mode: int | None
    try:
        mode = out.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(f"{out}: cannot check the output path ({exc.strerror or exc})") from None
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{out}: is a directory; give a file name for the knowledge base")
        if not stat.S_ISREG(mode):
            kind = _file_kind(mode)
            raise ConfigError(f"{out}: exists and is {kind}, not a regular file; refusing to replace it")
        try:
            if out.resolve() == source.resolve():
                raise ConfigError(f"{out}: the output would overwrite the source file")
        except OSError:
            pass
        if out.stat().st_size and format_of(out) != FORMAT_VERSION:
            raise ConfigError(f"{out}: exists and is not a tether knowledge base; refusing to overwrite it")
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: the folder {out.parent} does not exist")


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "a special file")


def build_corpus(source: Path | str, out: Path | str) -> CorpusStats:
    """Index `source` (JSONL, JSON list, or HotpotQA JSON; see `tether.corpus.readers`) into a new
    SQLite knowledge base at `out`, replacing an earlier one there. Raises ConfigError, naming the
    file and the line or item, for unreadable, empty or malformed input; `out` is then untouched."""
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    _check_output(source, out)
    source_format, paragraphs = read_source(source)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")  # same folder: atomic rename
    counts = [0, 0]
    try:
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"{out}: cannot write a file in {out.parent} ({exc})") from None
        try:
            require_fts5(conn)
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB while building
            conn.execute("BEGIN")
            for statement in statements(SCHEMA):
                conn.execute(statement)
            for batch in _batches(_rows(paragraphs, counts)):
                conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)", batch)
                conn.executemany(
                    "INSERT INTO docs_fts(rowid, title, body) VALUES (?, ?, ?)", [(r[0], r[1], r[2]) for r in batch]
                )
            if counts[0] == 0:
                raise ConfigError(f"{source}: no documents to index")
            for statement in statements(INDEXES):
                conn.execute(statement)
            conn.execute("INSERT INTO docs_fts(docs_fts) VALUES ('optimize')")
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("format", FORMAT_VERSION), ("source", str(source)), ("source_format", source_format),
                 ("documents", str(counts[0])), ("tokenizer", TOKENIZER)],
            )  # fmt: skip
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full and the like
            raise ConfigError(f"{out}: could not write the knowledge base ({exc})") from None
        finally:
            conn.close()
        _check_output(source, out)  # again: something may have appeared at `out` while we built
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return CorpusStats(counts[0], time.perf_counter() - started, source_format, counts[1])
