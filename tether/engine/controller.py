"""The agent loop: render the prompt, decode one step under the grammar, validate it, run the tool,
append the observation, and repeat until an answer, the step limit, a loop, or the time budget.

A run that would end with a grammar-forced guess (the step limit, a loop) is answered instead by a
closed-book reasoning pass over the question and what the run observed (`Limits.fallback`). At the
time limit there is no time left for a pass: the run ends with no answer, as before.

An agent's `retriever` (question -> passages, e.g. `tether.tools.corpus_tool.make_corpus_retriever`)
gives every prompt of a run something to read before the question: a small model builds poor search
queries, while the question itself (and the pages its best paragraphs name) finds both pages of a
two-hop question far more often than the model's searches do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.engine.answer import ANSWER_TYPES, AnswerType, typed_answer_grammar
from tether.engine.backends.base import Backend, Sampling
from tether.engine.closed_book import closed_book_pass, evidence_lines, kept_passages, reading_block
from tether.engine.events import (
    ActionParsed,
    Event,
    ObservationMade,
    RunFinished,
    StepFailed,
    StepStarted,
    TextDelta,
)
from tether.engine.grammar import DEFAULT_THOUGHT_CHARS, MAX_THOUGHT_CHARS, StepGrammar, compose_step_grammar
from tether.engine.loops import LoopDetector
from tether.engine.prompt import PromptStyle, render_prompt, sanitise_observation
from tether.engine.protocol import (
    ANSWER,
    CHARS_PER_TOKEN,
    Action,
    AnswerSource,
    Mode,
    Restriction,
    Step,
    StopReason,
    TokenCounts,
    Trace,
)
from tether.engine.run_state import RunState
from tether.engine.tool import Tool, ToolRegistry, run_with_time_limit
from tether.engine.typed import TypedText
from tether.errors import (
    BackendError,
    ConfigError,
    ContextOverflow,
    ModelError,
    RecoverableError,
    SchemaError,
    TetherError,
)
from tether.text import clean_text

__all__ = ["Agent", "Limits", "Retriever"]

Retriever = Callable[[str], Sequence[str]]  # a question -> passages for the run's prompts to read


class Limits(BaseModel):
    """The budgets of one run. A bad value is a ConfigError naming the field."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    max_steps: int = Field(8, ge=1)
    time_limit_s: float = Field(300.0, gt=0)  # wall clock for the whole run
    max_step_tokens: int = Field(512, ge=16)  # enough for the grammar's longest step
    # The longest thought line: room for a few sentences of reasoning before each action.
    max_thought_chars: int = Field(DEFAULT_THOUGHT_CHARS, ge=1, le=MAX_THOUGHT_CHARS)
    repeats_before_narrowing: int = Field(2, ge=1)  # repeated actions tolerated before `answer:` only
    # How many first steps must call a tool (their grammar leaves out `answer:`): small models otherwise
    # answer from memory ("17 * 23 = 322") before looking anything up. 0 (or False) for agents whose
    # questions may need no tool; 2 where every question needs two facts (multi-hop questions).
    act_first: int = Field(1, ge=0)
    # A run that would end with a forced `answer:` (step limit, loop) is answered by a closed-book
    # reasoning pass over the question and the run's observations instead (the ReAct -> CoT fallback).
    fallback: bool = True
    max_reasoning_tokens: int = Field(384, ge=16)  # the budget of a closed-book pass (mode or fallback)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'limits'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid limits: {problems}") from None

    @property
    def max_step_chars(self) -> int:
        """The most text a step may have (8 characters a token): a server that ignores `max_tokens`, or
        a runaway line, is cut here, before the validator, whose work grows with the text."""
        return CHARS_PER_TOKEN * self.max_step_tokens


class Agent:
    """A ReAct agent over a backend and a tool registry. `run()` returns the Trace; `iter_run()`
    yields the same run as events while it happens.

    `mode="closed-book"` answers with no tools: one reasoning pass, then one `answer:` line.
    `answer_type` narrows every answer's grammar (`number`, `yes-no`, `short`; default `text`).
    `output_type` narrows it to a type instead (`int`, a `Literal` or `Enum`, a pydantic model as one
    line of JSON: see `tether.engine.typed`), on every path that answers, and puts the validated
    value on the Trace as `output`; a SchemaError where the type has no grammar.

    `retriever`, where given, finds passages for the question (`Retriever`); every prompt of the run
    (the agent's steps, the closed-book pass of the mode, the fallback or `reason_then_act`) shows them
    before the question, and the Trace keeps them (`passages`). It runs once a run, bounded by the run's
    time limit; its failure is recorded on the Trace (`passages_error`) and the run goes on without
    passages.

    `tools` is required (pass `[]` for none, `tether.default_tools()` for the built-in default): the
    engine does not know the built-ins. A tool's ModelError or ToolError (any RecoverableError) and its
    own bugs become observations; any other TetherError it raises (a ConfigError) ends the run, raised
    to the caller."""

    def __init__(
        self,
        backend: Backend,
        tools: Iterable[Tool] | ToolRegistry,
        *,
        limits: Limits | None = None,
        mode: Mode | str = Mode.CONSTRAINED,
        sampling: Sampling | None = None,
        prompt_style: PromptStyle = "auto",
        answer_type: AnswerType = "text",
        output_type: Any = None,
        retriever: Retriever | None = None,
    ) -> None:
        self.backend = backend
        if retriever is not None and not callable(retriever):
            raise ConfigError(f"retriever must be a function from a question to passages, not {retriever!r}")
        self.retriever = retriever
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        self.limits = limits or Limits()
        self.mode = Mode(mode)
        self.sampling = sampling or Sampling()
        if prompt_style not in ("auto", "chat", "raw"):
            raise ConfigError(f"unknown prompt style {prompt_style!r}: use auto, chat or raw")
        self.prompt_style = prompt_style
        if answer_type not in ANSWER_TYPES:
            raise ConfigError(f"unknown answer type {answer_type!r}: use {', '.join(ANSWER_TYPES)}")
        self.answer_type: AnswerType = answer_type
        if output_type is not None and answer_type != "text":
            raise ConfigError("pass output_type or answer_type, not both: output_type narrows the answer itself")
        self.output_type = output_type
        try:
            self.typed_output: TypedText | None = (
                None if output_type is None else TypedText(output_type, where="output")
            )
            value = (
                None if self.typed_output is None else self.typed_output.grammar
            )  # None for a plain str: the text grammar
        except SchemaError as exc:
            raise SchemaError(f"output_type {output_type!r}: {exc}", path=exc.path) from None
        self.answer_grammar = None if value is None else typed_answer_grammar(value)
        self.grammars = self._compose_grammars()  # now, so a clash between tools' grammars fails here

    def _compose_grammars(self) -> dict[Restriction, StepGrammar]:
        compose = partial(
            compose_step_grammar,
            self.tools,
            answer_type=self.answer_type,
            answer=self.answer_grammar,
            thought_chars=self.limits.max_thought_chars,
        )
        full = compose()
        answer_only = compose(allowed=[ANSWER])
        tool_names = [t.name for t in self.tools]
        tools_only = compose(allowed=tool_names) if tool_names else full
        return {
            Restriction.ALL: full,
            Restriction.TOOLS_ONLY_FIRST_STEP: tools_only,
            Restriction.ANSWER_ONLY_LAST_STEP: answer_only,
            Restriction.ANSWER_ONLY_LOOP: answer_only,
        }

    def run(self, question: str, on_event: Callable[[Event], None] | None = None) -> Trace:
        for event in self.iter_run(question):
            if on_event is not None:
                on_event(event)
            if isinstance(event, RunFinished):
                return event.trace
        raise AssertionError("iter_run ended without RunFinished")  # pragma: no cover

    async def arun(self, question: str, on_event: Callable[[Event], None] | None = None) -> Trace:
        """`run` for asyncio code: the run goes to a worker thread, so many can share one event loop.
        Runs at once need a backend that serves them at once (a server); an in-process llama.cpp
        model decodes one stream at a time, so give each concurrent run its own LlamaCppBackend."""
        return await asyncio.to_thread(self.run, question, on_event)

    def iter_run(self, question: str) -> Iterator[Event]:
        """The run as events; the last one is always RunFinished with the Trace."""
        run = _Run(self, question)
        yield from run.events()
        yield RunFinished(run.trace)


class _Run:
    """The state of one run (kept out of Agent so an Agent can be reused and shared)."""

    def __init__(self, agent: Agent, question: str) -> None:
        self.agent = agent
        self.started = time.monotonic()
        self.deadline = self.started + agent.limits.time_limit_s
        self.trace = Trace(question=clean_text(question), model=agent.backend.name, mode=agent.mode)
        self.loops = LoopDetector(self.trace.steps)
        self.tool_state = RunState()  # stateful tools' memory, fresh for every run
        self.read: list[str] | None = None  # the retriever's passages, once it has run

    def events(self) -> Iterator[Event]:
        limits = self.agent.limits
        try:
            if self.agent.mode is Mode.CLOSED_BOOK:
                yield StepStarted(0, Restriction.ALL)
                yield from self._closed_book(0, Restriction.ALL, AnswerSource.CLOSED_BOOK)
                return
            for index in range(limits.max_steps):
                if time.monotonic() >= self.deadline:
                    self.trace.stop_reason = StopReason.TIME_LIMIT
                    return
                restriction = self._restriction(index)
                yield StepStarted(index, restriction)
                if limits.fallback and restriction in _FORCED:
                    yield from self._closed_book(index, restriction, AnswerSource.FALLBACK)
                    return
                step = yield from self._decode(index, restriction)
                self.trace.steps.append(step)
                if self.trace.stop_reason is not None:
                    return
                if step.action is None:
                    yield StepFailed(index, step.error or "invalid step")
                else:
                    yield ActionParsed(index, step.action)
                    if step.action.is_answer:
                        self._finish(step.action, restriction)
                        return
                    self._act(step)
                yield ObservationMade(index, step.observation or "", step)
                if restriction is Restriction.ANSWER_ONLY_LOOP:  # unconstrained model ignored the narrowing
                    self.trace.stop_reason = StopReason.LOOP
                    return
            self.trace.stop_reason = StopReason.STEP_LIMIT
        finally:
            self.trace.elapsed_s = time.monotonic() - self.started

    def _restriction(self, index: int) -> Restriction:
        if self.loops.repeats >= self.agent.limits.repeats_before_narrowing:
            return Restriction.ANSWER_ONLY_LOOP
        if index == self.agent.limits.max_steps - 1:
            return Restriction.ANSWER_ONLY_LAST_STEP
        if index < self.agent.limits.act_first and len(self.agent.tools) > 0:
            return Restriction.TOOLS_ONLY_FIRST_STEP
        return Restriction.ALL

    def _decode(self, index: int, restriction: Restriction) -> Generator[Event, None, Step]:
        agent = self.agent
        grammar = agent.grammars[restriction]
        reading = reading_block(self._passages())
        prompt = render_prompt(
            agent.backend, self.trace.question, self.trace.steps, agent.tools, agent.prompt_style, reading
        )
        stats = TokenCounts()  # the backend fills it in; it becomes the step's record
        began = time.monotonic()
        pieces: list[str] = []
        length = 0
        timed_out = cut = False
        constrained = agent.mode is Mode.CONSTRAINED
        try:
            stream = agent.backend.stream(
                prompt,
                grammar=grammar.gbnf if constrained else None,
                max_tokens=agent.limits.max_step_tokens,
                sampling=agent.sampling,
                stats=stats,
                forced=grammar.forced_text if constrained else None,
                deadline=self.deadline,
            )
        except ContextOverflow as exc:
            self.trace.stop_reason = StopReason.CONTEXT_LIMIT
            return Step(index=index, raw_text="", restriction=restriction, error=str(exc))
        except BackendError as exc:
            self.trace.stop_reason = StopReason.BACKEND_ERROR
            return Step(index=index, raw_text="", restriction=restriction, error=str(exc))
        try:
            for piece in stream:
                done, piece = _cut_after_two_lines("".join(pieces), clean_text(piece))
                if length + len(piece) > agent.limits.max_step_chars:
                    piece, done, cut = piece[: agent.limits.max_step_chars - length], True, True
                length += len(piece)
                pieces.append(piece)
                if piece:
                    yield TextDelta(index, piece)
                if done:
                    break
                if time.monotonic() >= self.deadline:
                    timed_out = True
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        text = "".join(pieces)
        step = Step(index=index, raw_text=text, restriction=restriction, tokens=stats)
        step.truncated = not text.endswith("\n") and (
            cut or stats.sampled + stats.forced >= agent.limits.max_step_tokens
        )
        step.timing.decode_s = time.monotonic() - began
        if timed_out:
            step.error = "the run's time limit was reached while the step was being decoded"
            self.trace.stop_reason = StopReason.TIME_LIMIT
            return step
        try:
            step.action = grammar.parse(text if text.endswith("\n") else text + "\n")
        except ModelError as exc:
            step.error = str(exc)
            if constrained and not step.truncated:
                self.trace.grammar_ignored = True
            step.observation = sanitise_observation(f"error: {exc}. Write a Thought line, then one command line.")
        return step

    def _closed_book(self, index: int, restriction: Restriction, source: AnswerSource) -> Generator[Event, None, None]:
        """Answer with a closed-book pass: the mode's only step, or the fallback's in place of a forced one."""
        agent = self.agent
        result = yield from closed_book_pass(
            agent.backend,
            self.trace.question,
            index=index,
            restriction=restriction,
            evidence=evidence_lines(self.trace.steps) if source is AnswerSource.FALLBACK else (),
            passages=self._passages(),
            answer_type=agent.answer_type,
            constrained=agent.mode is not Mode.FREE,
            sampling=agent.sampling,
            max_tokens=agent.limits.max_reasoning_tokens,
            deadline=self.deadline,
            style=agent.prompt_style,
            answer=agent.answer_grammar,
            answer_format=None if agent.typed_output is None else agent.typed_output.describe(),
        )
        step = result.step
        self.trace.steps.append(step)
        self.trace.grammar_ignored |= result.grammar_ignored
        cut_or_forced = StopReason.STEP_LIMIT if restriction is Restriction.ALL else _STOPS[restriction]
        if result.stop is not None:  # the backend, the context window or the clock ended the pass
            self.trace.stop_reason = result.stop
        elif step.action is None:
            yield StepFailed(index, step.error or "invalid answer")
            self.trace.stop_reason = cut_or_forced
        else:
            yield ActionParsed(index, step.action)
            self._answered(step.action)
            self.trace.answer_source = source
            ended_itself = restriction is Restriction.ALL and not step.truncated
            self.trace.stop_reason = StopReason.ANSWER if ended_itself else cut_or_forced

    def _passages(self) -> list[str]:
        """The retriever's passages for the question, kept on the Trace; the retriever runs once a run,
        when a prompt first needs them. Its failure (or an answer that is not strings, or one past the
        time limit) reads as no passages, as a tool's failure reads as an observation; a ConfigError (the
        setup's) ends the run, as a tool's does."""
        retriever = self.agent.retriever
        if retriever is None:
            return []
        if self.read is None:
            self.read = self._retrieve(retriever)
        return self.read

    def _retrieve(self, retriever: Retriever) -> list[str]:
        question = self.trace.question
        budget = max(0.0, self.deadline - time.monotonic())
        try:
            found = run_with_time_limit(lambda: _strings(retriever(question)), budget, name="retriever")
        except RecoverableError as exc:
            return self._no_passages(str(exc))
        except TetherError:
            raise
        except Exception as exc:  # the retriever's own bug must not end the run
            return self._no_passages(f"{type(exc).__name__}: {exc}")
        self.trace.passages = kept_passages(found)
        return self.trace.passages

    def _no_passages(self, reason: str) -> list[str]:
        self.trace.passages_error = sanitise_observation(f"retriever failed: {reason}")
        return []

    def _answered(self, action: Action) -> None:
        """The run's answer, and with an output type, its value (None where it does not validate)."""
        self.trace.answer = action.input.strip()
        if self.agent.typed_output is not None:
            try:
                self.trace.output = self.agent.typed_output.parse(self.trace.answer)
            except ValidationError:
                self.trace.output = None

    def _finish(self, action: Action, restriction: Restriction) -> None:
        self._answered(action)
        self.trace.answer_source = AnswerSource.FORCED if restriction in _FORCED else AnswerSource.AGENT
        self.trace.stop_reason = _STOPS[restriction]

    def _act(self, step: Step) -> None:
        """Run the step's tool, or, for a repeated action, tell the model instead of re-running it."""
        assert step.action is not None
        if step.truncated:
            limit = self.agent.limits.max_step_tokens
            step.error = f"the step ran past {limit} tokens and was cut; the command was not run"
            step.observation = f"error: your step ran past {limit} tokens and was cut off. Use a shorter input."
            return
        tool = self.agent.tools.get(step.action.command)
        repeatable = tool is not None and tool.repeatable
        earlier = self.loops.earlier_run(step.action)
        if earlier is not None and not repeatable:
            self.loops.mark(step)
            step.observation = sanitise_observation(
                f"you already ran this in step {earlier.index + 1} and got: {earlier.observation}. "
                "Do not repeat it; use that result or answer."
            )
            return
        began = time.monotonic()
        step.observation = sanitise_observation(self._call_tool(step.action))
        step.timing.tool_s = time.monotonic() - began
        if repeatable and self.loops.gained_nothing(step):
            self.loops.mark(step)

    def _call_tool(self, action: Action) -> str:
        tool = self.agent.tools.get(action.command)
        if tool is None:  # only reachable without the grammar
            names = ", ".join([*self.agent.tools.names, ANSWER])
            return f"error: unknown command {action.command!r}; use one of {names}"
        budget = min(tool.timeout_s, max(0.0, self.deadline - time.monotonic()))
        try:
            return run_with_time_limit(partial(tool, action.input), budget, name=tool.name, state=self.tool_state)
        except RecoverableError as exc:  # the model's or the tool's failure: the model reads it
            return f"error: {exc}"
        except TetherError:  # a ConfigError (the setup's) or a server's failure: not the model's to fix
            raise
        except Exception as exc:  # a tool's own bug must not end the run
            return f"error: {action.command} failed: {type(exc).__name__}: {exc}"


_FORCED = (Restriction.ANSWER_ONLY_LAST_STEP, Restriction.ANSWER_ONLY_LOOP)
_STOPS = {  # why a run that answered under each restriction stopped
    Restriction.ALL: StopReason.ANSWER,
    Restriction.TOOLS_ONLY_FIRST_STEP: StopReason.ANSWER,  # an unconstrained model may still answer
    Restriction.ANSWER_ONLY_LAST_STEP: StopReason.STEP_LIMIT,
    Restriction.ANSWER_ONLY_LOOP: StopReason.LOOP,
}


def _strings(passages: Iterable[str]) -> list[str]:
    """A retriever's passages as a list, or a TypeError saying what it returned instead."""
    if isinstance(passages, str) or not isinstance(passages, Iterable):
        raise TypeError(f"the retriever returned {type(passages).__name__}, not a list of passages")
    found = list(passages)
    strange = next((p for p in found if not isinstance(p, str)), None)
    if strange is not None:
        raise TypeError(f"the retriever returned a {type(strange).__name__} among its passages, not text")
    return found


def _cut_after_two_lines(so_far: str, piece: str) -> tuple[bool, str]:
    """(whether the step is complete, the part of `piece` that belongs to it): a step is two lines."""
    needed = 2 - so_far.count("\n")
    cut = -1
    for _ in range(needed):
        cut = piece.find("\n", cut + 1)
        if cut == -1:
            return False, piece
    return True, piece[: cut + 1]
