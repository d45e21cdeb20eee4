"""Reading a knowledge base's source file into checked paragraphs.

Inputs, detected from the file's first non-blank character:

- JSONL: one `{"title": ..., "text": ...}` object per line (blank lines allowed);
- JSON: a list of such objects;
- HotpotQA: a JSON list of questions whose `context` is `[[title, [sentence, ...]], ...]`.

A malformed input is a ConfigError naming the file and the line (JSONL) or the item (JSON); nothing
is skipped silently. HotpotQA keeps its own sentence boundaries; plain text is split with a regex.

Sizes are capped before any work: the source at MAX_SOURCE_BYTES (read in bounded chunks, so an
endless stream such as a FIFO stops at the cap), a JSONL line at MAX_LINE_CHARS and a paragraph at
MAX_PARAGRAPH_CHARS; past a cap the build is refused with one line naming the file and line or item.
Lone surrogates (a JSON `\\ud800` escape) are replaced by U+FFFD where text is read.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tether.corpus.text import normalise, split_sentences
from tether.errors import ConfigError

__all__ = ["MAX_LINE_CHARS", "MAX_PARAGRAPH_CHARS", "MAX_SOURCE_BYTES", "Paragraph", "read_source"]

MAX_SOURCE_BYTES = 2**30  # 1 GiB: the whole HotpotQA training set (566 MB) fits; /dev/zero does not
MAX_LINE_CHARS = 8_000_000  # a JSONL line: one paragraph, with room for JSON escapes
MAX_PARAGRAPH_CHARS = 1_000_000  # a paragraph's text (a long Wikipedia article is ~100k characters)
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Paragraph:
    """One paragraph read from the source: its cleaned title and sentences."""

    title: str
    sentences: tuple[str, ...]


def read_source(source: Path) -> tuple[str, Iterator[Paragraph]]:
    """The format detected ("jsonl", "json" or "hotpotqa") and the paragraphs of `source`
    (checked lazily, in file order)."""
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


def _plain_paragraph(obj: object, where: str) -> Paragraph:
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
    title = normalise(title)
    if not title:
        raise ConfigError(f"{where}: 'title' is empty")
    sentences = split_sentences(text)
    if not sentences:
        raise ConfigError(f"{where}: 'text' is empty")
    return Paragraph(title, tuple(sentences))


def _hotpot_paragraphs(obj: object, where: str) -> Iterator[Paragraph]:
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
        title = normalise(entry[0])
        if not title:
            raise ConfigError(f"{here}: the title is empty")
        sentences = tuple(s for s in map(normalise, entry[1]) if s)
        if not sentences:
            raise ConfigError(f"{here}: paragraph {title!r} has no sentences")
        yield Paragraph(title, sentences)


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


def _parse_jsonl(source: Path, text: str) -> Iterator[Paragraph]:
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


def _parse_json(source: Path, text: str) -> tuple[str, Iterator[Paragraph]]:
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
    if isinstance(data[0], dict) and "context" in data[0]:

        def hotpot() -> Iterator[Paragraph]:
            for i, item in enumerate(data):
                yield from _hotpot_paragraphs(item, f"{source}: item {i}")

        return "hotpotqa", hotpot()
    return "json", (_plain_paragraph(item, f"{source}: item {i}") for i, item in enumerate(data))
