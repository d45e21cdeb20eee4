"""tether.mcp against a real MCP server (tests/mcp_server_fixture.py, written with the SDK's server
API) started in a subprocess, over stdio and over streamable HTTP on 127.0.0.1: its tools are listed
and become tether Tools whose grammars come from their input schemas; calls, an isError result, a
server killed mid-call and a hang all end as observations and the run goes on; closing stops (or
kills) the server; `tether ask --mcp` adds a server's tools. No test leaves a process or thread."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import Agent, Limits, LlamaCppBackend, ScriptedBackend, Tool
from tether.cli import main
from tether.errors import ConfigError, ToolError, ToolRegistrationError, ToolTimeout
from tether.mcp import MCPServer, mcp_tools
from tether.tools import resolve_tools

FIXTURE = Path(__file__).with_name("mcp_server_fixture.py")
COMMAND = [sys.executable, str(FIXTURE)]
COMMAND_LINE = f"{sys.executable} {FIXTURE}"


def compact(arguments: dict[str, object]) -> str:
    """A tool input as the derived grammar writes it: one line of compact JSON."""
    return json.dumps(arguments, separators=(",", ":"))


def _children() -> set[int]:
    """This process's live child processes (zombies excluded)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == os.getpid() and state != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test ends with the processes and connection threads it started gone."""
    before, threads = _children(), set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while (_children() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _children() - before == set(), "a server process outlived its test"
    left = [t for t in set(threading.enumerate()) - threads if t.name == "tether-mcp"]
    assert not left, "a connection thread outlived its test"


@pytest.fixture(scope="module")
def stdio() -> Iterator[MCPServer]:
    """One stdio connection for the tests that neither kill nor hang the server."""
    with MCPServer(COMMAND) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_url() -> Iterator[str]:
    """The fixture server over streamable HTTP on a free 127.0.0.1 port, for one test."""
    port = _free_port()
    process = subprocess.Popen([*COMMAND, "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the HTTP fixture server did not start")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait(timeout=10)


def _tool(server: MCPServer, server_name: str) -> Tool:
    (found,) = [t for t in server.tools if server.names[t.name] == server_name]
    return found


# ---------------------------------------------------------------- listing: tools with schema-derived grammars


def test_the_servers_tools_become_tether_tools_in_its_order(stdio: MCPServer) -> None:
    assert list(stdio.names.values()) == [
        "add", "convert", "greet", "total", "word-count", "2x", "fail", "hang", "die", "pid",
    ]  # fmt: skip
    assert [t.name for t in stdio.tools] == list(stdio.names)
    assert stdio.names["word-count"] == "word-count"  # MCP's names fit tether's as they are...
    assert stdio.names["t_2x"] == "2x"  # ...but one: made to fit, and mapped back to the server's
    add = _tool(stdio, "add")
    assert add.description == "Add two integers." and add.timeout_s == stdio.timeout_s
    for tool in stdio.tools:
        assert tool.accepts(tool.example), tool.name


@pytest.mark.parametrize(
    ("server_name", "accepted", "refused"),
    [
        ("add", {"a": 2, "b": -3}, [{"a": "2", "b": 3}, {"a": 2}, {"a": 1.5, "b": 2}]),
        ("convert", {"value": 20.5, "unit": "C"}, [{"value": 1, "unit": "K"}, {"unit": "C"}]),
        ("greet", {"person": {"name": "Ann", "age": 30}}, [{"person": {"name": "Ann"}}, {"greeting": "Hi"}]),
        ("total", {"numbers": [1, 2, 3]}, [{"numbers": ["1"]}, {"numbers": 1}]),
    ],
)
def test_each_input_grammar_is_the_schema(
    stdio: MCPServer, server_name: str, accepted: dict[str, object], refused: list[dict[str, object]]
) -> None:
    tool = _tool(stdio, server_name)
    assert tool.accepts(compact(accepted))
    for bad in refused:
        assert not tool.accepts(compact(bad)), bad
    assert not tool.accepts("not json")


def test_an_optional_key_may_be_given(stdio: MCPServer) -> None:
    greet = _tool(stdio, "greet")
    assert greet(compact({"person": {"name": "Ann", "age": 30}})) == "Hello, Ann (30)!"
    assert greet(compact({"person": {"name": "Bo", "age": 4}, "greeting": "Hi"})) == "Hi, Bo (4)!"


# ---------------------------------------------------------------- calls


def test_calls_reach_the_server_and_return_its_text(stdio: MCPServer) -> None:
    assert _tool(stdio, "add")(compact({"a": 2, "b": 3})) == "5"
    assert _tool(stdio, "convert")(compact({"value": 100, "unit": "C"})) == "212 F"
    assert _tool(stdio, "total")(compact({"numbers": [4, 5, 6]})) == "15"
    assert _tool(stdio, "word-count")(compact({"text": "one two three"})) == "3"
    assert _tool(stdio, "2x")(compact({"n": 21})) == "42"
    assert stdio.call("add", {"a": 1, "b": 1}) == "2"  # by the server's own name


def test_calls_from_several_threads_at_once(stdio: MCPServer) -> None:
    add = _tool(stdio, "add")
    results: dict[int, str] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.update({n: add(compact({"a": n, "b": n}))})) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: str(2 * n) for n in range(8)}


def test_an_is_error_result_is_a_tool_error(stdio: MCPServer) -> None:
    with pytest.raises(ToolError, match="refused: no reason"):
        stdio.call("fail", {"reason": "no reason"})


def test_an_agent_run_calls_mcp_tools_and_reads_an_error_as_an_observation(stdio: MCPServer) -> None:
    script = (
        f"Thought: I add them.\nadd: {compact({'a': 17, 'b': 25})}\n",
        f"Thought: Try the failing one.\nfail: {compact({'reason': 'bad day'})}\n",
        "Thought: I have the sum.\nanswer: 42\n",
    )
    backend = ScriptedBackend(*script)
    trace = Agent(backend, [*stdio.tools, *resolve_tools(["calculate"])], limits=Limits(max_steps=4)).run("17 + 25?")
    assert [s.observation for s in trace.steps] == ["42", "error: Error executing tool fail: refused: bad day", None]
    assert trace.answer == "42" and trace.stop_reason is not None and trace.stop_reason.value == "answer"
    prompt = backend.prompts[0]
    assert "add: Add two integers." in prompt and "calculate" in prompt


@pytest.mark.model
def test_smollm2_calls_an_mcp_tool_with_arguments_the_server_accepts(smollm2: LlamaCppBackend) -> None:
    """The grammar from the schema makes a 135M model's first call valid JSON of the right shape."""
    with MCPServer(COMMAND) as server:
        tools = [t for t in server.tools if t.name in ("add", "convert", "greet")]
        agent = Agent(smollm2, tools, limits=Limits(max_steps=2, time_limit_s=86400, fallback=False))
        trace = agent.run("What is 17 plus 25?")
    first = trace.steps[0]
    assert first.action is not None and first.action.command in ("add", "convert", "greet")
    tool = next(t for t in tools if t.name == first.action.command)
    assert tool.accepts(first.action.input) and isinstance(json.loads(first.action.input), dict)
    assert first.observation and not first.observation.startswith("error"), first.observation


# ---------------------------------------------------------------- failures: a server killed mid-call, a hang


def test_a_server_that_dies_mid_call_is_an_observation_and_the_run_goes_on() -> None:
    script = (
        f"Thought: Stop it.\ndie: {compact({'code': 1})}\n",
        f"Thought: Try again.\nadd: {compact({'a': 1, 'b': 2})}\n",
        "Thought: It is gone.\nanswer: unknown\n",
    )
    with MCPServer(COMMAND) as server:
        trace = Agent(ScriptedBackend(*script), server.tools, limits=Limits(max_steps=4)).run("q")
    observations = [s.observation for s in trace.steps]
    assert observations[0] == "error: die failed: the server closed the connection"
    assert (observations[1] or "").startswith("error: add failed: ")
    assert trace.answer == "unknown"


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_server_killed_during_a_call_fails_that_call_at_once(transport: str, request: pytest.FixtureRequest) -> None:
    target = request.getfixturevalue("http_url") if transport == "http" else COMMAND
    with MCPServer(target, timeout_s=20) as server:
        pid = int(server.call("pid", {}))
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
        began = time.monotonic()
        with pytest.raises(ToolError, match="hang failed: ") as caught:
            server.call("hang", {"seconds": 30})
        assert not isinstance(caught.value, ToolTimeout) and time.monotonic() - began < 10
        with pytest.raises(ToolError, match="add failed: "):
            server.call("add", {"a": 1, "b": 2})


def test_a_hang_is_a_timeout_observation_and_close_kills_the_server() -> None:
    script = (
        f"Thought: Wait.\nhang: {compact({'seconds': 60})}\n",
        f"Thought: Add instead.\nadd: {compact({'a': 1, 'b': 2})}\n",
        "Thought: Done.\nanswer: 3\n",
    )
    server = MCPServer(COMMAND, timeout_s=0.5)
    pid = int(server.call("pid", {}))
    trace = Agent(ScriptedBackend(*script), server.tools, limits=Limits(max_steps=4)).run("q")
    assert [s.observation for s in trace.steps] == ["error: hang timed out after 0.5s", "3", None]
    with pytest.raises(ToolTimeout, match=r"^hang timed out after 0\.5s$"):  # directly, as the controller calls
        server.call("hang", {"seconds": 60})
    began = time.monotonic()
    server.close()  # two server threads still sleep: it will not exit when its stdin closes
    assert not _alive(pid) and time.monotonic() - began < 10
    with pytest.raises(ToolError, match="is closed"):
        server.call("add", {"a": 1, "b": 2})
    server.close()  # idempotent


def test_close_stops_the_server() -> None:
    with mcp_tools(COMMAND_LINE) as tools:
        pid = int(next(t for t in tools if t.name == "pid")(compact({})))
        assert _alive(pid)
    assert not _alive(pid)


def test_close_kills_a_server_that_ignores_its_stdin_and_sigterm() -> None:
    server = MCPServer([*COMMAND, "--stubborn"])
    pid = int(server.call("pid", {}))
    began = time.monotonic()
    server.close()  # stdin closed, 2 s, SIGTERM (ignored), 2 s, SIGKILL
    assert not _alive(pid) and time.monotonic() - began < 10


# ---------------------------------------------------------------- streamable HTTP


def test_streamable_http_lists_and_calls(http_url: str) -> None:
    with MCPServer(http_url) as server:
        assert "t_2x" in server.names and len(server.tools) == 10
        assert _tool(server, "add")(compact({"a": 2, "b": 40})) == "42"
        assert _tool(server, "greet")(compact({"person": {"name": "Cy", "age": 9}})) == "Hello, Cy (9)!"
        with pytest.raises(ToolError, match="refused: x"):
            server.call("fail", {"reason": "x"})


# ---------------------------------------------------------------- servers that cannot be used


def test_a_server_that_fails_to_start_names_the_command_and_its_last_words() -> None:
    with pytest.raises(ConfigError) as caught:
        MCPServer([*COMMAND, "--crash"])
    message = str(caught.value)
    assert message.startswith(f"MCP server '{COMMAND_LINE} --crash' failed to start: the server closed the connection")
    assert message.endswith("(its stderr ends: fixture: cannot start (asked to crash))")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("no-such-mcp-server --flag", "MCP server 'no-such-mcp-server --flag' failed to start: FileNotFoundError"),
        ("", "MCP server command '' is empty"),
        ('python "unclosed', "does not parse"),
    ],
)
def test_a_bad_command_is_a_config_error(target: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        MCPServer(target)


def test_a_refused_url_is_a_config_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/mcp"
    with pytest.raises(ConfigError, match=f"^MCP server '{url}' failed to start: "):
        MCPServer(url)


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nsys.stdin.read()\n")  # reads, never answers, ends with its stdin
    began = time.monotonic()
    with pytest.raises(ConfigError, match=r"did not answer within 0.5s"):
        MCPServer([sys.executable, str(silent)], connect_timeout_s=0.5)
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("connect_timeout_s", [0.01, 0.05, 0.3])
def test_abandoning_a_connection_leaves_no_process_or_transport_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connect_timeout_s: float
) -> None:
    """Regression: close() while still connecting once cancelled the session's task itself, which
    defeats the SDK's shielded shutdown: the server's transport was left to the garbage collector."""
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nsys.stdin.read()\n")
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}"))
    for _ in range(10):
        with pytest.raises(ConfigError, match="did not answer within"):
            MCPServer([sys.executable, str(silent)], connect_timeout_s=connect_timeout_s)
    gc.collect()
    assert unraisable == []


def test_a_tool_whose_schema_has_no_grammar_is_refused_or_left_out() -> None:
    with pytest.raises(ToolRegistrationError) as caught:
        MCPServer([*COMMAND, "--unsupported"])
    assert str(caught.value) == (
        f"MCP server '{COMMAND_LINE} --unsupported': tool 'tags': "
        "properties.names.uniqueItems: uniqueItems cannot be expressed in a grammar"
    )
    with MCPServer([*COMMAND, "--unsupported"], skip_unsupported=True) as server:
        assert "tags" not in server.names and len(server.tools) == 10
        assert server.skipped == {"tags": "properties.names.uniqueItems: uniqueItems cannot be expressed in a grammar"}


def test_a_prefix_keeps_two_servers_apart(stdio: MCPServer) -> None:
    with MCPServer(COMMAND, prefix="b_") as other:
        assert other.names["b_add"] == "add" and other.names["b_word-count"] == "word-count"
        agent = Agent(ScriptedBackend(), [*stdio.tools, *other.tools])
        assert {"add", "b_add"} <= set(agent.tools.names)


# ---------------------------------------------------------------- the CLI


def _scripted(monkeypatch: pytest.MonkeyPatch, *script: str) -> ScriptedBackend:
    backend = ScriptedBackend(*script)
    monkeypatch.setattr("tether.models.build_backend", lambda *args, **kwargs: backend)
    return backend


def test_ask_mcp_adds_the_servers_tools(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _scripted(
        monkeypatch,
        f"Thought: Count.\nword-count: {compact({'text': 'a b c d'})}\n",
        "Thought: Four.\nanswer: 4\n",
    )
    code = main(["ask", "How many words in 'a b c d'?", "--tools", "calculate", "--mcp", COMMAND_LINE, "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    trace = json.loads(out)
    assert [s["observation"] for s in trace["steps"]] == ["4", None] and trace["answer"] == "4"
    assert "word-count: Count the words of a text." in backend.prompts[0] and "calculate" in backend.prompts[0]


def test_ask_mcp_takes_several_servers_and_a_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, http_url: str
) -> None:
    _scripted(monkeypatch, f"Thought: Add.\nadd: {compact({'a': 1, 'b': 2})}\n", "Thought: 3.\nanswer: 3\n")
    code = main(["ask", "1 + 2?", "--tools", "", "--mcp", http_url, "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["steps"][0]["observation"] == "3"
    code = main(["ask", "q", "--tools", "", "--mcp", http_url, "--mcp", COMMAND_LINE])
    _, err = capsys.readouterr()
    assert code == 1 and err == "error: tool 'add' is already registered\n"


def test_ask_mcp_leaves_out_a_tool_it_cannot_express_with_a_note(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _scripted(monkeypatch, f"Thought: Add.\nadd: {compact({'a': 1, 'b': 2})}\n", "Thought: 3.\nanswer: 3\n")
    code = main(["ask", "1 + 2?", "--tools", "", "--mcp", f"{COMMAND_LINE} --unsupported", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["answer"] == "3"
    assert err.startswith(f"note: MCP server '{COMMAND_LINE} --unsupported': tool 'tags' left out: ")
    assert err.count("\n") == 1 and "uniqueItems" in err
    assert "add: " in backend.prompts[0] and "tags: " not in backend.prompts[0]


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("no-such-mcp-server", "error: MCP server 'no-such-mcp-server' failed to start: FileNotFoundError: "),
        (f"{COMMAND_LINE} --crash", f"error: MCP server '{COMMAND_LINE} --crash' failed to start: "),
    ],
)
def test_ask_with_a_bad_server_is_one_line_and_non_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: str, message: str
) -> None:
    backend = _scripted(monkeypatch)
    code = main(["ask", "q", "--mcp", server])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.startswith(message) and err.count("\n") == 1
    assert backend.prompts == []
