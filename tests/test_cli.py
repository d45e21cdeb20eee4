"""The command line: a thin layer over the library; errors are one line and a non-zero exit."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from fakeservers import FakeServer, echo_auth, openai_mode, refused_port

from tether import Agent, Limits, ScriptedBackend
from tether.cli import cli, main
from tether.cli.ask import run_question
from tether.engine.backends.openai_server import OpenAIServerBackend
from tether.errors import BackendError
from tether.evaluation.runner import EvalConfig
from tether.tools import resolve_tools


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_grammar_prints_the_composed_gbnf(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "grammar")
    assert code == 0
    assert out.startswith('root ::= "Thought: " thought "\\n" action "\\n"\n')
    assert 'action ::= "calculate: " cmd-calculate-root | "answer: " cmd-answer-root' in out


def test_grammar_answer_only_and_lark(capsys: pytest.CaptureFixture[str]) -> None:
    _, narrowed, _ = run(capsys, "grammar", "--answer-only")
    assert 'action ::= "answer: " cmd-answer-root' in narrowed and "calculate" not in narrowed
    _, lark_text, _ = run(capsys, "grammar", "--lark")
    assert "r_root:" in lark_text and '"calculate: "' in lark_text


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        (["ask", "q", "--model", "/no/such/model.gguf"], "error: model file not found: /no/such/model.gguf", 1),
        (["ask", "q", "--tools", "calculate,teleport"], "error: unknown tool 'teleport'; available:", 1),
        (["grammar", "--tools", "nope"], "error: unknown tool 'nope'", 1),
        (["ask", "q", "--max-steps", "0"], "error: Invalid value for '--max-steps'", 2),
        (["ask", "q", "--bogus"], "error: No such option '--bogus'", 2),
        (["ask"], "error: Missing argument 'QUESTION'", 2),
        (["corpus", "build", "/no/such.jsonl", "-o", "/tmp/x.sqlite"], "error: ", 1),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, code: int
) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code
    assert err.startswith(message)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_a_file_that_is_not_gguf_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model at all")
    code, _, err = run(capsys, "ask", "q", "--model", str(fake))
    assert code == 1 and "not a GGUF model file" in err


def test_unreadable_model_path_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "ask", "q", "--model", str(tmp_path))
    assert code == 1 and err == f"error: model path is not a file: {tmp_path}\n"


@pytest.mark.model
def test_ask_prints_a_live_trace_and_an_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 17 * 23?")
    assert code == 0
    assert "── step 1" in out and "Thought: " in out
    assert "\nAnswer: " in out and "stop: " in out


@pytest.mark.model
def test_ask_json_prints_the_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 6 * 7?", "--json", "--max-steps", "3", "--time-limit", "86400")
    assert code == 0
    trace = json.loads(out)
    assert trace["question"] == "What is 6 * 7?"
    assert trace["stop_reason"] in ("answer", "step_limit", "loop")
    assert trace["answer"]
    assert 1 <= len(trace["steps"]) <= 3
    assert all(step["action"] is not None for step in trace["steps"])


@pytest.mark.model
def test_ask_no_grammar_runs_to_completion(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 6 * 7?", "--json", "--no-grammar", "--max-steps", "3")
    assert code == 0
    trace = json.loads(out)
    assert trace["mode"] == "free" and trace["stop_reason"] is not None


@pytest.mark.model
def test_ask_acts_first_so_the_headline_question_is_computed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 17 * 23?", "--json")
    trace = json.loads(out)
    assert code == 0 and trace["steps"][0]["action"]["command"] == "calculate"
    assert trace["steps"][0]["observation"] == "391" and trace["answer"] == "391"


@pytest.mark.model
def test_answer_first_leaves_the_first_step_open(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ask", "What is 17 * 23?", "--json", "--answer-first")
    trace = json.loads(out)
    assert code == 0 and trace["steps"][0]["restriction"] == "all"


# ---------------------------------------------------------------- `ask --server` against the report's fake servers


def ask_server(
    capsys: pytest.CaptureFixture[str], url: str, *extra: str, question: str = "What is 6 * 7?"
) -> tuple[int, str, str]:
    return run(capsys, "ask", question, "--server", url, "--max-steps", "3", *extra)


def test_s1_a_failed_server_run_prints_its_reason_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with refused_port() as port:  # the time limit also stops the retries (3.5 s of backoff)
        code, out, err = ask_server(capsys, f"http://127.0.0.1:{port}", "--time-limit", "1")
        assert code == 1 and "stop: backend_error" in out
        assert err.startswith("error: http://127.0.0.1:") and err.count("\n") == 1
        assert "connection failed (ConnectionError: ConnectionRefusedError)" in err
        code, out, err = ask_server(capsys, f"http://127.0.0.1:{port}", "--time-limit", "1", "--json")
    assert code == 1 and json.loads(out)["stop_reason"] == "backend_error" and "connection failed" in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1", "error: malformed server URL 'http://[::1': Invalid IPv6 URL\n"),
        ("http://127.0.0.1:99999", "error: malformed server URL 'http://127.0.0.1:99999': Port out of range 0-65535\n"),
        ("localhost:8080", "error: server URL 'localhost:8080' must start with http:// or https://\n"),
    ],
)
def test_s2_a_malformed_server_url_is_one_line_before_any_request(
    capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    code, out, err = ask_server(capsys, url)
    assert (code, out, err) == (1, "", message)


def test_s3_ask_against_a_server_that_hangs_ends_near_its_time_limit(capsys: pytest.CaptureFixture[str]) -> None:
    began = time.monotonic()
    with FakeServer(openai_mode("hang")) as server:
        code, _, err = ask_server(capsys, server.url, "--time-limit", "1.5")
    assert time.monotonic() - began < 6  # was 24 s for a 5 s limit
    assert code == 1 and "time limit" in err and len(server.requests) == 1


def test_s10_k7_surrogates_from_argv_and_the_server_never_crash_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeServer(openai_mode("surrogate")) as server:
        code, out, _ = ask_server(capsys, server.url, "--answer-first", "--json", question="What is \udcff 17*23?")
        assert code == 0
        trace = json.loads(out)
        assert trace["question"] == "What is \ufffd 17*23?" and trace["answer"] == "\ufffd"
        code, out, _ = ask_server(capsys, server.url, "--answer-first", question="What is \udcff?")
    assert code == 0 and "Answer: \ufffd" in out


@pytest.mark.parametrize("tty", [False, True])
def test_s14_model_text_cannot_drive_the_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tty: bool
) -> None:
    if tty:  # click strips CSI (not OSC) by itself only when stdout is not a terminal
        monkeypatch.setattr(click.utils, "should_strip_ansi", lambda *_: False)
    with FakeServer(openai_mode("ansi")) as server:
        code, out, _ = ask_server(capsys, server.url, "--answer-first")
    assert code == 0 and "Answer: BOOM" in out and "Thought: red\nanswer: BOOM\n" in out
    for sequence in ("\x1b]", "\x07", "\x1b[2J", "\x1b[41m", "\x9b", "pwned"):
        assert sequence not in out
    own_styles = {"\x1b[0m", "\x1b[1m", "\x1b[36m"}  # click's: the step header and the bold answer
    assert set(re.findall(r"\x1b\[[0-9;]*m", out)) == (own_styles if tty else set())
    assert all(ch.isprintable() or ch == "\n" for ch in re.sub(r"\x1b\[[0-9;]*m", "", out))


def test_s15_the_key_and_url_credentials_never_reach_the_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_API_KEY", "sk-SECRET-123")
    with FakeServer(echo_auth) as server:
        code, out, err = ask_server(capsys, server.url, "--json")
        assert code == 1 and "HTTP 401 Invalid API key: Bearer [redacted]" in err
        assert "SECRET" not in out + err
        monkeypatch.delenv("TETHER_API_KEY")
        code, out, err = ask_server(capsys, server.url.replace("http://", "http://user:hunter2@"), "--json")
    assert code == 1 and json.loads(out)["model"] == f"server@{server.url}"
    assert "hunter2" not in out + err and "Basic [redacted]" in err


def test_s16_an_api_key_variable_that_is_not_set_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_UNSET_VAR", raising=False)
    with FakeServer(echo_auth) as server:
        code, out, err = ask_server(capsys, server.url, "--api-key-env", "NOPE_UNSET_VAR")
        assert not server.requests
    assert (code, out) == (2, "")
    assert err == "error: Invalid value for '--api-key-env': environment variable NOPE_UNSET_VAR is not set\n"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_s18_a_time_limit_that_is_not_finite_is_one_line(capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, out, err = run(capsys, "ask", "q", "--server", "http://127.0.0.1:1", "--time-limit", value)
    assert (
        code == 2 and out == "" and err.startswith("error: Invalid value for '--time-limit'") and err.count("\n") == 1
    )


def test_s17_ctrl_c_during_a_hung_request_aborts_with_130() -> None:
    with FakeServer(openai_mode("hang")) as server:
        # A terminal's Ctrl-C reaches a process whose SIGINT is at its default. A test run started in the
        # background (`cmd &`, nohup) ignores SIGINT, a child inherits that, and Python then installs no
        # KeyboardInterrupt handler: start the child with the default.
        ignored = signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            process = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-m", "tether.cli", "ask", "q", "--server", server.url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        finally:
            signal.signal(signal.SIGINT, ignored)
        deadline = time.monotonic() + 60
        while not server.requests and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert server.requests, "the request never arrived"
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # say where it hangs: faulthandler dumps every thread on SIGABRT
            process.send_signal(signal.SIGABRT)
            _, err = process.communicate(timeout=30)
            pytest.fail(f"still running 30 s after Ctrl-C; its threads:\n{err}")
    assert process.returncode == 130 and err.endswith("error: aborted\n") and "Traceback" not in err


# ---------------------------------------------------------------- the live view, without a model


def test_ask_live_view_on_the_scripted_backend(capsys: pytest.CaptureFixture[str]) -> None:
    script = ("Thought: I compute it.\ncalculate: 17 * 23\n", "Thought: \x1b[2Jdone.\nanswer: 391\n")
    agent = Agent(ScriptedBackend(*script), resolve_tools(["calculate"]), limits=Limits(max_steps=3))
    trace = run_question(agent, "What is 17 * 23?")
    out, err = capsys.readouterr()
    assert trace.answer == "391" and err == ""
    assert out.startswith("── step 1 (a tool first)\nThought: I compute it.\ncalculate: 17 * 23\nObservation: 391\n")
    assert "── step 2\nThought: [2Jdone.\nanswer: 391\n" in out  # streamed a character at a time: ESC removed
    assert "\x1b" not in out
    assert "\nAnswer: 391\nstop: answer · 2 steps · 0 invalid · " in out


def test_ask_live_view_shows_an_invalid_step_and_the_step_limit(capsys: pytest.CaptureFixture[str]) -> None:
    script = ("I refuse the format.", "Thought: x\nanswer: 1\n")
    agent = Agent(ScriptedBackend(*script), resolve_tools(["calculate"]), limits=Limits(max_steps=2), mode="free")
    trace = run_question(agent, "q")
    out, _ = capsys.readouterr()
    assert trace.parse_failures == 1
    assert "── step 1 (a tool first)\nI refuse the format.\n[invalid step] " in out
    assert "── step 2 (last step: only `answer:`)\n" in out and "stop: step_limit · 2 steps · 1 invalid" in out


def test_ask_as_json_and_a_backend_error_end_as_ask_does(capsys: pytest.CaptureFixture[str]) -> None:
    agent = Agent(
        ScriptedBackend("Thought: x\nanswer: 1\n"), resolve_tools(["calculate"]), limits=Limits(act_first=False)
    )
    run_question(agent, "q", as_json=True)
    assert json.loads(capsys.readouterr().out)["answer"] == "1"
    with refused_port() as port:
        server = OpenAIServerBackend(f"http://127.0.0.1:{port}", retries=0, timeout_s=2)
        with pytest.raises(BackendError, match="connection failed"):
            run_question(Agent(server, resolve_tools(["calculate"])), "q")
    assert "stop: backend_error" in capsys.readouterr().out


def test_ask_and_eval_share_the_server_options_and_read_their_defaults() -> None:
    def options(command: click.Command) -> dict[str, click.Parameter]:
        return {p.name or "": p for p in command.params}

    ask_options, eval_options = options(cli.commands["ask"]), options(cli.commands["eval"])
    for name in ("server", "server_kind", "api_key"):
        assert (
            ask_options[name].opts == eval_options[name].opts
            and ask_options[name].default == eval_options[name].default
        )
    assert ask_options["max_steps"].default == Limits().max_steps
    assert ask_options["time_limit"].default == Limits().time_limit_s
    assert ask_options["act_first"].default == Limits().act_first
    assert eval_options["max_steps"].default == EvalConfig(datasets=()).max_steps
    assert eval_options["time_limit"].default == EvalConfig(datasets=()).time_limit_s


def test_eval_refuses_an_api_key_variable_that_is_not_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NOPE_UNSET_VAR", raising=False)
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "1 + 1?", "answer": "2"}\n')
    with FakeServer(echo_auth) as server:
        code, out, err = run(capsys, "eval", str(data), "--server", server.url, "--api-key-env", "NOPE_UNSET_VAR")
        assert not server.requests
    assert (code, out) == (2, "")
    assert err == "error: Invalid value for '--api-key-env': environment variable NOPE_UNSET_VAR is not set\n"
