"""The OpenAI-compatible server backend: the grammar in every request, retries, the documented
stop on failure, detection of a server that ignores the grammar, and async runs.

Fake servers on 127.0.0.1 (tests/fakeservers.py) play the misbehaving engines; the `model` tests
start the real `python -m llama_cpp.server` with SmolLM2."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeservers import (
    FakeServer,
    HangUpServer,
    Reply,
    Request,
    SilentServer,
    completion_reply,
    echo_auth,
    json_reply,
    openai_mode,
    refused_port,
)

from tether import Agent, Limits, Mode, StopReason, Trace
from tether.engine.backends.base import Sampling
from tether.engine.backends.local_server import llama_cpp_server
from tether.engine.backends.openai_server import MAX_REPLY_BYTES, OpenAIServerBackend
from tether.engine.protocol import TokenCounts
from tether.errors import BackendError, ConfigError
from tether.models import default_model_path
from tether.tools import resolve_tools

GOOD_REPLY = "Thought: I have it.\nanswer: 42\n"
QUESTIONS = ["What is 6 * 7?", "What is 120 / 8?", "What is 2 ** 10?", "What is 15 + 27?"]


def completion(text: str, prompt_tokens: int = 50, completion_tokens: int = 12) -> Reply:
    return json_reply(
        {
            "choices": [{"text": text, "index": 0, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        }
    )


def body(request: Request) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(request.body)
    return parsed


def calculator_server(request: Request) -> Reply:
    """A fake engine that follows the protocol: calculate the question's expression, then answer."""
    prompt = str(body(request)["prompt"])
    question = prompt.rsplit("Question: ", 1)[1].split("\n", 1)[0]
    expression = question.removeprefix("What is ").removesuffix("?")
    if "\nObservation: " in prompt.rsplit("Question: ", 1)[1]:
        result = prompt.rsplit("Observation: ", 1)[1].split("\n", 1)[0]
        return completion(f"Thought: I have it.\nanswer: {result}\n")
    return completion(f"Thought: I compute it.\ncalculate: {expression}\n")


def agent(url: str, mode: Mode = Mode.CONSTRAINED, limits: Limits | None = None, **backend: object) -> Agent:
    settings: dict[str, object] = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.01}
    settings.update(backend)
    server = OpenAIServerBackend(url, **settings)  # type: ignore[arg-type]
    return Agent(server, resolve_tools(["calculate"]), limits=limits or Limits(max_steps=4), mode=mode)


def complete(backend: OpenAIServerBackend, *, max_tokens: int = 64, deadline: float | None = None) -> str:
    """One completion through `backend.stream`, as the controller asks for it."""
    stats = TokenCounts()
    stream = backend.stream("Question: q\n", grammar=None, max_tokens=max_tokens, sampling=Sampling(), stats=stats,
                            deadline=deadline)  # fmt: skip
    return "".join(stream)


def test_the_grammar_travels_in_llama_cpps_field() -> None:
    with FakeServer(calculator_server) as server:
        trace = agent(server.url).run("What is 6 * 7?")
    assert trace.answer == "42" and trace.stop_reason is StopReason.ANSWER and not trace.grammar_ignored
    first, second = (body(r) for r in server.requests)
    assert server.requests[0].path == "/v1/completions"
    assert isinstance(first["grammar"], str) and '"calculate: "' in first["grammar"]
    assert '"answer: "' not in first["grammar"] and '"answer: "' in str(second["grammar"])  # act first
    assert first["temperature"] == 0.0 and first["seed"] == 0 and "structured_outputs" not in first
    assert trace.steps[0].tokens.prompt == 50 and trace.steps[0].tokens.sampled == 12


def test_vllm_gets_the_grammar_as_structured_outputs_and_free_mode_sends_none() -> None:
    with FakeServer(calculator_server) as server:
        agent(server.url, kind="vllm", model="Qwen/Qwen2.5-Coder-1.5B-Instruct").run("What is 6 * 7?")
        sent = body(server.requests[0])
        assert "grammar" not in sent and '"calculate: "' in sent["structured_outputs"]["grammar"]  # type: ignore[index]
        assert sent["model"] == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
        server.reset()
        agent(server.url, Mode.FREE).run("What is 6 * 7?")
        free = body(server.requests[0])
        assert "grammar" not in free and "structured_outputs" not in free and "\nObservation:" in free["stop"]  # type: ignore[operator]


def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    with FakeServer(calculator_server) as server:
        agent(server.url, api_key="s3cret").run("What is 1 + 1?")
    assert server.requests[0].headers["authorization"] == "Bearer s3cret"


def test_a_server_that_ignores_the_grammar_is_flagged_and_handled_as_free_mode() -> None:
    with FakeServer(lambda _: completion("Sure! The answer is 42, obviously.")) as server:
        trace = agent(server.url, limits=Limits(max_steps=4, fallback=False)).run("What is 6 * 7?")
    assert trace.grammar_ignored and trace.answer is None and trace.stop_reason is StopReason.STEP_LIMIT
    assert len(trace.steps) == 4 and all(s.action is None and s.error for s in trace.steps)
    assert all((s.observation or "").startswith("error: invalid step") for s in trace.steps)


def test_http_500s_are_retried_then_end_the_run_keeping_its_steps() -> None:
    calls = {"n": 0}

    def failing_after_one_step(request: Request) -> Reply:
        calls["n"] += 1
        return calculator_server(request) if calls["n"] == 1 else Reply(500, b"oops")

    with FakeServer(failing_after_one_step) as server:
        trace = agent(server.url).run("What is 6 * 7?")
    assert len(server.requests) == 1 + 3  # one good step, then the first try and two retries
    assert trace.stop_reason is StopReason.BACKEND_ERROR and trace.answer is None
    assert trace.steps[0].observation == "42"
    assert "failed after 3 attempts: HTTP 500" in (trace.steps[1].error or "")
    assert Trace.model_validate_json(trace.model_dump_json()) == trace


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(400, b'{"error": "bad grammar"}'), "refused the request: HTTP 400"),
        (Reply(200, b"<html>not json</html>"), "not JSON"),
        (json_reply({"choices": []}), "no choices[0].text"),
    ],
)
def test_refusals_and_malformed_replies_are_not_retried(reply: Reply, message: str) -> None:
    with FakeServer(lambda _: reply) as server:
        trace = agent(server.url).run("What is 6 * 7?")
    assert len(server.requests) == 1
    assert trace.stop_reason is StopReason.BACKEND_ERROR and message in (trace.steps[0].error or "")


def test_a_server_that_never_answers_times_out() -> None:
    began = time.monotonic()
    with SilentServer() as server:
        trace = agent(server.url, timeout_s=0.2, retries=1).run("What is 6 * 7?")
    assert time.monotonic() - began < 5
    assert trace.stop_reason is StopReason.BACKEND_ERROR
    assert "failed after 2 attempts: no reply within 0.2 s" in (trace.steps[0].error or "")


def test_a_server_that_hangs_up_or_refuses_ends_the_run() -> None:
    with HangUpServer() as server:
        hung_up = agent(server.url).run("What is 6 * 7?")
    with refused_port() as port:
        refused = agent(f"http://127.0.0.1:{port}").run("What is 6 * 7?")
    for trace in (hung_up, refused):
        assert trace.stop_reason is StopReason.BACKEND_ERROR
        assert "connection failed" in (trace.steps[0].error or "")


def test_bad_settings_are_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="http"):
        OpenAIServerBackend("localhost:8080")
    with pytest.raises(ConfigError, match="server kind"):
        OpenAIServerBackend("http://x", kind="sglang")  # type: ignore[arg-type]


def test_async_runs_at_once_match_sequential_runs() -> None:
    with FakeServer(calculator_server) as server:
        shared = agent(server.url)
        sequential = [shared.run(q) for q in QUESTIONS]

        async def all_at_once() -> list[Trace]:
            return await asyncio.gather(*(shared.arun(q) for q in QUESTIONS))

        concurrent = asyncio.run(all_at_once())
    assert [t.answer for t in concurrent] == [t.answer for t in sequential] == ["42", "15.0", "1024", "42"]
    assert [[s.raw_text for s in t.steps] for t in concurrent] == [[s.raw_text for s in t.steps] for t in sequential]


# ---------------------------------------------------------------- the adversarial report's server rows


def test_s3_a_server_that_never_answers_is_held_to_the_runs_deadline() -> None:
    began = time.monotonic()
    with FakeServer(openai_mode("hang")) as server:
        trace = agent(server.url, limits=Limits(max_steps=4, time_limit_s=1.5), timeout_s=120.0, retries=3).run("q")
    assert time.monotonic() - began < 6  # was 4 attempts x min(120 s, limit) plus backoff
    assert len(server.requests) == 1  # no retry once the deadline has passed
    assert trace.stop_reason is StopReason.BACKEND_ERROR and "time limit" in (trace.steps[0].error or "")


def test_s4_a_trickling_server_is_held_to_the_runs_deadline() -> None:
    """A valid reply at one byte per 0.2 s (about 20 s): each read is quick, the request is not."""
    trickle = dataclasses.replace(completion_reply(GOOD_REPLY), trickle_s=0.2)
    began = time.monotonic()
    with FakeServer(lambda _: trickle) as server:
        trace = agent(server.url, limits=Limits(max_steps=4, time_limit_s=1.5), timeout_s=120.0).run("q")
        backend = OpenAIServerBackend(server.url, timeout_s=1.0, retries=0)
        with pytest.raises(BackendError, match="no reply within 1 s"):
            complete(backend)
    assert time.monotonic() - began < 8  # was unbounded: the late reply was accepted
    assert trace.stop_reason is StopReason.BACKEND_ERROR and trace.answer is None
    assert "time limit" in (trace.steps[0].error or "") and len(server.requests) == 2


def test_s3_retries_and_their_backoff_stop_at_the_deadline() -> None:
    """Attempts at 0, 0.2 and 0.6 s; the next backoff (0.8 s) would end past the 1 s deadline: no fourth."""
    began = time.monotonic()
    with FakeServer(openai_mode("500")) as server:
        backend = OpenAIServerBackend(server.url, retries=20, backoff_s=0.2)
        with pytest.raises(BackendError) as info:
            complete(backend, deadline=time.monotonic() + 1.0)
    assert "failed after 3 attempts (no time for another before the run's time limit): HTTP 500" in str(info.value)
    assert time.monotonic() - began < 1.3 and len(server.requests) == 3  # it did not sleep to 1.4 s


def test_s12_a_gzip_bomb_stops_at_the_reply_cap() -> None:
    """389 KB on the wire that inflates to 400 MB: reading stops at the cap, memory stays near it."""
    with FakeServer(openai_mode("gzipbomb")) as server:
        backend = OpenAIServerBackend(server.url, retries=0)
        tracemalloc.start()
        try:
            with pytest.raises(BackendError, match="larger than 4 MB"):
                complete(backend)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        trace = agent(server.url).run("q")
    assert peak < 6 * MAX_REPLY_BYTES  # was 1.26 GB RSS, or MemoryError
    assert trace.stop_reason is StopReason.BACKEND_ERROR and len(server.requests) == 2  # refused, not retried


def test_s11_a_huge_reply_is_refused_and_a_long_one_is_cut_to_the_step_budget() -> None:
    huge = completion_reply("x" * (MAX_REPLY_BYTES + 10))
    with FakeServer(lambda _: huge) as server, pytest.raises(BackendError, match="larger than 4 MB"):
        complete(OpenAIServerBackend(server.url))
    long_line = completion_reply("Thought: " + "y" * 300_000 + "\nanswer: 1\n")
    with FakeServer(lambda _: long_line) as server:
        assert len(complete(OpenAIServerBackend(server.url), max_tokens=64)) == 64 * 8
        trace = agent(server.url, limits=Limits(max_steps=3, max_step_tokens=64, fallback=False)).run("q")
    assert all(len(step.raw_text) <= 64 * 8 and step.truncated for step in trace.steps)
    prompts = [len(str(body(r)["prompt"])) for r in server.requests[1:]]
    assert max(prompts) < 20_000  # was 1 KB, 50 MB, 100 MB: each step re-sent the whole reply


def test_s8_deeply_nested_json_is_a_backend_error_not_a_recursion_error() -> None:
    with FakeServer(openai_mode("deepjson")) as server:
        trace = agent(server.url).run("q")
    assert trace.stop_reason is StopReason.BACKEND_ERROR and "not JSON" in (trace.steps[0].error or "")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "usage", ["lots", {"prompt_tokens": "many"}, [1, 2], {"prompt_tokens": 1.5}, {"completion_tokens": True},
              {"prompt_tokens": -3}, {"prompt_tokens": 10**40}],
)  # fmt: skip
def test_s9_a_malformed_usage_is_a_backend_error_and_the_trace_is_kept(usage: object) -> None:
    with FakeServer(lambda _: completion_reply(GOOD_REPLY, usage)) as server:
        trace = agent(server.url).run("q")
    assert trace.stop_reason is StopReason.BACKEND_ERROR and "usage" in (trace.steps[0].error or "")
    assert Trace.model_validate_json(trace.model_dump_json()) == trace


def test_s9_a_missing_or_null_usage_counts_nothing() -> None:
    first, then = (
        completion_reply("Thought: go\ncalculate: 6 * 7\n"),
        completion_reply(GOOD_REPLY, {"prompt_tokens": None}),
    )
    replies = iter([first, then])
    with FakeServer(lambda _: next(replies)) as server:
        trace = agent(server.url).run("q")
    assert trace.stop_reason is StopReason.ANSWER and [s.tokens.prompt for s in trace.steps] == [0, 0]


def test_s10_lone_surrogates_from_the_server_become_replacement_characters() -> None:
    with FakeServer(openai_mode("surrogate")) as server:
        backend = OpenAIServerBackend(server.url)
        trace = Agent(backend, resolve_tools(["calculate"]), limits=Limits(max_steps=2, act_first=False)).run("q")
    assert trace.answer == "\ufffd" and trace.steps[0].raw_text == "Thought: \ufffd hi\nanswer: \ufffd\n"
    assert json.loads(trace.model_dump_json())["answer"] == "\ufffd"  # was PydanticSerializationError


def test_s15_the_api_key_never_reaches_an_error_or_the_trace() -> None:
    with FakeServer(echo_auth) as server:
        trace = agent(server.url, api_key="sk-SECRET-123").run("q")
    assert server.requests[0].headers["authorization"] == "Bearer sk-SECRET-123"
    error = trace.steps[0].error or ""
    assert "HTTP 401 Invalid API key: Bearer [redacted]" in error
    assert "SECRET" not in trace.model_dump_json()


def test_s15_url_credentials_are_sent_as_basic_auth_and_never_shown() -> None:
    with FakeServer(echo_auth) as server:
        url = server.url.replace("http://", "http://user:hunter2@")
        backend = OpenAIServerBackend(url, retries=0)
        trace = Agent(backend, resolve_tools(["calculate"])).run("q")
    sent = server.requests[0].headers["authorization"]
    assert sent.startswith("Basic ") and backend.name == f"server@{server.url}" == trace.model
    assert "hunter2" not in trace.model_dump_json() and sent.split()[1] not in trace.model_dump_json()
    assert "Basic [redacted]" in (trace.steps[0].error or "")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "malformed server URL 'http://[::1'"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:port", "malformed server URL"),
        ("localhost:8080", "must start with http:// or https://"),
        ("127.0.0.1:8080", "must start with http:// or https://"),
        ("ftp://127.0.0.1", "must start with http:// or https://"),
        ("http://", "no host"),
        ("http://ho st:80", "spaces or control characters"),
        ("http://127.0.0.1:8080/v1?key=1", "query or fragment"),
        ("http://me:pw@[::1", "malformed server URL 'http://[::1'"),
        ("me:pw@localhost:8080", "server URL 'localhost:8080' must start with"),
        ("http://me:" + "pw" * 60 + "@127.0.0.1:99999", "URL 'http://127.0.0.1:99999'"),
    ],
)
def test_s2_malformed_server_urls_are_refused_up_front(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as info:
        OpenAIServerBackend(url)
    assert "\n" not in str(info.value) and "pw" not in str(info.value)


def test_an_api_key_that_cannot_be_a_header_is_refused_up_front() -> None:
    for key in ("sk-1\n", "sk-é"):
        with pytest.raises(ConfigError, match="API key must be printable ASCII"):
            OpenAIServerBackend("http://127.0.0.1:8080", api_key=key)


def test_a_body_that_does_not_decompress_is_a_backend_error_not_retried() -> None:
    broken = Reply(200, b"\x1f\x8b\x08\x00not gzip at all", headers={"Content-Encoding": "gzip"})
    with FakeServer(lambda _: broken) as server:
        trace = agent(server.url).run("q")
    assert trace.stop_reason is StopReason.BACKEND_ERROR and len(server.requests) == 1
    assert "Content-Encoding does not decode" in (trace.steps[0].error or "")


def test_s2_a_good_url_is_normalised() -> None:
    assert OpenAIServerBackend("http://[::1]:8080/v1/").base_url == "http://[::1]:8080"
    assert OpenAIServerBackend("https://h.example/proxy/v1").name == "server@https://h.example/proxy"


# ---------------------------------------------------------------- the real llama_cpp.server


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` with SmolLM2 on 127.0.0.1, for this module's tests."""
    pytest.importorskip("llama_cpp.server.app", reason="needs the llama-cpp-python[server] extra")
    log = tmp_path_factory.mktemp("server") / "server.log"
    token_by_token = ("--n_batch", "1", "--n_ubatch", "1")  # logits then do not depend on which prefix was cached
    with llama_cpp_server(default_model_path(), extra_args=token_by_token, start_timeout_s=90, log=log) as url:
        yield url


@pytest.mark.model
def test_runs_through_the_real_server_produce_only_valid_steps(llama_server: str) -> None:
    unhurried = Limits(max_steps=4, time_limit_s=24 * 3600.0)  # bounded by steps and tokens, not the clock
    runner = agent(llama_server, limits=unhurried, timeout_s=3600.0)
    traces = [runner.run(q) for q in QUESTIONS[:3]]
    for trace in traces:
        assert not trace.grammar_ignored and trace.stop_reason in (
            StopReason.ANSWER,
            StopReason.STEP_LIMIT,
            StopReason.LOOP,
        )
        assert trace.answer and trace.steps
        assert all(s.action is not None and s.action.to_text() == s.raw_text for s in trace.steps)
    assert traces[0].steps[0].action is not None and traces[0].steps[0].action.command == "calculate"


@pytest.mark.model
def test_four_at_once_through_the_real_server_match_a_sequential_run(llama_server: str) -> None:
    unhurried = Limits(max_steps=4, time_limit_s=24 * 3600.0)  # bounded by steps and tokens, not the clock
    runner = agent(llama_server, limits=unhurried, timeout_s=3600.0)
    sequential = [runner.run(q) for q in QUESTIONS]

    async def all_at_once() -> list[Trace]:
        return await asyncio.gather(*(runner.arun(q) for q in QUESTIONS))

    concurrent = asyncio.run(all_at_once())
    assert [t.answer for t in concurrent] == [t.answer for t in sequential]
    assert [[s.raw_text for s in t.steps] for t in concurrent] == [[s.raw_text for s in t.steps] for t in sequential]


def test_tether_ask_runs_against_a_server_with_the_key_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_cli import run

    monkeypatch.setenv("MY_KEY", "k-123")
    with FakeServer(calculator_server) as server:
        code, out, _ = run(
            capsys,
            "ask",
            "What is 6 * 7?",
            "--server",
            server.url,
            "--api-key-env",
            "MY_KEY",
            "--model",
            "m1",
            "--json",
        )
    trace = json.loads(out)
    assert code == 0 and trace["answer"] == "42" and trace["model"] == f"m1@{server.url}"
    assert server.requests[0].headers["authorization"] == "Bearer k-123" and body(server.requests[0])["model"] == "m1"


def _eval_records(out: Path) -> dict[str, tuple[str | None, list[str]]]:
    from tether.evaluation import Record

    (path,) = out.glob("*/*.jsonl")
    records = [Record.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {r.id: (r.trace.answer, [s.raw_text for s in r.trace.steps]) for r in records}


def _questions_file(tmp_path: Path) -> Path:
    path = tmp_path / "arith.jsonl"
    answers = [42, 15, 1024, 42]
    path.write_text(
        "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in zip(QUESTIONS, answers, strict=True))
    )
    return path


def _eval(capsys: pytest.CaptureFixture[str], data: Path, url: str, out: Path, concurrency: int) -> int:
    from test_cli import run

    code, _, err = run(
        capsys, "eval", str(data), "--server", url, "--model", "served", "--mode", "constrained",
        "--max-steps", "4", "--concurrency", str(concurrency), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    return code


def test_eval_at_concurrency_four_gives_the_records_of_a_sequential_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _questions_file(tmp_path)
    with FakeServer(calculator_server) as server:
        _eval(capsys, data, server.url, tmp_path / "one", 1)
        _eval(capsys, data, server.url, tmp_path / "four", 4)
    sequential, concurrent = _eval_records(tmp_path / "one"), _eval_records(tmp_path / "four")
    assert concurrent == sequential and len(sequential) == 4
    assert [answer for answer, _ in sequential.values()] == ["42", "15.0", "1024", "42"]


def test_eval_concurrency_without_a_server_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from test_cli import run

    code, _, err = run(
        capsys, "eval", str(_questions_file(tmp_path)), "--concurrency", "2", "--out", str(tmp_path / "o")
    )
    assert code == 2 and err.startswith("error: --concurrency needs --server") and err.count("\n") == 1


@pytest.mark.model
def test_eval_at_concurrency_four_through_the_real_server_matches_sequential(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, llama_server: str
) -> None:
    data = _questions_file(tmp_path)
    _eval(capsys, data, llama_server, tmp_path / "one", 1)
    _eval(capsys, data, llama_server, tmp_path / "four", 4)
    assert _eval_records(tmp_path / "four") == _eval_records(tmp_path / "one")


# ---------------------------------------------------------------- an install without the llama extra

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.install
def test_an_install_without_the_llama_extra_answers_through_a_server(tmp_path: Path) -> None:
    """`pip install tether` (no extras) into a fresh venv: importing tether loads neither llama.cpp nor
    numpy, a tool with a grammar registers, py.typed ships, and `tether ask --server` answers."""
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT / "tether", source / "tether", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, pip = venv / "bin" / "python", ["--disable-pip-version-check", "--quiet"]
    installed = subprocess.run(
        [python, "-m", "pip", "install", *pip, str(source)], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    probe = (
        "import importlib.util, sys, tether\n"
        "@tether.tool(example='1')\ndef echo(text: str) -> str:\n    'Echo.'\n    return text\n"
        "assert importlib.util.find_spec('llama_cpp') is None, 'llama-cpp-python was installed'\n"
        "assert 'llama_cpp' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n"
        "import importlib.resources\nassert importlib.resources.files('tether').joinpath('py.typed').is_file()\n"
    )
    checked = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr[-2000:]
    with FakeServer(openai_mode("good")) as server:
        asked = subprocess.run(
            [venv / "bin" / "tether", "ask", "What is 17 * 23?", "--server", server.url, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert asked.returncode == 0, asked.stderr
    trace = json.loads(asked.stdout)
    assert trace["answer"] == "391" and trace["stop_reason"] == "answer"
    assert trace["steps"][0]["observation"] == "391"  # calculate ran in the install without llama.cpp
