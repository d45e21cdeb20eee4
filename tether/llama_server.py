"""llama.cpp's own HTTP server, `llama-server`, built from the source that llama-cpp-python ships.

Why: `llama_cpp.server` decodes one request at a time; `llama-server` has parallel slots, continuous
batching and a per-slot prompt cache, so many agents share one model. PyPI has no binary of it, but
the llama-cpp-python sdist holds llama.cpp's whole source under `vendor/llama.cpp`, so it builds
offline, at exactly the llama.cpp commit of tether's in-process backend:

    tether server build        # pip download the sdist, cmake --target llama-server, cache the binary

The binary is cached under `${XDG_CACHE_HOME:-~/.cache}/tether/llama-server/<llama-cpp-python
version>/llama-server` (or `$TETHER_LLAMA_SERVER_DIR/<version>/`), so a second build is skipped. The
build is CPU only, Release, the server target alone, without the web UI (its assets need npm or a
download). `$TETHER_LLAMA_SERVER` names a binary built elsewhere (a GPU build, say) instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tether import paths
from tether.errors import ConfigError

__all__ = ["BUILD_COMMAND", "PINNED_VERSION", "binary", "build", "cache_dir", "cmake_flags", "installed_binary"]

BUILD_COMMAND = "tether server build"
PINNED_VERSION = "0.3.36"  # the llama-cpp-python tether is tested with (pyproject's lower bound)
_BINARY = "llama-server"
_STAMP = "build.json"
_LOG_TAIL = 1500


def _version() -> str:
    """The installed llama-cpp-python's version (its llama.cpp is the one to match), else the pinned one."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return PINNED_VERSION


def cache_dir(version: str | None = None) -> Path:
    """Where the binary for this llama-cpp-python version lives (whether or not it is built yet)."""
    return paths.cache_dir("llama-server", "TETHER_LLAMA_SERVER_DIR") / (version or _version())


def installed_binary(version: str | None = None) -> Path | None:
    """The cached llama-server for this version, or None if it is not built (a binary counts only with
    the stamp a finished build writes last)."""
    folder = cache_dir(version)
    path = folder / _BINARY
    if path.is_file() and os.access(path, os.X_OK) and (folder / _STAMP).is_file():
        return path
    return None


def binary() -> Path:
    """The llama-server to run: `$TETHER_LLAMA_SERVER`, else the cached build; a ConfigError naming the
    build command when there is none."""
    override = os.environ.get("TETHER_LLAMA_SERVER")
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"TETHER_LLAMA_SERVER={override!r} is not an executable file")
        return path
    built = installed_binary()
    if built is None:
        raise ConfigError(f"llama-server is not built (looked in {cache_dir()}); run: {BUILD_COMMAND}")
    return built


def cmake_flags() -> list[str]:
    """CPU, Release, one static binary; no tests, examples, web UI or TLS (nothing to download)."""
    return [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DGGML_CCACHE=OFF",
    ]


def build(
    *,
    source: Path | None = None,
    jobs: int | None = None,
    force: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Path:
    """Build llama-server for the installed llama-cpp-python version and cache it; return its path.
    Skipped when it is already cached (unless `force`). `source` is the sdist (.tar.gz) or an unpacked
    llama.cpp tree; without it, pip downloads the sdist (from its cache when it has it)."""
    version = _version()
    done = installed_binary(version)
    if done is not None and not force:
        say(f"llama-server for llama-cpp-python {version} is already built: {done}")
        return done
    cmake = shutil.which("cmake")
    if cmake is None:
        raise ConfigError("cmake is not installed; llama-server is built with CMake (apt install cmake)")
    folder = cache_dir(version)
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):  # a second build of the same version waits, then finds it done
        done = installed_binary(version)
        if done is not None and not force:
            return done
        for stale in folder.glob(".build-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        return _build(cmake, version, folder, source, jobs or os.cpu_count() or 1, say)


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(cmake: str, version: str, folder: Path, source: Path | None, jobs: int, say: Callable[[str], None]) -> Path:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=folder) as work:
        tree = _llama_cpp_tree(source, version, Path(work), say)
        out = Path(work) / "build"
        say(f"building llama-server from {tree} with {jobs} jobs (about 10 min on 2 cores)")
        _run([cmake, "-S", str(tree), "-B", str(out), *cmake_flags()], "cmake configure", Path(work) / "configure.log")
        _run(
            [cmake, "--build", str(out), "--target", _BINARY, "--config", "Release", "-j", str(jobs)],
            "cmake build",
            Path(work) / "build.log",
        )
        built = out / "bin" / _BINARY
        if not built.is_file():
            raise ConfigError(f"the build finished but left no {built}")
        partial = folder / f".{_BINARY}.partial"
        shutil.copy2(built, partial)
        os.replace(partial, folder / _BINARY)
    seconds = time.monotonic() - began
    stamp = {"llama_cpp_python": version, "cmake_flags": cmake_flags(), "jobs": jobs, "build_s": round(seconds, 1)}
    (folder / _STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    say(f"built in {seconds / 60:.1f} min")
    return folder / _BINARY


def _llama_cpp_tree(source: Path | None, version: str, work: Path, say: Callable[[str], None]) -> Path:
    """The llama.cpp source folder: `source` itself, or `vendor/llama.cpp` unpacked from the sdist."""
    if source is not None and source.is_dir():
        for tree in (source, source / "vendor" / "llama.cpp"):
            if (tree / "tools" / "server" / "CMakeLists.txt").is_file():
                return tree
        raise ConfigError(f"{source} holds no llama.cpp source (tools/server/CMakeLists.txt)")
    if source is None:
        say(f"downloading the llama-cpp-python {version} source (77 MB) with pip")
        requirement = f"llama-cpp-python=={version}"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                   "--dest", str(work), requirement]  # fmt: skip
        _run(command, "pip download", work / "pip.log")
        found = sorted(work.glob("llama_cpp_python-*.tar.gz"))
        if not found:
            raise ConfigError(f"pip download {requirement} left no sdist in {work}")
        source = found[0]
    prefix = None
    with tarfile.open(source, "r:gz") as archive:
        wanted = []
        for member in archive.getmembers():
            parts = member.name.split("/")
            if len(parts) > 3 and parts[1:3] == ["vendor", "llama.cpp"]:
                prefix = "/".join(parts[:3])
                wanted.append(member)
        if prefix is None:
            raise ConfigError(f"{source} holds no vendor/llama.cpp")
        archive.extractall(work / "src", members=wanted, filter="data")
    return work / "src" / prefix


def _run(command: list[str], what: str, log: Path) -> None:
    """Run `command` with its output in `log`; a failure is a ConfigError quoting the log's tail."""
    with log.open("w+b") as sink:
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False).returncode
        if code != 0:
            sink.seek(max(0, sink.tell() - _LOG_TAIL))
            tail = " | ".join(line.strip() for line in sink.read().decode("utf-8", "replace").splitlines()[-8:])
            raise ConfigError(f"{what} failed with code {code}: {tail or '(no output)'}")
