"""`tether serve MODEL`: llama.cpp's llama-server with parallel slots, until Ctrl-C; `tether server build`
builds that server (tether.llama_server) once per llama-cpp-python version."""

from __future__ import annotations

import signal
import types
from pathlib import Path

import click

from tether import llama_server as build_info
from tether.engine.backends.local_server import llama_server
from tether.errors import BackendError
from tether.models import resolve_model

__all__ = ["serve", "server"]


@click.group()
def server() -> None:
    """llama.cpp's own HTTP server (llama-server), built from the llama-cpp-python source."""


@server.command("build")
@click.option("--source", type=click.Path(exists=True, path_type=Path), help="the sdist (.tar.gz) or a llama.cpp tree")
@click.option("--jobs", type=click.IntRange(min=1), help="parallel compile jobs (default: the CPU count)")
@click.option("--force", is_flag=True, help="build again even if it is cached")
def server_build(source: Path | None, jobs: int | None, force: bool) -> None:
    """Build llama-server (CPU, Release, no web UI) and print where the binary is."""
    say = lambda line: click.echo(line, err=True)  # noqa: E731
    click.echo(build_info.build(source=source, jobs=jobs, force=force, say=say))


@server.command("path")
def server_path() -> None:
    """Print the llama-server binary tether runs (an error naming the build command if there is none)."""
    click.echo(build_info.binary())


@click.command()
@click.argument("model")
@click.option("--parallel", type=click.IntRange(1, 256), default=1, show_default=True, help="requests decoded at once")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--ctx-per-slot", type=click.IntRange(min=256), default=4096, show_default=True, help="tokens per slot")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: min(2, CPUs))")
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path), help="write the server's output here")
def serve(model: str, parallel: int, port: int, ctx_per_slot: int, threads: int | None, log: Path | None) -> None:
    """Serve MODEL (a model name or a GGUF path) with llama-server on 127.0.0.1 until Ctrl-C.

    The context is split evenly between the slots (-c = ctx-per-slot x parallel); continuous batching
    and the per-slot prompt cache are on. Point `tether ask/eval --server URL` at the URL it prints."""
    path = resolve_model(model)
    binary = build_info.binary()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a `kill` stops the server too
    try:
        with llama_server(binary, path, parallel=parallel, ctx_per_slot=ctx_per_slot, threads=threads, port=port,
                          log=log) as running:  # fmt: skip
            click.echo(running.url)  # alone on stdout, for scripts
            click.echo(
                f"serving {path.name} with {parallel} slot{'s' * (parallel != 1)} of {ctx_per_slot} tokens; try:"
                f' tether ask --server {running.url} "What is 17 * 23?"; Ctrl-C stops it',
                err=True,
            )
            code = running.process.wait()
            raise BackendError(f"llama-server exited with code {code}: {running.tail()}")
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt
