"""One closed-book pass: the model reasons in its own words, then writes one `answer:` line.

Two paths share it: closed-book mode (no tools at all, the baseline an agent must beat) and the
fallback, which answers a run that did not finish on its own (step limit, loop) from the question and
what the run observed, given as numbered evidence lines, instead of a grammar-forced guess.

The grammar admits free reasoning lines, none of which may start `answer:` (in any case), then exactly
one `answer: <answer>` line in the answer grammar of the expected type. The pass is bounded by its
token budget; if the budget cuts it before the answer line, the answer comes from a continuation
that starts with `answer:` (the step is then `truncated`).

An agent's typed output narrows the answer line to that type's grammar (`answer`, with `answer_format`
telling the model what to write), on both paths, as in the step grammar.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

import lark

from tether.engine.answer import AnswerType, answer_grammar
from tether.engine.backends.base import Backend, Sampling
from tether.engine.events import Event, TextDelta
from tether.engine.gbnf import Alt, CharClass, Grammar, Lit, Node, Ref, Repeat, Seq, syntax_problem
from tether.engine.prompt import PromptStyle, open_turn, sanitise_observation
from tether.engine.protocol import ANSWER, CHARS_PER_TOKEN, Action, Restriction, Step, StopReason, TokenCounts
from tether.errors import BackendError, ContextOverflow, ParseError
from tether.text import clean_text

__all__ = [
    "EVIDENCE_LINE_CHARS",
    "EVIDENCE_MAX_LINES",
    "ClosedBookGrammar",
    "PassResult",
    "closed_book_grammar",
    "closed_book_pass",
    "closed_book_prompt",
    "evidence_lines",
]

EVIDENCE_MAX_LINES = 12
EVIDENCE_LINE_CHARS = 300
_INSTRUCTIONS = resources.files("tether.prompts").joinpath("closed_book.txt").read_text("utf-8")
_EVIDENCE_HEADING = "Notes from an earlier search for this question (they may be incomplete; use what helps):"
_ANSWER_FORMATS: dict[AnswerType, str] = {
    "text": "<short final answer>",
    "number": "<number> (digits only, no units)",
    "yes-no": "yes or no",
    "short": "<a few words>",
}
_ANSWER_WORD = "answer"
_ANSWER_LINE = re.compile(r"answer: ", re.IGNORECASE)  # how the final line opens (the grammar's `final`)
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


def closed_book_prompt(
    backend: Backend,
    question: str,
    evidence: Sequence[str] = (),
    answer_type: AnswerType = "text",
    style: PromptStyle = "auto",
    answer_format: str | None = None,
) -> str:
    """The pass's prompt: the instructions, the question and, for the fallback, the evidence lines;
    `answer_format` (a typed output's) says what the answer line holds instead of `answer_type`'s words."""
    shown = answer_format or _ANSWER_FORMATS[answer_type]
    system = _INSTRUCTIONS.format(answer_format=shown).rstrip("\n")
    user = f"Question: {sanitise_observation(question, limit=2000)}"
    if evidence:
        user += "\n\n" + "\n".join([_EVIDENCE_HEADING, *evidence])
    return open_turn(backend, system, user, style)


def _either_case(ch: str) -> Node:
    return CharClass(((ch.upper(), ch.upper()), (ch.lower(), ch.lower())))


def _not(chars: str) -> CharClass:
    return CharClass(tuple((c, c) for c in sorted(set(chars))), negated=True)


@dataclass(frozen=True)
class ClosedBookGrammar:
    """The pass's grammar (`grammar`) and the grammar of a continuation after `answer:` (`continuation`);
    `answer`, where given, is the answer's grammar in place of `answer_type`'s (a typed output's)."""

    answer_type: AnswerType
    answer: Grammar | None = None

    def _answer(self) -> Grammar:
        found = self.answer if self.answer is not None else answer_grammar((), self.answer_type)
        return found.prefixed("answer")

    @cached_property
    def grammar(self) -> Grammar:
        """root ::= line* final, where no line starts `answer:` and final is `answer: <answer>\\n`.

        A line is matched by a chain of rules over the letters of `answer:`: a character that leaves
        the chain frees the rest of the line, so every choice is decided by the next character."""
        answer = self._answer()
        rules: dict[str, Node] = dict(answer.rules)
        rules["rest"] = Seq((Repeat(_not("\n"), 0, None), Lit("\n")))
        word = _ANSWER_WORD + ":"
        for k, ch in enumerate(word):
            options: list[Node] = [Lit("\n"), Seq((_not(ch.upper() + ch.lower() + "\n"), Ref("rest")))]
            if k + 1 < len(word):
                options.append(Seq((_either_case(ch), Ref(f"line-{k + 1}"))))
            rules[f"line-{k}" if k else "line"] = Alt(tuple(options))
        opening = tuple(_either_case(ch) for ch in _ANSWER_WORD)
        rules["final"] = Seq((*opening, Lit(": "), Ref(answer.start), Lit("\n")))
        rules["root"] = Seq((Repeat(Ref("line"), 0, None), Ref("final")))
        return Grammar(rules, "root")

    @cached_property
    def continuation(self) -> Grammar:
        """What follows a prompt that ends `answer:`: the answer, then the end of the line."""
        answer = self._answer()
        return Grammar({**answer.rules, "root": Seq((Lit(" "), Ref(answer.start), Lit("\n")))}, "root")

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
            self.grammar.parser.parse(text)
        except lark.UnexpectedInput as exc:
            problem = syntax_problem(text, exc, self.grammar.parser)
            raise ParseError(
                f"invalid closed-book answer {problem}", text=text, position=problem.position, expected=problem.expected
            ) from None
        reasoning, _, last = text[:-1].rpartition("\n")
        return Action(thought=reasoning, command=ANSWER, input=last[len(_ANSWER_WORD) + 1 :].strip())


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
    prompt = closed_book_prompt(backend, question, evidence, answer_type, style, answer_format)
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
    """The cut text's reasoning as whole lines: a cut last line ends here, unless it had begun the
    answer line (then it is dropped, and the continuation writes that line)."""
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
                if continuation or _ANSWER_LINE.match(line):
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
        complete = bool(text) if continuation else bool(_ANSWER_LINE.match(text[line_start:]))
    return _Decoded(text, complete, cut)


_TIME_LIMIT_ERROR = "the run's time limit was reached while the closed-book pass was being decoded"
