"""The `tether` command line: a thin layer over the library, one module per command group
(ask, eval, grammar, corpus, models, serve/server), the options they share in `_options`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from tether.cli._options import terminal_safe
from tether.cli.ask import ask
from tether.cli.corpus import corpus
from tether.cli.evaluate import evaluate
from tether.cli.grammar import grammar
from tether.cli.models import models
from tether.cli.serve import serve, server
from tether.errors import TetherError

__all__ = ["cli", "main"]


@click.group()
@click.version_option(package_name="tether")
def cli() -> None:
    """tether: grammar-constrained ReAct agents on small local models."""


for _command in (ask, evaluate, models, grammar, corpus, serve, server):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="tether", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"error: {terminal_safe(exc.format_message())}", err=True)
        return exc.exit_code
    except TetherError as exc:
        lines = terminal_safe(str(exc)).splitlines()
        click.echo(f"error: {lines[0] if lines else type(exc).__name__}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
