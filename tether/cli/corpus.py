"""`tether corpus build`: offline knowledge bases (tether.corpus) on the command line."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["corpus"]


@click.group()
def corpus() -> None:
    """Offline knowledge bases for the wikipedia and lookup tools."""


@corpus.command("build")
@click.argument("source", type=click.Path())
@click.option("-o", "--output", "out", type=click.Path(), required=True, help="the SQLite file to write")
def corpus_build(source: str, out: str) -> None:
    """Build a knowledge base from SOURCE: JSONL or JSON of {title, text}, or a HotpotQA-format file."""
    from tether.corpus import build_corpus

    stats = build_corpus(Path(source), Path(out))
    click.echo(
        f"{stats.documents} paragraphs ({stats.source_format}, {stats.duplicates} duplicates skipped) "
        f"in {stats.seconds:.1f}s -> {out}"
    )
