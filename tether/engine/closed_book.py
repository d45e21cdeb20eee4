"""One closed-book pass: the model reasons in its own words, then writes one `answer:` line.

Two paths share it: closed-book mode (no tools at all, the baseline an agent must beat) and the
fallback, which answers a run that did not finish on its own (step limit, loop) from the question and
what the run observed, given as numbered evidence lines, instead of a grammar-forced guess. Either may
also read passages an agent's retriever found for the question (an "open-book" pass).

What the pass reads comes before the question, which ends the prompt: after a numbered list, a raw
completion went on writing the list ("9. Seminole music: ...") instead of reasoning.

The grammar admits free reasoning text in which `answer:` (in any case) does not occur; the first
`answer:` begins the answer, `answer: <answer>` in the answer grammar of the expected type, and its
line ends the text. Models often write it mid-line ("so the answer is: answer: 416"): when only a line
could begin with it, such a line ran on ("(digits only, no units) (no units) ...") until the budget cut
it. The pass is bounded by its token budget; if the budget cuts it before the answer, the answer comes
from a continuation that starts with `answer:` (the step is then `truncated`).

An agent's typed output narrows the answer line to that type's grammar (`answer`, with `answer_format`
telling the model what to write), on both paths, as in the step grammar.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from itertools import islice

import lark

from tether.engine.answer import AnswerType, answer_grammar
from tether.engine.backends.base import Backend, Sampling
from tether.engine.events import Event, TextDelta
from tether.engine.gbnf import Alt, CharClass, Grammar, Lit, Node, Ref, Repeat, Seq, either_case, syntax_problem
from tether.engine.prompt import PromptStyle, open_turn, sanitise_observation
from tether.engine.protocol import ANSWER, CHARS_PER_TOKEN, Action, Restriction, Step, StopReason, TokenCounts
from tether.errors import BackendError, ContextOverflow, ParseError
from tether.text import clean_text

__all__ = [
    "EVIDENCE_LINE_CHARS",
    "EVIDENCE_MAX_LINES",
    "PASSAGES_MAX",
    "PASSAGE_CHARS",
    "ClosedBookGrammar",
    "PassResult",
    "closed_book_grammar",
    "closed_book_pass",
    "closed_book_prompt",
    "evidence_lines",
    "kept_passages",
    "passage_lines",
    "reading_block",
]

EVIDENCE_MAX_LINES = 12
EVIDENCE_LINE_CHARS = 300
_INSTRUCTIONS = resources.files("tether.prompts").joinpath("closed_book.txt").read_text("utf-8")
PASSAGES_MAX = 8
PASSAGE_CHARS = 1200
_EVIDENCE_HEADING = "Notes from an earlier search for this question (they may be incomplete; use what helps):"
_PASSAGES_HEADING = "Passages found for this question (they may be incomplete or off the point; use what helps):"
_ANSWER_FORMATS: dict[AnswerType, str] = {
    "text": "<short final answer>",
    "number": "<number> (digits only, no units)",
    "yes-no": "yes or no",
    "short": "<the answer alone>",
}
# Said outside the answer line's placeholder, which a small model copied ("answer: yes/no, not a sentence>").
_ANSWER_HINTS: dict[AnswerType, str] = {
    "short": "The answer is a few words: a name, a place, a date, a number, or yes/no; not a sentence.",
}
_ANSWER_WORD = "answer"
_ANSWER_OPENING = re.compile(r"answer:", re.IGNORECASE)  # where the answer begins (the grammar's `opening`)
# What may close the answer before its newline: refused, ")" made "(answer: 63" go on as 63,000,000,...
_CLOSERS = ")]}.*\"'`"
# What may open an answer that cannot itself begin with it (a short, number or yes/no answer): answer:
# "Texas Tech University". The mark is not part of the answer.
_OPENERS = '"\u201c'
_CONTINUATION_TOKENS = 96  # an answer line after a cut: the answer grammar bounds it well below this


def evidence_lines(steps: Sequence[Step], *, limit: int = EVIDENCE_MAX_LINES) -> list[str]:
    """What a run observed, one numbered line per tool call that ran and did not fail: the command
    and its input (an observation alone, "12", says little), then the observation; each line cleaned
    and capped, at most `limit` of them."""
    lines: list[str] = []
    for step in steps:
        if step.action is None or step.observation is None or step.loop is not None:
            continue
        if step.observation.startswith("error:"):
            continue
        line = f"{step.action.command}: {step.action.input} -> {step.observation}"
        lines.append(f"{len(lines) + 1}. {sanitise_observation(line, limit=EVIDENCE_LINE_CHARS)}")
        if len(lines) == limit:
            break
    return lines


def kept_passages(passages: Iterable[str], *, limit: int = PASSAGES_MAX) -> list[str]:
    """The passages a pass reads: each cleaned to one line and capped, blank ones left out, at most
    `limit` of them (a retriever's 100 MB or millionth passage costs no more than the kept ones)."""
    cleaned = (sanitise_observation(p, limit=PASSAGE_CHARS) for p in passages)
    return list(islice((p for p in cleaned if p), limit))


def passage_lines(passages: Sequence[str], *, limit: int = PASSAGES_MAX) -> list[str]:
    """Passages as numbered lines (`kept_passages`)."""
    return [f"{i}. {p}" for i, p in enumerate(kept_passages(passages, limit=limit), 1)]


def reading_block(passages: Sequence[str]) -> str:
    """What a prompt shows of the passages found for its question, before the question: a heading and
    the numbered passages; "" for none."""
    lines = passage_lines(passages)
    return "\n".join([_PASSAGES_HEADING, *lines]) if lines else ""


def closed_book_prompt(
    backend: Backend,
    question: str,
    evidence: Sequence[str] = (),
    answer_type: AnswerType = "text",
    style: PromptStyle = "auto",
    answer_format: str | None = None,
    passages: Sequence[str] = (),
) -> str:
    """The pass's prompt: the instructions, then the passages it reads and, for the fallback, the
    evidence lines, then the question; `answer_format` (a typed output's) says what the answer line
    holds instead of `answer_type`'s words."""
    shown = answer_format or _ANSWER_FORMATS[answer_type]
    system = _INSTRUCTIONS.format(answer_format=shown).rstrip("\n")
    if answer_format is None and answer_type in _ANSWER_HINTS:
        system += " " + _ANSWER_HINTS[answer_type]
    parts = []
    if reading := reading_block(passages):
        parts.append(reading)
    if evidence:
        parts.append("\n".join([_EVIDENCE_HEADING, *evidence]))
    parts.append(f"Question: {sanitise_observation(question, limit=2000)}")
    return open_turn(backend, system, "\n\n".join(parts), style)


@dataclass(frozen=True)
class ClosedBookGrammar:
    """The pass's grammar (`grammar`) and the grammar of a continuation after `answer:` (`continuation`);
    `answer`, where given, is the answer's grammar in place of `answer_type`'s (a typed output's)."""

    answer_type: AnswerType
    answer: Grammar | None = None

    @cached_property
    def _answer(self) -> Grammar:
        """The answer's rules, plus `closing`: up to three closing marks (not part of the answer),
        then the newline."""
        found = self.answer if self.answer is not None else answer_grammar((), self.answer_type)
        answer = found.prefixed("answer")
        end = Seq((Repeat(CharClass.of(_CLOSERS), 0, 3), Lit("\n")))
        rules = {**answer.rules, "closing": end}
        if self._quoted:
            rules["opening-mark"] = Repeat(CharClass.of(_OPENERS), 0, 1)
        return Grammar(rules, answer.start)

    @property
    def _quoted(self) -> bool:
        """Whether an opening quote may come before the answer: where the answer's words hold none."""
        return self.answer is None and self.answer_type != "text"

    @property
    def _head(self) -> tuple[Node, ...]:
        """What comes between `answer: ` and the answer: the opening quote where one is allowed."""
        return (Ref("opening-mark"),) if self._quoted else ()

    @cached_property
    def grammar(self) -> Grammar:
        """root ::= block* prefix* "answer: " <answer> "\\n": the text before the answer cannot hold
        `answer:` in any case.

        A `prefix` is a start of `answer` ("a" to "answer"); a `block` is one character other than `a`,
        or prefixes ending in a character that breaks the last one (neither its next letter nor an `a`,
        which starts another). Every `a` starts a prefix, so each text splits one way."""
        answer = self._answer
        rules: dict[str, Node] = dict(answer.rules)
        letters = [either_case(ch) for ch in _ANSWER_WORD]
        starts = _ANSWER_WORD[0].upper() + _ANSWER_WORD[0].lower()
        prefix: Node = letters[-1]
        broken: Node = Seq((letters[-1], CharClass.of(":" + starts, negated=True)))
        for k in range(len(_ANSWER_WORD) - 2, -1, -1):  # inside out: a prefix of the letters from k on
            nxt = _ANSWER_WORD[k + 1]
            prefix = Seq((letters[k], Repeat(prefix, 0, 1)))
            broken = Seq((letters[k], Alt((CharClass.of(nxt.upper() + nxt.lower() + starts, negated=True), broken))))
        rules["prefix"] = prefix
        rules["block"] = Alt((CharClass.of(starts, negated=True), Seq((Repeat(Ref("prefix"), 0, None), broken))))
        opening = Seq((*letters, Lit(": ")))
        rules["root"] = Seq(
            (
                Repeat(Ref("block"), 0, None),
                Repeat(Ref("prefix"), 0, None),
                opening,
                *self._head,
                Ref(answer.start),
                Ref("closing"),
            )
        )
        return Grammar(rules, "root")

    @cached_property
    def continuation(self) -> Grammar:
        """What follows a prompt that ends `answer:`: the answer, then the end of the line."""
        answer = self._answer
        return Grammar(
            {**answer.rules, "root": Seq((Lit(" "), *self._head, Ref(answer.start), Ref("closing")))}, "root"
        )

    @cached_property
    def gbnf(self) -> str:
        return self.grammar.to_gbnf()

    @cached_property
    def continuation_gbnf(self) -> str:
        return self.continuation.to_gbnf()

    def parse(self, text: str) -> Action:
        """The reasoning (as the thought) and the answer in `text`, or ParseError saying where it left
        the grammar."""
        try:
            tree = self.grammar.parser.parse(text)
        except lark.UnexpectedInput as exc:
            problem = syntax_problem(text, exc, self.grammar.parser)
            raise ParseError(
                f"invalid closed-book answer {problem}", text=text, position=problem.position, expected=problem.expected
            ) from None
        opening = _ANSWER_OPENING.search(text)
        assert opening is not None  # the grammar ends every text with the answer
        (answer,) = tree.find_data(self.grammar.lark_rule(self._answer.start))  # its closing marks left out
        value = text[answer.meta.start_pos : answer.meta.end_pos]
        return Action(thought=text[: opening.start()].rstrip(), command=ANSWER, input=value.strip(" "))


@cache
def closed_book_grammar(answer_type: AnswerType = "text", answer: Grammar | None = None) -> ClosedBookGrammar:
    return ClosedBookGrammar(answer_type, answer)


@dataclass
class PassResult:
    """The pass's step, and `stop` when the pass failed in a way that ends the run (the backend, the
    context window, the time limit). `grammar_ignored`: constrained, yet the text left the grammar."""

    step: Step
    stop: StopReason | None = None
    grammar_ignored: bool = False


@dataclass
class _Decoded:
    text: str
    complete: bool  # the answer line (for a continuation: the line) was written
    cut: bool = False  # the token budget ended it
    stop: StopReason | None = None
    error: str | None = None


def closed_book_pass(
    backend: Backend,
    question: str,
    *,
    index: int,
    restriction: Restriction,
    evidence: Sequence[str] = (),
    passages: Sequence[str] = (),
    answer_type: AnswerType = "text",
    constrained: bool = True,
    sampling: Sampling | None = None,
    max_tokens: int = 384,
    deadline: float,
    style: PromptStyle = "auto",
    answer: Grammar | None = None,
    answer_format: str | None = None,
) -> Generator[Event, None, PassResult]:
    """Run one pass, yielding its text as TextDelta events; the step is numbered `index`. `answer` and
    `answer_format` narrow the answer line to a typed output (see `closed_book_prompt`)."""
    grammars = closed_book_grammar(answer_type, answer)
    prompt = closed_book_prompt(backend, question, evidence, answer_type, style, answer_format, passages)
    sampling = sampling or Sampling()
    tokens = TokenCounts()
    began = time.monotonic()
    first = yield from _decode(
        backend, prompt, grammars.gbnf if constrained else None, max_tokens, sampling, tokens, deadline, index
    )
    text = first.text
    if not first.complete and first.stop is None:  # no answer line: keep the whole reasoning lines, ask for it
        kept = _reasoning_before_cut(text)
        opening = _ANSWER_WORD + ":"
        yield TextDelta(index, ("\n" if text and not text.endswith("\n") else "") + opening)
        more = yield from _decode(
            backend,
            prompt + kept + opening,
            grammars.continuation_gbnf if constrained else None,
            _CONTINUATION_TOKENS,
            sampling,
            tokens,
            deadline,
            index,
            continuation=True,
        )
        text = kept + opening + more.text
        first = _Decoded(text, more.complete, first.cut, more.stop, more.error)
    step = Step(index=index, raw_text=text, restriction=restriction, tokens=tokens, truncated=first.cut)
    step.timing.decode_s = time.monotonic() - began
    if first.stop is not None:
        step.error = first.error
        return PassResult(step, first.stop)
    try:
        step.action = grammars.parse(text if text.endswith("\n") else text + "\n")
    except ParseError as exc:
        step.error = str(exc)
        return PassResult(step, grammar_ignored=constrained)
    return PassResult(step)


def _reasoning_before_cut(text: str) -> str:
    """The cut text's reasoning: the text before a begun answer (the continuation writes the answer);
    else whole lines, a cut last line ending here unless it was the start of `answer:` (then dropped)."""
    opening = _ANSWER_OPENING.search(text)
    if opening is not None:
        return text[: opening.start()]
    head, _, last = text.rpartition("\n")
    kept = head + "\n" if head or text.startswith("\n") else ""
    if last and not _ANSWER_WORD.startswith(last[: len(_ANSWER_WORD)].casefold()):
        kept += last + "\n"
    return kept


def _decode(
    backend: Backend,
    prompt: str,
    grammar: str | None,
    max_tokens: int,
    sampling: Sampling,
    tokens: TokenCounts,
    deadline: float,
    index: int,
    *,
    continuation: bool = False,
) -> Generator[Event, None, _Decoded]:
    """One decode: stream until the answer line ends (a continuation: its first line), the budget
    (tokens, and CHARS_PER_TOKEN characters a token for a server that ignores `max_tokens`), or the deadline."""
    stats = TokenCounts()
    text, line_start, max_chars = "", 0, CHARS_PER_TOKEN * max_tokens
    complete = False
    stream: Iterator[str] | None = None
    try:
        stream = backend.stream(
            prompt, grammar=grammar, max_tokens=max_tokens, sampling=sampling, stats=stats, deadline=deadline
        )
        for raw in stream:
            piece = clean_text(raw[: max_chars - len(text)])
            text += piece
            while (end := text.find("\n", line_start)) != -1:  # each line this piece completed
                line, line_start = text[line_start:end], end + 1
                if continuation or _ANSWER_OPENING.search(line):
                    piece, text, complete = piece[: len(piece) - (len(text) - line_start)], text[:line_start], True
                    break
            if piece:
                yield TextDelta(index, piece)
            if complete or len(text) >= max_chars:
                break
            if time.monotonic() >= deadline:
                return _Decoded(text, False, stop=StopReason.TIME_LIMIT, error=_TIME_LIMIT_ERROR)
    except ContextOverflow as exc:
        return _Decoded(text, False, stop=StopReason.CONTEXT_LIMIT, error=str(exc))
    except BackendError as exc:
        return _Decoded(text, False, stop=StopReason.BACKEND_ERROR, error=str(exc))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        for name in TokenCounts.model_fields:
            setattr(tokens, name, getattr(tokens, name) + getattr(stats, name))
    cut = not complete and (len(text) >= max_chars or stats.sampled + stats.forced >= max_tokens)
    if not complete and not cut:  # the model ended the text itself: a last line without its newline counts
        complete = bool(text) if continuation else bool(_ANSWER_OPENING.search(text[line_start:]))
    return _Decoded(text, complete, cut)


_TIME_LIMIT_ERROR = "the run's time limit was reached while the closed-book pass was being decoded"
