"""An offline knowledge base: paragraphs in SQLite with an FTS5 index ranked by BM25.

    stats = build_corpus(Path("hotpot.json"), Path("kb.sqlite"))   # JSONL, JSON list, or HotpotQA
    kb = Corpus("kb.sqlite")
    kb.search("Who directed Ed Wood?", k=5)  -> [Hit(title, sentences, score), ...]  (best first)
    kb.get("ed wood")                        -> Document | None  (exact, then case-insensitive)
    kb.names_in("...a film by Tim Burton")   -> ["Tim Burton"]  (the titles a text names)
    kb.search_among("director", ["Tim Burton", "Ed Wood (film)"], k=1)  -> [Hit]  (BM25 among them)

One job per module: `text` (cleaning, sentences, title keys, safe FTS5 queries), `readers` (the
source formats, checked and size-capped), `schema` (the SQLite layout), `build` (writing a knowledge
base atomically) and `store` (querying one). The paragraphs of a HotpotQA file's questions are
pooled and duplicates (same title and text) kept once.
"""

from __future__ import annotations

from tether.corpus.build import CorpusStats, build_corpus
from tether.corpus.readers import MAX_LINE_CHARS, MAX_PARAGRAPH_CHARS, MAX_SOURCE_BYTES
from tether.corpus.schema import FORMAT_VERSION
from tether.corpus.store import Corpus, Document, Hit
from tether.corpus.text import STOPWORDS, base_title, fold_text, fts_query, split_sentences, title_key

__all__ = [
    "FORMAT_VERSION",
    "MAX_LINE_CHARS",
    "MAX_PARAGRAPH_CHARS",
    "MAX_SOURCE_BYTES",
    "STOPWORDS",
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
