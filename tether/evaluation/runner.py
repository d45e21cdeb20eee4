"""Run the agent over question sets for each model and mode, one JSONL of records per pair.

Records are appended and flushed one by one, keyed by question id, so a killed run resumes where
it stopped (a half-written last line is dropped) and the order questions ran in never matters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.engine.backends.base import Backend, Sampling
from tether.engine.backends.openai_server import ServerKind
from tether.engine.controller import Agent, Limits
from tether.engine.prompt import PromptStyle
from tether.engine.protocol import Mode, Trace
from tether.errors import ConfigError
from tether.evaluation.datasets import Dataset, Format, Question, load_dataset
from tether.evaluation.metrics import Summary, summarise
from tether.evaluation.scoring import Score, score_answer
from tether.tools import ToolRegistry, resolve_tools

__all__ = [
    "EvalConfig",
    "Record",
    "evaluate_question",
    "model_label",
    "pending_count",
    "read_records",
    "results_path",
    "run_eval",
]

BackendLoader = Callable[[str], Backend]


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
    seed: int = 0
    time_limit_s: float = Field(120.0, gt=0)
    prompt_style: PromptStyle = "auto"
    out: Path = Path("eval-results")
    server: str | None = None  # an OpenAI-compatible server; `models` then name the models it serves
    server_kind: ServerKind = "llama-cpp"
    api_key: str | None = Field(None, exclude=True, repr=False)
    concurrency: int = Field(1, ge=1)  # questions at once (against a server only)

    def settings(self) -> dict[str, object]:
        """What must match for a resumed run to add to the same results. Models, modes, datasets and
        --limit may change: they choose which records exist, not what a record holds."""
        return self.model_dump(
            mode="json",
            include={"format", "max_steps", "max_step_tokens", "seed", "time_limit_s", "prompt_style"},
        )


class Record(BaseModel):
    id: str
    question: str
    gold: str
    model: str
    mode: Mode
    score: Score
    trace: Trace


def model_label(model: str) -> str:
    """A model's name in file names and tables: its registered name, or its file's stem."""
    from tether import model_zoo

    return model if model == model_zoo.DEFAULT_NAME or model in model_zoo.MODELS else Path(model).stem


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
) -> list[Summary]:
    """Run every (dataset, model, mode) pair still missing questions, then summarise them all."""
    config.out.mkdir(parents=True, exist_ok=True)
    _check_settings(config)
    datasets = [load_dataset(p, config.format) for p in config.datasets]
    if len({d.name for d in datasets}) != len(datasets):
        raise ConfigError("two datasets share a file name; rename one so their results do not mix")
    labels = [model_label(m) for m in config.models]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two models share the name {labels}; rename a file so their results do not mix")
    if config.concurrency > 1 and config.server is None and load_backend is None:
        raise ConfigError("--concurrency needs --server: an in-process model decodes one question at a time")
    if load_backend is None and config.server is None:  # a misspelt or uninstalled model fails now
        from tether.models import resolve_model

        for model in config.models:
            resolve_model(model)
    loader = load_backend or (_server_loader(config) if config.server else _load_llama_backend)
    summaries = []
    for model in config.models:
        backend: Backend | None = None
        for dataset in datasets:
            questions = dataset.questions[: config.limit]
            for mode in config.modes:
                path = results_path(config.out, dataset, model, mode)
                done = read_records(path)
                pending = [q for q in questions if q.id not in done]
                if pending:
                    backend = backend or loader(model)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    records = _records(config, dataset, backend, mode, model_label(model), pending)
                    with path.open("a", encoding="utf-8") as sink:
                        for record in records:
                            sink.write(record.model_dump_json() + "\n")
                            sink.flush()
                            done[record.id] = record
                            if on_record is not None:
                                on_record(record)
                kept = [done[q.id] for q in questions if q.id in done]
                summaries.append(summarise(dataset.name, model_label(model), mode.value, kept))
    return summaries


def pending_count(config: EvalConfig) -> int:
    """How many questions a run of `config` has left (for a progress bar)."""
    total = 0
    for dataset in (load_dataset(p, config.format) for p in config.datasets):
        ids = [q.id for q in dataset.questions[: config.limit]]
        for model in config.models:
            for mode in config.modes:
                done = read_records(results_path(config.out, dataset, model, mode))
                total += sum(i not in done for i in ids)
    return total


def results_path(out: Path, dataset: Dataset, model: str, mode: Mode) -> Path:
    return out / dataset.name / f"{model_label(model)}.{mode.value}.jsonl"


def evaluate_question(agent: Agent, question: Question, model: str, mode: Mode) -> Record:
    """One question, run and scored. Records depend on nothing else and are keyed by question id, so
    questions can be run in any order, or concurrently with one agent (and backend) per worker."""
    trace = agent.run(question.question)
    score = score_answer(trace.answer, question.answer, numeric=question.numeric)
    return Record(
        id=question.id,
        question=question.question,
        gold=question.answer,
        model=model,
        mode=mode,
        score=score,
        trace=trace,
    )


def _records(
    config: EvalConfig, dataset: Dataset, backend: Backend, mode: Mode, model: str, pending: list[Question]
) -> Iterator[Record]:
    """Each pending question's record as it finishes. With concurrency, every worker thread has an
    agent of its own (tools such as `lookup` keep per-run state); the backend is shared."""
    if config.concurrency == 1:
        agent = _agent(config, dataset, backend, mode)
        for question in pending:
            yield evaluate_question(agent, question, model, mode)
        return
    local = threading.local()

    def one(question: Question) -> Record:
        if not hasattr(local, "agent"):
            local.agent = _agent(config, dataset, backend, mode)
        record: Record = evaluate_question(local.agent, question, model, mode)
        return record

    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        futures = [pool.submit(one, q) for q in pending]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _server_loader(config: EvalConfig) -> BackendLoader:
    from tether.engine.backends.openai_server import OpenAIServerBackend

    def load(model: str) -> Backend:
        return OpenAIServerBackend(
            str(config.server), kind=config.server_kind, model=model, api_key=config.api_key,
            timeout_s=min(120.0, config.time_limit_s),
        )  # fmt: skip

    return load


def _agent(config: EvalConfig, dataset: Dataset, backend: Backend, mode: Mode) -> Agent:
    return Agent(
        backend,
        _tools(config.out, dataset),
        limits=Limits(
            max_steps=config.max_steps, max_step_tokens=config.max_step_tokens, time_limit_s=config.time_limit_s
        ),
        mode=mode,
        sampling=Sampling(seed=config.seed),
        prompt_style=config.prompt_style,
    )


def _tools(out: Path, dataset: Dataset) -> ToolRegistry:
    """HotpotQA's paragraphs, all questions pooled, become the offline encyclopedia the agent searches."""
    if dataset.format != "hotpotqa":
        return resolve_tools(dataset.tools)
    from tether.corpus import build_corpus

    kb = out / dataset.name / "kb.sqlite"
    if not kb.exists():
        kb.parent.mkdir(parents=True, exist_ok=True)
        partial = kb.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build_corpus(dataset.path, partial)
        partial.replace(kb)
    return resolve_tools(dataset.tools, kb=kb)


def _load_llama_backend(model: str) -> Backend:
    from tether.models import load_backend

    return load_backend(model)


def _check_settings(config: EvalConfig) -> None:
    saved = config.out / "settings.json"
    wanted = config.settings()
    if saved.exists():
        found = json.loads(saved.read_text(encoding="utf-8"))
        changed = sorted(k for k in wanted if found.get(k) != wanted[k])
        if changed:
            shown = ", ".join(f"{k} {found.get(k)!r} -> {wanted[k]!r}" for k in changed)
            raise ConfigError(f"{config.out} holds results with other settings ({shown}); use another --out")
    else:
        saved.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
