"""Run the agent over question sets for each model and mode, one JSONL of records per pair.

Records are appended and flushed one by one, keyed by question id, so a killed run resumes where
it stopped (a half-written last line is dropped) and the order questions ran in never matters. A
record whose run ended in `backend_error` (a server outage) is not final: a resumed run asks that
question again and its new record supersedes the old line. One eval at a time may write to an
`out` folder (an exclusive lock on `out/.lock`); a second fails at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticSerializationError

from tether.engine.answer import AnswerType
from tether.engine.backends.base import Backend, Sampling
from tether.engine.backends.openai_server import ServerKind
from tether.engine.closed_book import PASSAGES_MAX
from tether.engine.controller import Agent, Limits
from tether.engine.events import ObservationMade, RunFinished
from tether.engine.grammar import MAX_THOUGHT_CHARS
from tether.engine.prompt import PromptStyle
from tether.engine.protocol import Mode, Step, StopReason, Trace
from tether.engine.vote import Voted, reason_then_act, self_consistent
from tether.errors import BackendError, ConfigError, ToolRegistrationError
from tether.evaluation.bfcl import bfcl_tools, first_step_trace, score_call
from tether.evaluation.bfcl_checker import CallScore
from tether.evaluation.datasets import Dataset, Format, Question, load_dataset
from tether.evaluation.metrics import Cost, Record, Summary, summarise
from tether.evaluation.scoring import Score, score_answer
from tether.text import clean_text
from tether.tools import resolve_tools

__all__ = [
    "ANSWER_TYPES",
    "EvalConfig",
    "Record",
    "answer_type",
    "evaluate_call",
    "evaluate_question",
    "is_final",
    "model_label",
    "pending_count",
    "read_records",
    "results_path",
    "run_eval",
]

BackendLoader = Callable[[str], Backend]

# The answer grammar's type per question set: numbers for arithmetic sets (so "57 stickers" cannot be
# an answer); HotpotQA a short span (whether a question wants yes/no is not known in advance).
ANSWER_TYPES: dict[str, AnswerType] = {"gsm8k": "number", "qa (numeric answers)": "number", "hotpotqa": "short"}


def answer_type(dataset: Dataset) -> AnswerType:
    """The answer type `tether eval` asks for on `dataset` (ANSWER_TYPES; open text otherwise)."""
    if dataset.format == "bfcl":  # a BFCL run is scored on its first call, never on an answer
        return "text"
    if dataset.format == "qa":
        return ANSWER_TYPES["qa (numeric answers)"] if all(q.numeric for q in dataset.questions) else "text"
    return ANSWER_TYPES[dataset.format]


class EvalConfig(BaseModel):
    """Everything that decides a run's results; an `out` folder holds runs of one config only."""

    model_config = ConfigDict(frozen=True)

    datasets: tuple[Path, ...]
    models: tuple[str, ...] = ("smollm2-135m",)
    modes: tuple[Mode, ...] = (Mode.CONSTRAINED, Mode.FREE)
    format: Format | None = None
    limit: int | None = Field(None, ge=1)
    max_steps: int = Field(6, ge=1)
    max_step_tokens: int = Field(256, ge=16)  # per step; a free-mode model may ramble until this cuts it
    max_thought_chars: int = Field(Limits.model_fields["max_thought_chars"].default, ge=1, le=MAX_THOUGHT_CHARS)
    act_first: int = Field(Limits.model_fields["act_first"].default, ge=0)  # first steps that must call a tool
    seed: int = 0
    time_limit_s: float = Field(120.0, gt=0)
    prompt_style: PromptStyle = "auto"
    out: Path = Path("eval-results")
    server: str | None = None  # an OpenAI-compatible server; `models` then name the models it serves
    server_kind: ServerKind = "llama-cpp"
    api_key: str | None = Field(None, exclude=True, repr=False)
    concurrency: int = Field(1, ge=1)  # questions at once (against a server only)
    kb: Path | None = None  # HotpotQA searches this knowledge base instead of the file's own paragraphs
    fallback: bool = True  # a run that does not finish answers by a closed-book pass over its observations
    vote: int = Field(1, ge=1)  # self-consistency: k sampled runs per question and a vote (1: one greedy run)
    temperature: float = Field(0.7, ge=0, allow_inf_nan=False)  # the vote's sampling temperature
    # Closed-book passes that vote before the agent runs; it runs only when no answer has a majority
    # (tether.engine.vote.reason_then_act). 0: the agent alone. The closed-book mode is not affected.
    reason_first: int = Field(0, ge=0)
    # HotpotQA: every prompt of a run (the agent's steps, the closed-book passes) reads K paragraphs of the
    # knowledge base found for the question (`make_corpus_retriever`, `Agent(retriever=...)`). 0: off.
    read: int = Field(0, ge=0, le=PASSAGES_MAX)

    @field_validator("time_limit_s", mode="before")
    @classmethod
    def _finite(cls, value: object) -> object:
        """NaN would make every deadline check false (a run without a limit): refuse it, and infinity."""
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise ConfigError(f"the time limit must be a finite number of seconds, not {value}")
        return value

    def settings(self) -> dict[str, object]:
        """What must match for a resumed run to add to the same results. Models, modes, datasets and
        --limit may change: they choose which records exist, not what a record holds."""
        found = self.model_dump(
            mode="json",
            include={
                "format", "max_steps", "max_step_tokens", "max_thought_chars", "act_first", "seed", "time_limit_s",
                "prompt_style", "fallback", "vote", "temperature", "reason_first", "read",
            },
        )  # fmt: skip
        found["kb"] = None if self.kb is None else str(self.kb.resolve())  # one pool per folder
        found["answer_types"] = dict(ANSWER_TYPES)
        return found


def model_label(model: str) -> str:
    """A model's name in file names and tables: its registered name, or its file's stem."""
    from tether import model_zoo

    return model if model == model_zoo.DEFAULT_NAME or model in model_zoo.MODELS else Path(model).stem


def is_final(record: Record) -> bool:
    """Whether a record stands: one that a server failure ended is asked again on resume."""
    return record.trace.stop_reason is not StopReason.BACKEND_ERROR


def read_records(path: Path) -> dict[str, Record]:
    """The records already in `path`. A half-written last line (a killed run) is cut off the file;
    a bad line anywhere else is an error naming it: results are never silently dropped."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    records: dict[str, Record] = {}
    offset = 0
    for n, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            record = Record.model_validate_json(line)
        except ValidationError:
            if not line.endswith(b"\n"):  # the last line, cut short by a kill
                with path.open("r+b") as f:
                    f.truncate(offset)
                break
            raise ConfigError(f"{path}, line {n}: not a result record; move the file away to start over") from None
        if not line.endswith(b"\n"):  # whole record, killed before its newline: end the line before appending
            with path.open("ab") as f:
                f.write(b"\n")
        records[record.id] = record
        offset += len(line)
    return records


def run_eval(
    config: EvalConfig,
    *,
    load_backend: BackendLoader | None = None,
    on_record: Callable[[Record], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> list[Summary]:
    """Run every (dataset, model, mode) pair still missing questions, then summarise them all.
    `on_start` gets the number of questions to run once every check has passed (the CLI then
    shows a progress bar, so a refusal is one line with nothing before it)."""
    _make_out(config.out)
    with _locked(config.out):
        return _run_eval(config, load_backend, on_record, on_start)


def _run_eval(
    config: EvalConfig,
    load_backend: BackendLoader | None,
    on_record: Callable[[Record], None] | None,
    on_start: Callable[[int], None] | None,
) -> list[Summary]:
    _check_settings(config)
    datasets = [load_dataset(p, config.format) for p in config.datasets]
    if len({d.name for d in datasets}) != len(datasets):
        raise ConfigError("two datasets share a file name; rename one so their results do not mix")
    labels = [model_label(m) for m in config.models]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two models share the name {labels}; rename a file so their results do not mix")
    if any(d.format == "bfcl" for d in datasets):
        if Mode.CLOSED_BOOK in config.modes:
            raise ConfigError("BFCL scores tool calls and closed-book runs make none: use --mode both (or one mode)")
        if config.vote > 1 or config.reason_first > 0:
            raise ConfigError("--vote and --reason-first vote on answers; BFCL scores a run's first call")
    if config.vote > 1 and config.reason_first > 0:
        raise ConfigError("--vote and --reason-first are two ways to vote: use one")
    if config.read > 0 and not any(d.format == "hotpotqa" for d in datasets):
        raise ConfigError("--read reads paragraphs of a knowledge base, which only HotpotQA sets have here")
    if config.kb is not None and not config.kb.is_file():
        raise ConfigError(f"--kb {config.kb}: no such file; build one with tether corpus build")
    if config.concurrency > 1 and config.server is None and load_backend is None:
        raise ConfigError("--concurrency needs --server: an in-process model decodes one question at a time")
    if load_backend is None and config.server is None:  # a misspelt or uninstalled model fails now
        from tether.models import resolve_model

        for model in config.models:
            resolve_model(model)
    loader = load_backend or _backend_loader(config)
    if on_start is not None:
        on_start(_pending(config, datasets))
    summaries = []
    for model in config.models:
        backend: Backend | None = None
        for dataset in datasets:
            questions = dataset.questions[: config.limit]
            for mode in config.modes:
                path = results_path(config.out, dataset, model, mode)
                done = read_records(path)
                pending = [q for q in questions if q.id not in done or not is_final(done[q.id])]
                if pending:
                    backend = backend or loader(model)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    kb = _knowledge_base(config, dataset, mode)  # once, before any worker starts
                    records = _records(config, dataset, kb, backend, mode, model_label(model), pending)
                    with path.open("a", encoding="utf-8") as sink:
                        for record in records:
                            sink.write(record.model_dump_json() + "\n")
                            sink.flush()
                            done[record.id] = record
                            if on_record is not None:
                                on_record(record)
                kept = [done[q.id] for q in questions if q.id in done]
                names = clean_text(dataset.name), clean_text(model_label(model))
                summaries.append(summarise(*names, mode.value, kept, answer_type=answer_type(dataset)))
    return summaries


def _make_out(out: Path) -> None:
    """The results folder, made if missing; an existing file or an unwritable place is one line."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a folder; give a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot make the results folder ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out` for the whole run: two evals writing one folder would run and
    record every question twice. The lock goes with the process, so a killed run leaves none."""
    try:
        fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write in the results folder ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"--out {out}: another tether eval is writing to this folder; wait for it or use another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def pending_count(config: EvalConfig) -> int:
    """How many questions a run of `config` has left (for a progress bar)."""
    return _pending(config, [load_dataset(p, config.format) for p in config.datasets])


def _pending(config: EvalConfig, datasets: list[Dataset]) -> int:
    total = 0
    for dataset in datasets:
        ids = [q.id for q in dataset.questions[: config.limit]]
        for model in config.models:
            for mode in config.modes:
                done = read_records(results_path(config.out, dataset, model, mode))
                total += sum(i not in done or not is_final(done[i]) for i in ids)
    return total


def results_path(out: Path, dataset: Dataset, model: str, mode: Mode) -> Path:
    return out / dataset.name / f"{model_label(model)}.{mode.value}.jsonl"


def evaluate_question(
    agent: Agent,
    question: Question,
    model: str,
    mode: Mode,
    *,
    vote: int = 1,
    temperature: float = 0.7,
    reason_first: int = 0,
) -> Record:
    """One question, run and scored. Records depend on nothing else and are keyed by question id, so
    questions can be run in any order, or concurrently with one agent (and backend) per worker.
    With `vote` > 1, k sampled runs vote (`self_consistent`); with `reason_first` > 0 (an agent's
    mode, not closed-book), that many closed-book passes vote first and the agent runs only when no
    answer has a majority (`reason_then_act`). Either way the record keeps the deciding trace, the
    votes and what all the runs cost.

    Whatever a run raises (a BackendError or TetherError the controller let through, or a bug)
    becomes this question's record, stopped as `backend_error` with the error in its last step, so
    one question never ends the eval and a rerun asks it again."""
    votes: dict[str, int] | None = None
    cost: Cost | None = None
    if reason_first > 0 and mode is not Mode.CLOSED_BOOK:
        runs = partial(reason_then_act, samples=reason_first, temperature=temperature)
        trace, answer, votes, cost = _vote_guarded(agent, question.question, mode, runs)
    elif vote > 1:
        runs = partial(self_consistent, k=vote, temperature=temperature)
        trace, answer, votes, cost = _vote_guarded(agent, question.question, mode, runs)
    else:
        trace = _run_guarded(agent, question.question, mode)
        answer = trace.answer
    record = Record(
        id=question.id,
        question=question.question,
        gold=question.answer,
        model=model,
        mode=mode,
        score=score_answer(answer, question.answer, numeric=question.numeric),
        trace=trace,
        supporting_titles=list(question.supporting_titles),
        votes=votes,
        cost=cost,
    )
    try:
        record.model_dump_json()
    except PydanticSerializationError:  # text the boundaries did not clean (a lone surrogate)
        data = json.dumps(record.model_dump(mode="json"), ensure_ascii=False)
        record = Record.model_validate_json(clean_text(data))
    return record


def evaluate_call(agent: Agent, question: Question, names: dict[str, str], model: str, mode: Mode) -> Record:
    """A BFCL question: the agent's first step (tether.evaluation.bfcl.first_step_trace), its call
    judged (`score_call`); `names` maps the agent's tool names back to BFCL's. Guarded as
    `evaluate_question` is: whatever the run raises becomes a `backend_error` record, asked again."""
    started = time.monotonic()
    try:
        trace = first_step_trace(agent, question.question)
    except Exception as exc:
        trace = _failed(agent, question.question, mode, [], exc, started)
    call = score_call(question.functions, question.ground_truth or {}, list(agent.tools), names, trace)
    return _call_record(question, model, mode, trace, call)


def _call_record(question: Question, model: str, mode: Mode, trace: Trace, call: CallScore) -> Record:
    return Record(
        id=question.id,
        question=question.question,
        gold=question.answer,
        model=model,
        mode=mode,
        score=Score(correct=call.correct, f1=float(call.correct)),
        trace=trace,
        call=call,
    )


def _bfcl_record(config: EvalConfig, backend: Backend, mode: Mode, model: str, question: Question) -> Record:
    """A BFCL question, with its functions as typed tools (a fresh agent: every question brings its
    own). A function schema that tether refuses leaves the question unasked and counted as such."""
    try:
        tools, names = bfcl_tools(question.functions)
    except ToolRegistrationError as exc:
        trace = Trace(question=question.question, model=backend.name, mode=mode)
        refused = CallScore(status="schema_refused", error=clean_text(str(exc))[:500])
        return _call_record(question, model, mode, trace, refused)
    agent = Agent(
        backend,
        tools,
        limits=Limits(  # 2 steps, so the first is the tools-only one; the run stops after it
            max_steps=2, max_step_tokens=config.max_step_tokens, time_limit_s=config.time_limit_s, fallback=False
        ),
        mode=mode,
        sampling=Sampling(seed=config.seed),
        prompt_style=config.prompt_style,
    )
    return evaluate_call(agent, question, names, model, mode)


def _run_guarded(agent: Agent, question: str, mode: Mode) -> Trace:
    steps: list[Step] = []
    started = time.monotonic()
    try:
        for event in agent.iter_run(question):
            if isinstance(event, ObservationMade):
                steps.append(event.step)
            elif isinstance(event, RunFinished):
                return event.trace
        raise AssertionError("iter_run ended without RunFinished")  # pragma: no cover
    except Exception as exc:
        return _failed(agent, question, mode, steps, exc, started)


def _vote_guarded(
    agent: Agent, question: str, mode: Mode, runs: Callable[[Agent, str], Voted]
) -> tuple[Trace, str | None, dict[str, int] | None, Cost | None]:
    """Several runs and their vote: the deciding trace, the answer, the votes and the cost. A run
    that a server failure ended makes the vote incomplete: its trace becomes the record's (stopped
    as `backend_error`), so a resumed eval asks the question again."""
    started = time.monotonic()
    try:
        voted = runs(agent, question)
    except Exception as exc:
        return _failed(agent, question, mode, [], exc, started), None, None, None
    cost = Cost.of(voted.traces, voted.elapsed_s)
    broken = [t for t in voted.traces if t.stop_reason is StopReason.BACKEND_ERROR]
    if broken:
        return broken[0], None, voted.votes, cost
    trace = voted.traces[0 if voted.winner is None else voted.winner]
    return trace, voted.answer, voted.votes, cost


def _failed(agent: Agent, question: str, mode: Mode, steps: list[Step], exc: Exception, started: float) -> Trace:
    reason = str(exc).splitlines()[0] if str(exc).strip() else "no details"
    error = reason if isinstance(exc, BackendError) else f"{type(exc).__name__}: {reason}"
    failed = Step(index=len(steps), raw_text="", error=clean_text(error)[:500])
    return Trace(
        question=question,
        model=agent.backend.name,
        mode=mode,
        steps=[*steps, failed],
        stop_reason=StopReason.BACKEND_ERROR,
        elapsed_s=time.monotonic() - started,
    )


def _records(
    config: EvalConfig,
    dataset: Dataset,
    kb: Path | None,
    backend: Backend,
    mode: Mode,
    model: str,
    pending: list[Question],
) -> Iterator[Record]:
    """Each pending question's record as it finishes. With concurrency, every worker thread has an
    agent of its own (tools such as `lookup` keep per-run state); the backend is shared. A BFCL
    question gets an agent of its own: it brings its own functions."""
    bfcl = dataset.format == "bfcl"
    if config.concurrency == 1:
        agent = None if bfcl else _agent(config, dataset, kb, backend, mode)
        for question in pending:
            if agent is None:
                yield _bfcl_record(config, backend, mode, model, question)
            else:
                yield evaluate_question(agent, question, model, mode, **_voting(config))
        return
    local = threading.local()

    def one(question: Question) -> Record:
        if bfcl:
            return _bfcl_record(config, backend, mode, model, question)
        if not hasattr(local, "agent"):
            local.agent = _agent(config, dataset, kb, backend, mode)
        record: Record = evaluate_question(local.agent, question, model, mode, **_voting(config))
        return record

    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        futures = [pool.submit(one, q) for q in pending]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _voting(config: EvalConfig) -> dict[str, Any]:
    """How `evaluate_question` runs each question under these settings."""
    return {"vote": config.vote, "temperature": config.temperature, "reason_first": config.reason_first}


def _backend_loader(config: EvalConfig) -> BackendLoader:
    """Each model's backend, built the way `tether ask` builds its one (tether.models.build_backend)."""
    from tether.models import build_backend

    def load(model: str) -> Backend:
        return build_backend(
            model, server=config.server, server_kind=config.server_kind, api_key=config.api_key,
            time_limit_s=config.time_limit_s,
        )  # fmt: skip

    return load


def _agent(config: EvalConfig, dataset: Dataset, kb: Path | None, backend: Backend, mode: Mode) -> Agent:
    """The agent for one (dataset, mode): closed-book gets no tools, the others the dataset's; with
    --read, every prompt of its runs reads paragraphs of the knowledge base found for the question."""
    from tether.tools.corpus_tool import make_corpus_retriever

    return Agent(
        backend,
        [] if mode is Mode.CLOSED_BOOK else resolve_tools(dataset.tools, kb=kb),
        retriever=make_corpus_retriever(kb, k=config.read) if config.read > 0 and kb is not None else None,
        limits=Limits(
            max_steps=config.max_steps,
            max_step_tokens=config.max_step_tokens,
            max_thought_chars=config.max_thought_chars,
            act_first=config.act_first,
            time_limit_s=config.time_limit_s,
            fallback=config.fallback,
        ),
        mode=mode,
        sampling=Sampling(seed=config.seed),
        prompt_style=config.prompt_style,
        answer_type=answer_type(dataset),
    )


def _knowledge_base(config: EvalConfig, dataset: Dataset, mode: Mode) -> Path | None:
    """What a HotpotQA run searches: `--kb`, or else the file's paragraphs, all questions pooled, as
    an offline encyclopedia built once per folder, before any worker thread starts (`build_corpus`
    writes a uniquely named temporary file and renames it into place, so nothing half-built is ever
    opened). Closed-book runs search nothing, unless they --read."""
    if dataset.format != "hotpotqa" or (mode is Mode.CLOSED_BOOK and config.read == 0):
        return None
    if config.kb is not None:
        return config.kb
    from tether.corpus import build_corpus

    kb = config.out / dataset.name / "kb.sqlite"
    if not kb.is_file():
        kb.parent.mkdir(parents=True, exist_ok=True)
        build_corpus(dataset.path, kb)
    return kb


def _check_settings(config: EvalConfig) -> None:
    """The folder's settings must be this run's. A settings.json that a kill left empty or half
    written is rewritten while the folder holds no records (none can depend on it); with records
    it is refused, since what they were run with is unknown."""
    saved = config.out / "settings.json"
    wanted = config.settings()
    found = _read_settings(saved)
    if found is None and saved.exists() and any(config.out.glob("*/*.jsonl")):
        raise ConfigError(f"{saved}: unreadable, and {config.out} holds results; use another --out")
    if found is None:
        tmp = saved.with_name(f".settings.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, saved)  # whole or not at all
        return
    changed = sorted(k for k in wanted if found.get(k) != wanted[k])
    if changed:
        shown = ", ".join(f"{k} {found.get(k)!r} -> {wanted[k]!r}" for k in changed)
        raise ConfigError(f"{config.out} holds results with other settings ({shown}); use another --out")


def _read_settings(path: Path) -> dict[str, object] | None:
    """The saved settings, or None if there are none or they cannot be read as a JSON object."""
    try:
        found = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None
