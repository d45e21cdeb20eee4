"""One cache root for everything tether downloads or builds, and one override per kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import llama_server, model_zoo
from tether.evaluation import bfcl_data

KINDS = [
    ("models", "TETHER_MODEL_DIR", model_zoo.model_dir),
    ("data", "TETHER_DATA_DIR", bfcl_data.data_dir),
    ("llama-server", "TETHER_LLAMA_SERVER_DIR", lambda: llama_server.cache_dir("0.0.0").parent),
]


@pytest.mark.parametrize(("kind", "override", "where"), KINDS)
def test_every_cache_follows_xdg_cache_home_unless_its_own_variable_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str, override: str, where: object
) -> None:
    assert callable(where)
    for name in [k[1] for k in KINDS] + ["XDG_CACHE_HOME"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert where() == tmp_path / "home" / ".cache" / "tether" / kind
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert where() == tmp_path / "xdg" / "tether" / kind
    monkeypatch.setenv(override, "~/mine")
    assert where() == tmp_path / "home" / "mine"
    monkeypatch.setenv(override, "")  # empty is unset, not the working directory
    assert where() == tmp_path / "xdg" / "tether" / kind
