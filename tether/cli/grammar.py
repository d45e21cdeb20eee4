"""`tether grammar`: the composed step grammar, as the decoder or the validator sees it."""

from __future__ import annotations

import click

from tether.cli._options import TOOLS_HELP, tool_names
from tether.engine.grammar import compose_step_grammar
from tether.tools import DEFAULT_TOOL_NAMES, resolve_tools

__all__ = ["grammar"]


@click.command()
@click.option("--tools", "tools", default=",".join(DEFAULT_TOOL_NAMES), show_default=True, help=TOOLS_HELP)
@click.option("--answer-only", is_flag=True, help="the narrowed grammar of a last or looping step")
@click.option("--lark", "as_lark", is_flag=True, help="print the Lark grammar the validator uses instead")
def grammar(tools: str, answer_only: bool, as_lark: bool) -> None:
    """Print the composed step grammar (GBNF, as given to the decoder)."""
    composed = compose_step_grammar(resolve_tools(tool_names(tools)), allowed=["answer"] if answer_only else None)
    click.echo(composed.lark_source if as_lark else composed.gbnf, nl=False)
