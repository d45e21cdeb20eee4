"""Retrieval, measured apart from reasoning: which of a HotpotQA question's gold paragraphs a run
actually read. A gold title counts as reached when a `wikipedia` observation opened its page (the
offline tool starts the page's text with `<title>:`), a `lookup` read a sentence of it (a result
from the page open at the time), or the run read it among the passages of the agent's retriever
(`make_corpus_retriever` starts each with `<title>:`)."""

from __future__ import annotations

from collections.abc import Iterable

from tether.engine.protocol import Trace

__all__ = ["titles_reached"]

_LOOKUP_RESULT = "(Result "  # a lookup that found a sentence on the open page


def titles_reached(trace: Trace, gold: Iterable[str]) -> set[str]:
    """The titles of `gold` whose paragraphs the run opened or read."""
    wanted = sorted(set(gold), key=len, reverse=True)  # "Ed Wood (film)" is tried before "Ed Wood"
    reached = {t for t in wanted if any(p.startswith(f"{t}:") for p in trace.passages)}
    open_title: str | None = None  # the gold page open now, if the open page is one
    for step in trace.steps:
        action, observation = step.action, step.observation
        if action is None or observation is None or step.loop is not None:
            continue  # not run: an invalid step, the answer, or a repeat the loop detector answered
        if action.command == "wikipedia":
            open_title = next((t for t in wanted if observation.startswith(f"{t}:")), None)
            if open_title is not None:
                reached.add(open_title)
        elif action.command == "lookup" and open_title is not None and observation.startswith(_LOOKUP_RESULT):
            reached.add(open_title)
    return reached
