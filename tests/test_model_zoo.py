"""Assembling models from PyPI parts: order, checksums, atomic install, name resolution.

Unit tests use fake wheels built here and a fake downloader (no network); the last test loads the
real Qwen model when `tether models install` has put it in the cache."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_cli import run

from tether import model_zoo
from tether.errors import ModelLoadError
from tether.model_zoo import ModelSpec
from tether.models import resolve_model

PARTS = [b"GGUF-first-", b"second-", b"third"]


def fake_spec(parts: Sequence[bytes] = PARTS, *, digest: str | None = None) -> ModelSpec:
    whole = b"".join(parts)
    return ModelSpec(
        name="fake-model",
        description="A fake model for tests",
        package="fake-model-part",
        parts=len(parts),
        sha256=digest or hashlib.sha256(whole).hexdigest(),
        size=len(whole),
    )


class FakeDownloader:
    """Writes one fake wheel per requirement, holding that slice where a real part wheel holds it."""

    def __init__(self, spec: ModelSpec, parts: Sequence[bytes], missing: Sequence[int] = ()) -> None:
        self.spec, self.parts, self.missing = spec, parts, set(missing)
        self.requested: list[str] = []

    def __call__(self, requirements: Sequence[str], dest: Path) -> None:
        self.requested = list(requirements)
        for n, requirement in enumerate(requirements, start=1):
            if n in self.missing:
                continue
            with zipfile.ZipFile(dest / f"{requirement.replace('-', '_')}-0.1-py3-none-any.whl", "w") as wheel:
                wheel.writestr(f"{requirement.replace('-', '_')}/__init__.py", "")
                wheel.writestr(self.spec.member(n), self.parts[n - 1])


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TETHER_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def register(monkeypatch: pytest.MonkeyPatch, spec: ModelSpec) -> None:
    monkeypatch.setitem(model_zoo.MODELS, spec.name, spec)


def test_parts_are_joined_in_order_and_moved_into_place(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fake_spec()
    register(monkeypatch, spec)
    fake = FakeDownloader(spec, PARTS)
    path = model_zoo.install("fake-model", download=fake)
    assert path == cache / "fake-model.gguf" and path.read_bytes() == b"GGUF-first-second-third"
    assert fake.requested == ["fake-model-part1", "fake-model-part2", "fake-model-part3"]
    assert sorted(p.name for p in cache.iterdir()) == ["fake-model.gguf"]
    again = FakeDownloader(spec, PARTS)
    assert model_zoo.install("fake-model", download=again) == path and again.requested == []  # cached


def test_a_checksum_mismatch_names_both_hashes_and_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fake_spec(digest="0" * 64)
    register(monkeypatch, spec)
    actual = hashlib.sha256(b"".join(PARTS)).hexdigest()
    with pytest.raises(ModelLoadError, match=f"sha256 {actual}.*expected {'0' * 64}"):
        model_zoo.install("fake-model", download=FakeDownloader(spec, PARTS))
    assert list(cache.iterdir()) == []


def test_parts_out_of_order_fail_the_checksum(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fake_spec()
    register(monkeypatch, spec)
    with pytest.raises(ModelLoadError, match="does not match"):
        model_zoo.install("fake-model", download=FakeDownloader(spec, list(reversed(PARTS))))
    assert list(cache.iterdir()) == []


def test_a_missing_part_is_named(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fake_spec()
    register(monkeypatch, spec)
    with pytest.raises(ModelLoadError, match=r"part 2 \(fake-model-part2\) was not downloaded"):
        model_zoo.install("fake-model", download=FakeDownloader(spec, PARTS, missing=[2]))
    assert list(cache.iterdir()) == []


def test_a_failed_download_is_a_model_load_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = fake_spec()
    register(monkeypatch, spec)

    def refusing(requirements: Sequence[str], dest: Path) -> None:
        raise ModelLoadError("pip could not download the model parts (no network)")

    with pytest.raises(ModelLoadError, match="no network"):
        model_zoo.install("fake-model", download=refusing)


def test_names_paths_and_unknowns_resolve_clearly(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    register(monkeypatch, fake_spec())
    with pytest.raises(ModelLoadError, match="not installed; run: tether models install fake-model"):
        resolve_model("fake-model")
    with pytest.raises(ModelLoadError, match=r"unknown model 'qwen9'.*qwen2\.5-coder-1\.5b"):
        resolve_model("qwen9")
    with pytest.raises(ModelLoadError, match="model file not found"):
        resolve_model(str(tmp_path / "absent.gguf"))
    assert resolve_model(None) == resolve_model("smollm2-135m")
    model_zoo.install("fake-model", download=FakeDownloader(fake_spec(), PARTS))
    assert resolve_model("fake-model") == cache / "fake-model.gguf"
    assert model_zoo.cached_path("fake-model").parent == cache


def test_recorded_models_have_checksums_and_sizes() -> None:
    for spec in model_zoo.MODELS.values():
        assert len(spec.sha256) == 64 and spec.size > 100_000_000
        assert spec.member(3) == f"{spec.package.replace('-', '_')}3/data/part03.bin"


def test_models_list_and_install_usage(capsys: pytest.CaptureFixture[str], cache: Path) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "smollm2-135m" in out and "qwen2.5-coder-1.5b" in out and "missing" in out
    code, _, err = run(capsys, "models", "install")
    assert code == 2 and err.startswith("error: name a model")
    code, _, err = run(capsys, "models", "install", "qwen9")
    assert code == 1 and err.startswith("error: unknown model 'qwen9'")


@pytest.mark.model
def test_the_installed_qwen_model_loads_and_answers() -> None:
    path = model_zoo.cached_path("qwen2.5-coder-0.5b")
    if not path.is_file():
        pytest.skip("qwen2.5-coder-0.5b is not installed (tether models install qwen2.5-coder-0.5b)")
    from tether import Agent, Limits
    from tether.models import load_backend
    from tether.tools import resolve_tools

    trace = Agent(
        load_backend("qwen2.5-coder-0.5b", n_ctx=2048), resolve_tools(["calculate"]), limits=Limits(max_steps=3)
    ).run("What is 12 * 12?")
    assert trace.answer and all(step.valid for step in trace.steps)
