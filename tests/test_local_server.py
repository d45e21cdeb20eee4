"""The local server helper (tether.engine.backends.local_server): started on a free 127.0.0.1 port,
polled until ready, stopped on exit, and a clear BackendError when it dies or never gets ready.
Real processes (Python's own http.server and small scripts); no model."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tether.engine.backends.local_server import free_port, llama_cpp_server, local_server, running_server
from tether.errors import BackendError, ConfigError


def _script(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def _refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_serves_on_a_free_loopback_port_then_stops(tmp_path: Path) -> None:
    (tmp_path / "ready").write_text("yes", encoding="utf-8")

    def http_server(port: int) -> list[str]:
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]

    with local_server(http_server, name="http.server", ready_path="/ready", start_timeout_s=60) as url:
        assert url.startswith("http://127.0.0.1:")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{url}/ready", timeout=10) as reply:
            assert reply.read() == b"yes"
    assert _refused(url)  # terminated and waited for


def test_a_running_server_on_the_port_asked_for_exposes_its_process_and_output(tmp_path: Path) -> None:
    """`tail()` while the server runs must not move the offset it writes at (it shares the open file)."""
    (tmp_path / "ready").write_text("yes", encoding="utf-8")
    code = (
        "import http.server, sys, functools\n"
        "print('first line', flush=True)\n"
        "class H(http.server.SimpleHTTPRequestHandler):\n"
        "    def log_message(self, *a): print('served', self.path, flush=True)\n"
        "handler = functools.partial(H, directory=sys.argv[2])\n"
        "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), handler).serve_forever()\n"
    )
    port = free_port()
    log = tmp_path / "server.log"
    with running_server(lambda p: _script(code, str(p), str(tmp_path)), name="py", ready_path="/ready",
                        port=port, log=log) as server:  # fmt: skip
        assert server.url == f"http://127.0.0.1:{port}" and server.process.poll() is None
        assert server.tail().startswith("first line")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(f"{server.url}/ready?again", timeout=10).close()
        deadline = time.monotonic() + 10
        while "again" not in server.tail() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert server.process.returncode is not None
    assert log.read_text(encoding="utf-8").startswith("first line\n")  # nothing overwrote it
    assert "served /ready?again" in log.read_text(encoding="utf-8")


def test_a_server_that_exits_says_so_with_its_output(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    dies = _script("import sys; print('error: no model at /nowhere.gguf'); sys.exit(2)")
    expected = r"fake-server exited with code 2 before it was ready: error: no model"
    with pytest.raises(BackendError, match=expected), local_server(lambda port: dies, name="fake-server", log=log):
        pytest.fail("never ready")
    assert "no model at /nowhere.gguf" in log.read_text(encoding="utf-8")


def test_a_server_never_ready_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); print('loading', flush=True)"
    sleeper = _script(code + "; time.sleep(600)", str(pid_file))
    began = time.monotonic()
    with (
        pytest.raises(BackendError, match=r"slow-server was not ready within 1s: loading"),
        local_server(lambda port: sleeper, name="slow-server", start_timeout_s=1),
    ):
        pytest.fail("never ready")
    assert time.monotonic() - began < 30  # the 600 s sleeper was not waited out
    assert _gone(int(pid_file.read_text()))


def test_the_body_of_the_block_failing_still_stops_the_server(tmp_path: Path) -> None:
    def http_server(port: int) -> list[str]:
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]

    with pytest.raises(RuntimeError, match="the caller's own failure"), local_server(http_server, name="http") as url:
        raise RuntimeError("the caller's own failure")
    assert _refused(url)


def test_llama_cpp_server_without_the_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    without_server = lambda name, *a: None if name == "llama_cpp.server" else real(name)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", without_server)
    with pytest.raises(ConfigError, match=r"llama_cpp.server is not installed: pip install 'tether\[server\]'"):
        llama_cpp_server("model.gguf")
