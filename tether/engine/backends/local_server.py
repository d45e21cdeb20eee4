"""A local server process for the duration of a `with` block: `python -m llama_cpp.server` for the
benchmark and the server tests, or any command that serves HTTP on a port it is given.

    with llama_cpp_server(model_path, threads=2) as url:   # "http://127.0.0.1:<free port>"
        backend = OpenAIServerBackend(url)

The process is started on a free 127.0.0.1 port and polled until `ready_path` answers 200, within
`start_timeout_s`; if it exits first, or the deadline passes, a BackendError says so with the tail
of its output. On leaving the block it is terminated and waited for (killed if it will not stop).
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO

from tether.errors import BackendError, ConfigError

__all__ = ["free_port", "llama_cpp_server", "local_server"]

HOST = "127.0.0.1"
_POLL_S = 0.3
_STOP_S = 10.0
_LOG_TAIL = 2000
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_server(
    command: Callable[[int], Sequence[str]],
    *,
    name: str,
    ready_path: str = "/",
    start_timeout_s: float = 120.0,
    log: Path | None = None,
) -> Iterator[str]:
    """Run `command(port)` on a free port; yield its URL once `ready_path` answers 200.
    Its output goes to `log` (or a temporary file) and its tail is quoted if it fails to start."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with _output(log) as sink:
        process = subprocess.Popen(list(command(port)), stdout=sink, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(process, f"{url}{ready_path}", name, start_timeout_s, sink)
            yield url
        finally:
            _stop(process)


def llama_cpp_server(
    model: Path | str,
    *,
    threads: int | None = None,
    n_ctx: int = 4096,
    extra_args: Sequence[str] = (),
    start_timeout_s: float = 120.0,
    log: Path | None = None,
) -> AbstractContextManager[str]:
    """`python -m llama_cpp.server` serving `model` (the `server` extra) on 127.0.0.1, as a context
    manager yielding its URL. `threads` defaults to min(2, CPUs)."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llama_cpp.server") is None:
        raise ConfigError("llama_cpp.server is not installed: pip install 'tether[server]'")
    threads = threads or min(2, os.cpu_count() or 1)

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", HOST, "--port", str(port),
                "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--verbose", "False", *extra_args]  # fmt: skip

    return local_server(command, name="llama_cpp.server", ready_path="/v1/models",
                        start_timeout_s=start_timeout_s, log=log)  # fmt: skip


@contextmanager
def _output(log: Path | None) -> Iterator[IO[bytes]]:
    if log is None:
        with tempfile.TemporaryFile() as sink:
            yield sink
    else:
        with log.open("w+b") as sink:
            yield sink


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, name: str, timeout_s: float, log: IO[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            with _DIRECT.open(url, timeout=max(0.1, min(2.0, remaining))) as reply:
                if reply.status == 200:
                    return
        except (OSError, http.client.HTTPException):  # not listening yet, or not ready
            pass
        code = process.poll()
        if code is not None:
            raise BackendError(f"{name} exited with code {code} before it was ready: {_tail(log)}")
        if time.monotonic() >= deadline:
            raise BackendError(f"{name} was not ready within {timeout_s:.0f}s: {_tail(log)}")
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))


def _tail(log: IO[bytes]) -> str:
    """The end of the process's output, on one line."""
    log.flush()
    log.seek(0, os.SEEK_END)
    size = log.tell()
    log.seek(max(0, size - _LOG_TAIL))
    text = " | ".join(line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip())
    return text or "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(_STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
