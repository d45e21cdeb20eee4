"""A local server process for the duration of a `with` block: llama.cpp's `llama-server` (what
`tether serve` runs), `python -m llama_cpp.server`, or any command that serves HTTP on a port it is
given. The tests, the benchmark and `tether serve` all start their servers here.

    with llama_server(binary, model_path, parallel=4) as url:   # "http://127.0.0.1:<free port>"
        backend = OpenAIServerBackend(url)

The process is started on a free 127.0.0.1 port (or the one asked for) and polled until `ready_path`
answers 200, within `start_timeout_s`; if it exits first, or the deadline passes, a BackendError
says so with the tail of its output. On leaving the block it is terminated and waited for (killed if
it will not stop). `running_server` yields the process too, for callers that watch or kill it.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tether.errors import BackendError, ConfigError

__all__ = ["RunningServer", "free_port", "llama_cpp_server", "llama_server", "llama_server_args", "local_server",
           "running_server"]  # fmt: skip

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


@dataclass(frozen=True)
class RunningServer:
    """A started, ready server: its URL and process, and the end of its output so far."""

    url: str
    process: subprocess.Popen[bytes]
    name: str
    _log: IO[bytes]

    def tail(self) -> str:
        """The end of the server's output, on one line."""
        return _tail(self._log)


@contextmanager
def running_server(
    command: Callable[[int], Sequence[str]],
    *,
    name: str,
    ready_path: str = "/",
    start_timeout_s: float = 120.0,
    log: Path | None = None,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Run `command(port)` on `port` (default: a free one) and yield it once `ready_path` answers 200.
    Its output goes to `log` (or a temporary file) and its tail is quoted if it fails to start."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    with _output(log) as sink:
        process = subprocess.Popen(list(command(port)), stdout=sink, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(process, f"{url}{ready_path}", name, start_timeout_s, sink)
            yield RunningServer(url, process, name, sink)
        finally:
            _stop(process)


@contextmanager
def local_server(
    command: Callable[[int], Sequence[str]],
    *,
    name: str,
    ready_path: str = "/",
    start_timeout_s: float = 120.0,
    log: Path | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """`running_server`, yielding only the URL."""
    with running_server(command, name=name, ready_path=ready_path, start_timeout_s=start_timeout_s, log=log,
                        port=port) as server:  # fmt: skip
        yield server.url


def llama_server_args(
    model: Path | str, port: int, *, parallel: int = 1, ctx_per_slot: int = 4096, threads: int | None = None
) -> list[str]:
    """The arguments of llama.cpp's llama-server for `parallel` slots of `ctx_per_slot` tokens each: the
    context (`-c`) is split evenly between the slots, so it is their product; continuous batching and
    the per-slot prompt cache on; no web UI."""
    if parallel < 1 or ctx_per_slot < 1:
        raise ConfigError(f"llama-server needs slots of at least one token, not {parallel} x {ctx_per_slot}")
    threads = threads or min(2, os.cpu_count() or 1)
    return ["-m", str(model), "--host", HOST, "--port", str(port), "--parallel", str(parallel),
            "--ctx-size", str(ctx_per_slot * parallel), "--threads", str(threads), "--threads-batch", str(threads),
            "--cont-batching", "--cache-prompt", "--no-webui"]  # fmt: skip


def llama_server(
    binary: Path | str,
    model: Path | str,
    *,
    parallel: int = 1,
    ctx_per_slot: int = 4096,
    threads: int | None = None,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    start_timeout_s: float = 120.0,
    log: Path | None = None,
) -> AbstractContextManager[RunningServer]:
    """llama.cpp's `llama-server` (tether.llama_server builds and finds `binary`) serving `model` on
    127.0.0.1 with `parallel` slots, as a context manager yielding the RunningServer once `/health`
    answers 200 (the model is loaded). `threads` defaults to min(2, CPUs)."""
    llama_server_args("m", 0, parallel=parallel, ctx_per_slot=ctx_per_slot)  # bad sizes fail before starting

    def command(port: int) -> list[str]:
        return [str(binary), *llama_server_args(model, port, parallel=parallel, ctx_per_slot=ctx_per_slot,
                                                threads=threads), *extra_args]  # fmt: skip

    return running_server(command, name="llama-server", ready_path="/health", start_timeout_s=start_timeout_s,
                          log=log, port=port)  # fmt: skip


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
    """The end of the process's output, on one line. Read with pread: the child writes through the same
    open file, so moving its offset would make it overwrite its own output."""
    log.flush()
    fd = log.fileno()
    size = os.fstat(fd).st_size
    start = max(0, size - _LOG_TAIL)
    data = os.pread(fd, size - start, start)
    text = " | ".join(line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip())
    return text or "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(_STOP_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
