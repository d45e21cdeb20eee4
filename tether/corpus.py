"""An offline knowledge base: paragraphs in SQLite with an FTS5 index ranked by BM25.

    stats = build_corpus(Path("hotpot.json"), Path("kb.sqlite"))   # JSONL, JSON list, or HotpotQA
    kb = Corpus("kb.sqlite")
    kb.search("Who directed Ed Wood?", k=5)  -> [Hit(title, text, score), ...]  (best first)
    kb.get("ed wood")                        -> Document | None  (exact, then case-insensitive)

Inputs, detected from the file's first non-blank character:

- JSONL: one `{"title": ..., "text": ...}` object per line (blank lines allowed);
- JSON: a list of such objects;
- HotpotQA: a JSON list of questions whose `context` is `[[title, [sentence, ...]], ...]`; the
  paragraphs of all questions are pooled and duplicates (same title and text) kept once.

A malformed input is a ConfigError naming the file and the line (JSONL) or the item (JSON); nothing
is skipped silently. HotpotQA keeps its own sentence boundaries; plain text is split with a regex.
The database is written to a temporary file beside `out` and moved into place only when complete,
so a failed build never leaves half a knowledge base (nor destroys the previous one). An existing
`out` that is not a regular file (a directory, FIFO, device node or symbolic link) is never replaced.

Sizes are capped before any work: the source at MAX_SOURCE_BYTES (read in bounded chunks, so an
endless stream such as a FIFO stops at the cap), a JSONL line at MAX_LINE_CHARS and a paragraph at
MAX_PARAGRAPH_CHARS; past a cap the build is refused with one line naming the file and line or item.
Lone surrogates (a JSON `\\ud800` escape) are replaced by U+FFFD where text is read.

Layout: `docs(id, title, body, title_fold, title_key, base_key)` holds each paragraph with its
sentences separated by newlines in `body`; `docs_fts` is an external-content FTS5 index over
(title, body) with the `porter unicode61 remove_diacritics 2` tokenizer; `meta` records the format
version. Searches weight the title above the body. Any text is made into a safe FTS5 query: its
words are quoted and ORed, everything else dropped, so no model output can make a query fail.
Common English words are dropped from a query that has other words; a query of nothing but them
("of the") matches most paragraphs and is the slow case (about 150 ms on 100k paragraphs, against
about 10 ms for a few keywords; see benchmarks/bench_corpus.py).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import stat
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import ConfigError
from tether.text import clean_text

__all__ = [
    "FORMAT_VERSION",
    "MAX_LINE_CHARS",
    "MAX_PARAGRAPH_CHARS",
    "MAX_SOURCE_BYTES",
    "Corpus",
    "CorpusStats",
    "Document",
    "Hit",
    "base_title",
    "build_corpus",
    "fold_text",
    "fts_query",
    "split_sentences",
    "title_key",
]

FORMAT_VERSION = "tether-corpus/1"
TOKENIZER = "porter unicode61 remove_diacritics 2"
TITLE_WEIGHT = 4.0
BODY_WEIGHT = 1.0
MAX_QUERY_TERMS = 32
_BATCH = 5000
MAX_SOURCE_BYTES = 2**30  # 1 GiB: the whole HotpotQA training set (566 MB) fits; /dev/zero does not
MAX_LINE_CHARS = 8_000_000  # a JSONL line: one paragraph, with room for JSON escapes
MAX_PARAGRAPH_CHARS = 1_000_000  # a paragraph's text (a long Wikipedia article is ~100k characters)
_READ_CHUNK = 1 << 20

# Words too common to help a BM25 OR-query (and costly: they match most paragraphs). Dropped from
# a query unless nothing else is left.
_STOPWORD_TEXT = """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    s t"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Sentence ends in whitespace-normalised text: . ! ? then a space; CJK full stops need no space.
# (Written to start with the literal space, which the regex engine finds fast.)
_SENTENCE_END = re.compile(r" (?<=[.!?] )")
_CJK_STOPS = "\u3002\uff01\uff1f"
_CJK_END = re.compile(f"(?<=[{_CJK_STOPS}]) ?")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*\Z")


# --- public records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusStats:
    """What `build_corpus` did: paragraphs stored, seconds taken, and what it read."""

    documents: int
    seconds: float
    source_format: str = "jsonl"  # "jsonl", "json" or "hotpotqa"
    duplicates: int = 0  # paragraphs read but not stored because the same title and text came before


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
    """A search result; `score` is the negated BM25 (higher is better)."""

    title: str
    text: str
    score: float


# --- text helpers -------------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Lone surrogates replaced, NFC, whitespace collapsed to single spaces, stripped."""
    return " ".join(unicodedata.normalize("NFC", clean_text(text)).split())


def split_sentences(text: str) -> list[str]:
    """Sentences of plain text: split at . ! ? followed by space (and CJK full stops), line by line;
    a piece starting in lower case is joined back ("U.S. state" is one sentence). Linear in the
    text's length: each sentence's pieces are collected and joined once."""
    out: list[str] = []
    current: list[str] = []  # the pieces of the sentence being built
    for line in text.splitlines():
        line = _clean(line)
        if not line:
            continue
        pieces = _SENTENCE_END.split(line)
        if any(stop in line for stop in _CJK_STOPS):
            pieces = [p for piece in pieces for p in _CJK_END.split(piece)]
        for piece in pieces:
            if not piece:
                continue
            if current and not piece[:1].islower():
                out.append(" ".join(current))
                current = []
            current.append(piece)
    if current:
        out.append(" ".join(current))
    return out


def _words(text: str) -> list[str]:
    """Runs of letters, digits and combining marks (any script); everything else separates."""
    words: list[str] = []
    current: list[str] = []
    for ch in text:
        if unicodedata.category(ch)[0] in "LNM":
            current.append(ch)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words


def fold_text(text: str) -> str:
    """Case- and accent-insensitive form: NFKD, combining marks dropped, casefolded."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def title_key(text: str) -> str:
    """A title's words, folded and space-joined: "Zürich (city)" and "zurich city" share a key."""
    if text.isascii():  # the same result, faster
        return " ".join(_ASCII_WORD.findall(text.lower()))
    return " ".join(_words(fold_text(text)))


def base_title(title: str) -> str:
    """The title without a trailing disambiguation: "Ed Wood (film)" -> "Ed Wood"."""
    return _PARENTHETICAL.sub("", title) or title


def fts_query(text: str, max_terms: int = MAX_QUERY_TERMS) -> str:
    """A safe FTS5 MATCH expression for arbitrary text: its distinct words, each double-quoted
    (so AND, OR, NEAR, *, :, ^, parentheses and quotes lose all meaning), joined by OR; common
    English words are left out unless nothing else remains. "" when the text has no words."""
    words = list(dict.fromkeys(w.casefold() for w in _words(unicodedata.normalize("NFKC", text))))
    content = [w for w in words if w not in STOPWORDS]
    chosen = (content or words)[:max_terms]
    return " OR ".join(f'"{w}"' for w in chosen)


# --- reading the source file --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Paragraph:
    title: str
    sentences: tuple[str, ...]


def _require_fts5(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.tether_fts5_probe USING fts5(x)")
        conn.execute("DROP TABLE temp.tether_fts5_probe")
    except sqlite3.OperationalError:
        raise ConfigError(
            f"this Python's SQLite ({sqlite3.sqlite_version}) lacks the FTS5 extension, which the offline "
            "knowledge base needs; use a Python built with FTS5 (the python.org and most Linux builds are)"
        ) from None


def _read_text(source: Path) -> str:
    """The source's text, read in chunks and refused past MAX_SOURCE_BYTES (a device such as
    /dev/zero is refused before reading; a FIFO is read, up to the cap)."""
    try:
        mode = source.stat().st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            raise ConfigError(f"{source}: is a device, not a JSON or JSONL file")
        chunks: list[bytes] = []
        size = 0
        with source.open("rb") as f:
            while chunk := f.read(_READ_CHUNK):
                size += len(chunk)
                if size > MAX_SOURCE_BYTES:
                    raise ConfigError(f"{source}: larger than {MAX_SOURCE_BYTES:,} bytes; split it into smaller files")
                chunks.append(chunk)
        data = b"".join(chunks)
        del chunks
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a JSON or JSONL file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}: line {line}: not UTF-8 text") from None


def _plain_paragraph(obj: object, where: str) -> _Paragraph:
    """A `{"title", "text"}` object, checked; `where` names it ("file: line 3") for errors."""
    if not isinstance(obj, dict):
        raise ConfigError(f'{where}: expected an object {{"title": ..., "text": ...}}, got {_json_kind(obj)}')
    missing = [key for key in ("title", "text") if key not in obj]
    if missing:
        raise ConfigError(f"{where}: missing key {' and '.join(map(repr, missing))}")
    title, text = obj["title"], obj["text"]
    if not isinstance(title, str) or not isinstance(text, str):
        bad = "title" if not isinstance(title, str) else "text"
        raise ConfigError(f"{where}: {bad!r} must be a string, got {_json_kind(obj[bad])}")
    _check_paragraph_size(len(title) + len(text), where)
    title = _clean(title)
    if not title:
        raise ConfigError(f"{where}: 'title' is empty")
    sentences = split_sentences(text)
    if not sentences:
        raise ConfigError(f"{where}: 'text' is empty")
    return _Paragraph(title, tuple(sentences))


def _hotpot_paragraphs(obj: object, where: str) -> Iterator[_Paragraph]:
    """The paragraphs of one HotpotQA question: `context` is `[[title, [sentences]], ...]`."""
    if not isinstance(obj, dict) or "context" not in obj:
        raise ConfigError(f"{where}: expected a HotpotQA question (an object with 'context'), like item 0")
    context = obj["context"]
    if not isinstance(context, list):
        raise ConfigError(f"{where}: 'context' must be a list of [title, [sentences]], got {_json_kind(context)}")
    for j, entry in enumerate(context):
        here = f"{where}: context[{j}]"
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], list)
            and all(isinstance(s, str) for s in entry[1])
        ):
            raise ConfigError(f"{here}: expected [title, [sentence, ...]] with strings")
        _check_paragraph_size(len(entry[0]) + sum(len(s) for s in entry[1]), here)
        title = _clean(entry[0])
        if not title:
            raise ConfigError(f"{here}: the title is empty")
        sentences = tuple(s for s in map(_clean, entry[1]) if s)
        if not sentences:
            raise ConfigError(f"{here}: paragraph {title!r} has no sentences")
        yield _Paragraph(title, sentences)


def _check_paragraph_size(size: int, where: str) -> None:
    if size > MAX_PARAGRAPH_CHARS:
        raise ConfigError(
            f"{where}: a paragraph of {size:,} characters (the limit is {MAX_PARAGRAPH_CHARS:,}); "
            "split it into paragraphs"
        )


def _json_kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _parse_jsonl(source: Path, text: str) -> Iterator[_Paragraph]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise ConfigError(
                f"{source}: line {number}: {len(line):,} characters long (the limit is {MAX_LINE_CHARS:,}); "
                "split it into paragraphs"
            )
        try:
            obj = json.loads(line)
        except ValueError as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise ConfigError(f"{source}: line {number}: not valid JSON ({detail})") from None
        except RecursionError:
            raise ConfigError(f"{source}: line {number}: not valid JSON (nested too deeply)") from None
        yield _plain_paragraph(obj, f"{source}: line {number}")


def _is_hotpot(item: object) -> bool:
    return isinstance(item, dict) and "context" in item


def _parse_json(source: Path, text: str) -> tuple[str, Iterator[_Paragraph]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except ValueError as exc:  # e.g. numbers too long to convert
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, list):
        raise ConfigError(f"{source}: expected a JSON list of documents or HotpotQA questions, got {_json_kind(data)}")
    if not data:
        raise ConfigError(f"{source}: the list is empty; there are no documents to index")
    if _is_hotpot(data[0]):

        def hotpot() -> Iterator[_Paragraph]:
            for i, item in enumerate(data):
                yield from _hotpot_paragraphs(item, f"{source}: item {i}")

        return "hotpotqa", hotpot()
    return "json", (_plain_paragraph(item, f"{source}: item {i}") for i, item in enumerate(data))


def _read_source(source: Path) -> tuple[str, Iterator[_Paragraph]]:
    """The format detected and the paragraphs of `source` (checked lazily, in file order)."""
    text = _read_text(source)
    stripped = text.lstrip()
    if not stripped:
        raise ConfigError(f"{source}: the file is empty; there are no documents to index")
    if stripped[0] == "[":
        return _parse_json(source, text)
    if stripped[0] == "{":
        return "jsonl", _parse_jsonl(source, text)
    line = text[: len(text) - len(stripped)].count("\n") + 1
    raise ConfigError(
        f"{source}: line {line}: expected JSONL ({{...}} per line), a JSON list, or HotpotQA JSON; "
        f"found {stripped[:20]!r}"
    )


# --- building -----------------------------------------------------------------------------------------------------

_SCHEMA = f"""
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
_INDEXES = """
CREATE INDEX docs_title ON docs(title);
CREATE INDEX docs_title_fold ON docs(title_fold);
CREATE INDEX docs_title_key ON docs(title_key);
CREATE INDEX docs_base_key ON docs(base_key);
"""


_Row = tuple[int, str, str, str, str, str]


def _rows(paragraphs: Iterable[_Paragraph], counts: list[int]) -> Iterator[_Row]:
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
        if out.stat().st_size and _format_of(out) != FORMAT_VERSION:
            raise ConfigError(f"{out}: exists and is not a tether knowledge base; refusing to overwrite it")
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: the folder {out.parent} does not exist")


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "a special file")


def _format_of(path: Path) -> str | None:
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


def build_corpus(source: Path | str, out: Path | str) -> CorpusStats:
    """Index `source` (JSONL, JSON list, or HotpotQA JSON; see the module docstring) into a new
    SQLite knowledge base at `out`, replacing an earlier one there. Raises ConfigError, naming the
    file and the line or item, for unreadable, empty or malformed input; `out` is then untouched."""
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    _check_output(source, out)
    source_format, paragraphs = _read_source(source)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")  # same folder: atomic rename
    counts = [0, 0]
    try:
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"{out}: cannot write a file in {out.parent} ({exc})") from None
        try:
            _require_fts5(conn)
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB while building
            conn.execute("BEGIN")
            for statement in _statements(_SCHEMA):
                conn.execute(statement)
            for batch in _batches(_rows(paragraphs, counts)):
                conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)", batch)
                conn.executemany(
                    "INSERT INTO docs_fts(rowid, title, body) VALUES (?, ?, ?)", [(r[0], r[1], r[2]) for r in batch]
                )
            if counts[0] == 0:
                raise ConfigError(f"{source}: no documents to index")
            for statement in _statements(_INDEXES):
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


def _statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# --- querying -----------------------------------------------------------------------------------------------------


class Corpus:
    """A knowledge base built by `build_corpus`, opened read-only. Safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such knowledge base (build one with: tether corpus build FILE -o KB)")
        version = _format_of(self.path)
        if version != FORMAT_VERSION:
            found = f"format {version!r}" if version else "not a tether knowledge base"
            raise ConfigError(f"{self.path}: {found}; rebuild it with: tether corpus build FILE -o KB")
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        _require_fts5(self._conn)
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
        return [Hit(title, body.replace("\n", " "), -float(rank)) for title, body, rank in rows]

    def get(self, title: str) -> Document | None:
        """The paragraph with exactly this title, else one whose title matches it case-insensitively
        (the first stored, if several do)."""
        title = _clean(title)
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
