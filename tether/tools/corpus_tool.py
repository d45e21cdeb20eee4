"""The `wikipedia` and `lookup` tools on an offline knowledge base (see `tether.corpus`).

Same interface as the online tools in `tether.tools.wikipedia`, so prompts and agents need not
change; only the pages come from a local SQLite file:

    wikipedia: Ed Wood     -> "Ed Wood: Edward Davis Wood Jr. was an American filmmaker, ..."
    wikipedia: Mercury     -> "'Mercury' is ambiguous; it may refer to: Mercury (planet); Mercury (element)."
    wikipedia: 1994 biopic -> "No page titled '1994 biopic'. Closest pages: Ed Wood (film): Ed Wood is a 1994 ... | ..."
    lookup: Burton         -> "(Result 1/2) <the next sentence of that page containing 'Burton'>"

How `wikipedia: <text>` chooses a page, first rule that applies:

1. a title equal to the text (exactly, else case-insensitively);
2. a title equal to it up to case, accents and punctuation ("zurich" opens "Zürich");
3. titles that are the text plus a disambiguation ("Ed Wood" opens "Ed Wood (film)" if it is the
   only one; with several, the observation lists them);
4. the best BM25 hit of a full-text search, if the text has at least half of the words of its
   title, disambiguation aside ("Doctor Strange director" opens "Doctor Strange (2016 film)");
   otherwise the observation gives the closest pages, each as its title and its sentence with the
   most of the text's words, which the model can read at once or open by name.

Every observation is one line, capped at `max_chars`. The tools share one state (the page last
opened and the lookup cursor), kept per agent run (a new run starts with no page open) and guarded by
a lock, since tools run in worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from tether.corpus import STOPWORDS, Corpus, Document, base_title, fold_text, title_key
from tether.engine.run_state import RunLocal
from tether.engine.tool import Tool
from tether.errors import ConfigError, ToolError
from tether.tools._encyclopedia import (
    LOOKUP_NEEDS_KEYWORD,
    MAX_OPTIONS,
    MAX_SIMILAR,
    NO_PAGE_OPEN,
    SEARCH_NEEDS_TEXT,
    OpenPage,
    ambiguous,
    closest_pages,
    nothing_matches,
    page_text,
)

__all__ = ["CorpusSession", "make_corpus_retriever", "make_corpus_tools"]

_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def _content_words(text: str) -> set[str]:
    words = set(title_key(text).split())
    return (words - STOPWORDS) or words


def _nearest_sentence(sentences: Sequence[str], words: set[str]) -> tuple[str, int]:
    """The first of the sentences that shares the most content words with the query, and where the
    first of those words begins in it (0 when none is found as written)."""
    best = max(sentences, key=lambda sentence: len(words & _content_words(sentence)))
    folded = fold_text(best)
    found = [i for word in words & _content_words(best) if (i := folded.find(word)) >= 0]
    return best, min(found, default=0)


class CorpusSession:
    """The state the corpus-backed `wikipedia` and `lookup` tools share."""

    def __init__(self, corpus: Corpus, *, max_chars: int = 600, max_sentences: int = 5) -> None:
        if max_chars < 40 or max_sentences < 1:
            raise ConfigError("corpus tools: max_chars must be at least 40 and max_sentences positive")
        self.corpus = corpus
        self.max_chars = max_chars
        self.max_sentences = max_sentences
        self._lock = threading.Lock()
        self._open: RunLocal[OpenPage[Document]] = RunLocal(OpenPage)

    def search(self, query: str) -> str:
        """Observation for `wikipedia: <query>`; remembers the page opened for `lookup`."""
        query = " ".join(query.split()).strip(_QUOTES).strip()
        if not query:
            raise ToolError(SEARCH_NEEDS_TEXT)
        state = self._open.get()
        with self._lock:
            search = state.begin_search()
        observation, page = self._resolve(query)
        with self._lock:
            state.opened(search, page)
        return observation

    def _resolve(self, query: str) -> tuple[str, Document | None]:
        doc = self.corpus.get(query)
        if doc is None:
            same = self.corpus.titles_with_key(query)
            doc = self.corpus.get(same[0]) if same else None
        if doc is None:
            variants = self.corpus.titles_with_base(query, limit=MAX_OPTIONS + 1)
            if len(variants) > 1:
                return ambiguous(query, variants, self.max_chars), None
            doc = self.corpus.get(variants[0]) if variants else None
        if doc is None:
            hits = self.corpus.search(query, k=MAX_SIMILAR)
            if not hits:
                raise ToolError(nothing_matches(query, "in the offline encyclopedia"))
            if self._names(query, hits[0].title):
                doc = self.corpus.get(hits[0].title)
            if doc is None:
                words = _content_words(query)
                snippets = [(h.title, *_nearest_sentence(h.sentences, words)) for h in hits]
                return closest_pages(query, snippets, self.max_chars), None
        return page_text(doc.title, doc.sentences, self.max_chars, self.max_sentences, titled=True), doc

    @staticmethod
    def _names(query: str, title: str) -> bool:
        """Whether the query names this page: it has at least half of the words of the title
        without its disambiguation ("(film)" does not count), and at least one."""
        base = _content_words(base_title(title))
        return len(_content_words(query) & base) >= max(1, (len(base) + 1) // 2)

    def lookup(self, keyword: str) -> str:
        """Observation for `lookup: <keyword>`: the next sentence of the open page containing it
        (case- and accent-insensitive), as "(Result i/n) sentence"."""
        keyword = " ".join(keyword.split()).strip(_QUOTES).strip()
        if not keyword:
            raise ToolError(LOOKUP_NEEDS_KEYWORD)
        state = self._open.get()
        with self._lock:
            page = state.page
            if page is None:
                raise ToolError(NO_PAGE_OPEN)
            return state.cursor.next(page.title, page.sentences, keyword, fold=fold_text, max_chars=self.max_chars)


def make_corpus_tools(
    path: Path | str | Corpus,
    *,
    max_chars: int = 600,
    max_sentences: int = 5,
    timeout_s: float = 5.0,
) -> tuple[Tool, Tool]:
    """A `wikipedia` tool and a `lookup` tool over the knowledge base at `path` (built with
    `tether.corpus.build_corpus`), or over an open `Corpus`. Opening it here means a missing or
    foreign file is a ConfigError now, not a failed tool call later."""
    corpus = path if isinstance(path, Corpus) else Corpus(path)
    session = CorpusSession(corpus, max_chars=max_chars, max_sentences=max_sentences)
    search_tool = Tool(
        name="wikipedia",
        description="Search the offline encyclopedia for this title or topic; returns the best page's first "
        "sentences, or similar titles.",
        func=session.search,
        example="France",
        timeout_s=timeout_s,
    )
    lookup_tool = Tool(
        name="lookup",
        description="Return the next sentence containing this keyword in the offline encyclopedia page that "
        "wikipedia last opened.",
        func=session.lookup,
        example="population",
        timeout_s=timeout_s,
        repeatable=True,  # the same keyword again gives the next sentence
    )
    return search_tool, lookup_tool


def make_corpus_retriever(path: Path | str | Corpus, *, k: int = 5, follow: int = 2) -> Callable[[str], list[str]]:
    """A retriever for `Agent(retriever=...)`: `k` paragraphs of the knowledge base for a question, each
    as "Title: text". First the `follow` paragraphs (at most k) that best match the question's words
    (BM25), then the pages they name (`Corpus.names_in`) that match the question best, then the
    question's next best paragraphs. A two-hop question's second page is often named by its first and
    shares few words with the question: on the 150 HotpotQA questions of the README's knowledge base, 5
    paragraphs held both supporting pages for 116 with `follow=2`, against 78 for the 5 best by BM25
    alone (`follow=0`; benchmarks/bench_retrieval.py)."""
    if k < 1:
        raise ConfigError(f"a retriever needs k of at least 1, not {k}")
    if follow < 0:
        raise ConfigError(f"a retriever follows the names in 0 or more paragraphs, not {follow}")
    corpus = path if isinstance(path, Corpus) else Corpus(path)

    def retrieve(question: str) -> list[str]:
        best = corpus.search(question, k=2 * k)
        chosen = best[: min(follow, k)]
        named = [title for hit in chosen for title in corpus.names_in(hit.text)]
        for hit in [*corpus.search_among(question, named, k=k), *best[len(chosen) :]]:
            if len(chosen) == k:
                break
            if all(hit.title != kept.title or hit.text != kept.text for kept in chosen):
                chosen.append(hit)
        return [f"{hit.title}: {hit.text}" for hit in chosen]

    return retrieve
