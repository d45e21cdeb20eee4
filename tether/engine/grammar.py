"""The step grammar, composed at run time, and the Lark validator built from the same AST."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Protocol

import lark

from tether.engine.answer import answer_grammar
from tether.engine.gbnf import (
    LARK_PRELUDE,
    Alt,
    Grammar,
    Lit,
    Node,
    Ref,
    Seq,
    describe_terminals,
    error_location,
    load_grammar_source,
    parse_gbnf_rules,
)
from tether.engine.protocol import ANSWER, Action
from tether.errors import ConfigError, ParseError

__all__ = ["StepGrammar", "ToolLike", "compose_step_grammar"]


class ToolLike(Protocol):
    """The part of a Tool the composer needs (structural, so the engine never imports tools)."""

    @property
    def name(self) -> str: ...

    @property
    def input_grammar(self) -> Grammar: ...


def _prefix(command: str) -> str:
    return "cmd-" + command.replace("_", "-")


@dataclass(frozen=True, eq=False)
class StepGrammar:
    """One composed step grammar: its GBNF for the decoder and its parser for the validator."""

    grammar: Grammar
    commands: tuple[str, ...]

    @cached_property
    def gbnf(self) -> str:
        return self.grammar.to_gbnf()

    @cached_property
    def lark_source(self) -> str:
        return LARK_PRELUDE + self.grammar.to_lark()

    @property
    def parser(self) -> lark.Lark:
        return _lark_parser(self.lark_source, self.grammar.lark_start)

    @cached_property
    def _input_rules(self) -> dict[str, str]:
        return {"r_" + _prefix(c).replace("-", "_") + "_root": c for c in self.commands}

    @cached_property
    def _opening(self) -> str:
        root = self.grammar.rules[self.grammar.start]
        first = root.items[0] if isinstance(root, Seq) else root
        return first.text if isinstance(first, Lit) else ""

    def forced_text(self, text: str) -> str:
        """The text this grammar forces after the step text so far, or "" where the model must choose:
        the opening `Thought:`, and the rest of a command name once its prefix is unique. A trailing
        space is left to the model, whose tokenizer joins it to the next word."""
        if not text:
            rest = self._opening
        elif text.count("\n") == 1:
            line = text[text.index("\n") + 1 :]
            options = [f"{c}: " for c in self.commands if f"{c}: ".startswith(line)]
            rest = options[0][len(line) :] if len(options) == 1 else ""
        else:
            rest = ""
        return rest.rstrip(" ")

    def parse(self, text: str) -> Action:
        """The Action in `text`, or ParseError naming where the text left the grammar."""
        try:
            tree = self.parser.parse(text)
        except lark.UnexpectedInput as exc:
            raise _parse_error(text, exc, self.parser) from None
        thought = command = value = None
        for node in tree.iter_subtrees():
            name = str(node.data)
            if name == "r_thought":
                thought = _span(text, node)
            elif name in self._input_rules:
                command, value = self._input_rules[name], _span(text, node)
        assert thought is not None and command is not None and value is not None
        return Action(thought=thought, command=command, input=value)


def _span(text: str, node: lark.Tree[lark.Token]) -> str:
    meta = node.meta
    return "" if meta.empty else text[meta.start_pos : meta.end_pos]


def _parse_error(text: str, exc: lark.UnexpectedInput, parser: lark.Lark) -> ParseError:
    line, column, position = error_location(text, exc)
    expected = frozenset(
        describe_terminals(parser, getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())
    )
    found = repr(text[position]) if position < len(text) else "end of text"
    shown = ", ".join(sorted(expected)[:8]) or "end of text"
    return ParseError(
        f"invalid step at line {line}, column {column}: found {found}, expected {shown}",
        text=text,
        position=position,
        expected=expected,
    )


@cache
def _lark_parser(source: str, start: str) -> lark.Lark:
    return lark.Lark(
        source, start=start, parser="earley", lexer="dynamic", propagate_positions=True, ambiguity="resolve"
    )


def compose_step_grammar(tools: Iterable[ToolLike], allowed: Sequence[str] | None = None) -> StepGrammar:
    """The step grammar for these tools plus `answer`; `allowed` narrows which commands it admits."""
    inputs: dict[str, Grammar] = {t.name: t.input_grammar for t in tools}
    inputs[ANSWER] = answer_grammar(inputs)  # an answer cannot name a command: it cannot run on
    commands = tuple(inputs) if allowed is None else tuple(allowed)
    unknown = [c for c in commands if c not in inputs]
    if unknown or not commands:
        raise ConfigError(f"cannot restrict the step grammar to unknown commands {unknown or '(none)'}")
    rules = parse_gbnf_rules(load_grammar_source("step"))
    options: list[Node] = []
    for command in commands:
        sub = inputs[command].prefixed(_prefix(command))
        clashes = sorted(rules.keys() & sub.rules.keys())
        if clashes:
            raise ConfigError(
                f"the input grammar of {command!r} renames to rule(s) {', '.join(clashes)} that another tool "
                "already uses; rename a rule or the tool"
            )
        rules.update(sub.rules)
        options.append(Seq((Lit(f"{command}: "), Ref(sub.start))))
    rules["action"] = options[0] if len(options) == 1 else Alt(tuple(options))
    return StepGrammar(Grammar(rules), commands)
