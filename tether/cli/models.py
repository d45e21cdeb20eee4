"""`tether models list` and `tether models install`: the model zoo (tether.model_zoo) on the command line."""

from __future__ import annotations

import click

from tether import model_zoo

__all__ = ["models"]


@click.group()
def models() -> None:
    """Models that install offline: the embedded default and GGUFs assembled from PyPI."""


@models.command("list")
def models_list() -> None:
    """Each known model: size, chat family, whether it is installed (and verified), and where."""
    for spec in model_zoo.MODELS.values():
        path = model_zoo.installed_path(spec.name)
        state = "installed" if path is not None else "missing"
        if path is None and not spec.bundled and model_zoo.cached_path(spec.name).is_file():
            state = "corrupt"  # there, but not the recorded bytes: install assembles it again
        where = path if path is not None else _how_to_install(spec)
        click.echo(f"{spec.name:<20} {spec.size / 1e6:>5.0f} MB  {spec.family:<8} {state:<9} {where}")


@models.command("install")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="install every model in the list")
def models_install(names: tuple[str, ...], everything: bool) -> None:
    """Download the parts of each named model from PyPI, assemble, verify its sha256, and cache it."""
    wanted = list(model_zoo.MODELS) if everything else list(names)
    if not wanted:
        raise click.UsageError("name a model to install, or pass --all (see: tether models list)")
    for spec in [model_zoo.spec(name) for name in wanted]:  # every name checked before any download
        if not spec.bundled and model_zoo.installed_path(spec.name) is None:
            model_zoo.usable_model_dir()  # a bad TETHER_MODEL_DIR is one line before any download
            click.echo(f"{spec.name}: downloading {len(spec.parts)} part wheels ({spec.size / 1e6:.0f} MB)…", err=True)
        click.echo(f"{spec.name}: {model_zoo.install(spec.name)}")


def _how_to_install(spec: model_zoo.ModelSpec) -> str:
    if spec.bundled:
        return "(pip install 'tether[default-model]')"
    return f"(tether models install {spec.name} -> {model_zoo.cached_path(spec.name)})"
