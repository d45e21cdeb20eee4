"""Text helpers of the knowledge base: cleaning, sentence splitting, title keys and safe FTS5 queries.

Any text is made into a safe FTS5 query: its words are quoted and ORed, everything else dropped, so
no model output can make a query fail. Common English words are dropped from a query that has other
words; a query of nothing but them ("of the") matches most paragraphs and is the slow case (about
150 ms on 100k paragraphs, against about 10 ms for a few keywords; see benchmarks/bench_corpus.py).
"""

from __future__ import annotations

import re
import unicodedata

from tether.text import clean_text

__all__ = [
    "MAX_QUERY_TERMS",
    "STOPWORDS",
    "base_title",
    "fold_text",
    "fts_query",
    "normalise",
    "split_sentences",
    "title_key",
    "words",
]

MAX_QUERY_TERMS = 32

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


def normalise(text: str) -> str:
    """Lone surrogates replaced, NFC, whitespace collapsed to single spaces, stripped."""
    return " ".join(unicodedata.normalize("NFC", clean_text(text)).split())


def split_sentences(text: str) -> list[str]:
    """Sentences of plain text: split at . ! ? followed by space (and CJK full stops), line by line;
    a piece starting in lower case is joined back ("U.S. state" is one sentence). Linear in the
    text's length: each sentence's pieces are collected and joined once."""
    out: list[str] = []
    current: list[str] = []  # the pieces of the sentence being built
    for line in text.splitlines():
        line = normalise(line)
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


def words(text: str) -> list[str]:
    """Runs of letters, digits and combining marks (any script); everything else separates."""
    found: list[str] = []
    current: list[str] = []
    for ch in text:
        if unicodedata.category(ch)[0] in "LNM":
            current.append(ch)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return found


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
    return " ".join(words(fold_text(text)))


def base_title(title: str) -> str:
    """The title without a trailing disambiguation: "Ed Wood (film)" -> "Ed Wood"."""
    return _PARENTHETICAL.sub("", title) or title


def fts_query(text: str, max_terms: int = MAX_QUERY_TERMS) -> str:
    """A safe FTS5 MATCH expression for arbitrary text: its distinct words, each double-quoted
    (so AND, OR, NEAR, *, :, ^, parentheses and quotes lose all meaning), joined by OR; common
    English words are left out unless nothing else remains. "" when the text has no words."""
    distinct = list(dict.fromkeys(w.casefold() for w in words(unicodedata.normalize("NFKC", text))))
    content = [w for w in distinct if w not in STOPWORDS]
    chosen = (content or distinct)[:max_terms]
    return " OR ".join(f'"{w}"' for w in chosen)
