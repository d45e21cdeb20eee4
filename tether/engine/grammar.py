"""The step grammar, composed at run time, and the Lark validator built from the same AST."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import ClassVar, Protocol

import lark

from tether.engine.answer import AnswerType, answer_grammar
from tether.engine.gbnf import (
    Alt,
    CharClass,
    Grammar,
    Lit,
    Node,
    Ref,
    Repeat,
    Seq,
    load_grammar_source,
    parse_gbnf_rules,
    syntax_problem,
)
from tether.engine.protocol import ANSWER, Action
from tether.errors import ConfigError, ParseError

__all__ = [
    "DEFAULT_THOUGHT_CHARS",
    "MAX_THOUGHT_CHARS",
    "StepGrammar",
    "ToolLike",
    "compose_step_grammar",
    "thought_rule",
]

DEFAULT_THOUGHT_CHARS = 600
"""The longest thought line by default: room for a few sentences of reasoning (what is known, what to
work out next). Measured against 200 on GSM8K and SVAMP (README, "Room to reason")."""
MAX_THOUGHT_CHARS = 2000
"""The validator (an Earley parser) takes about 2 s over a thought this long; more would cost more."""


class ToolLike(Protocol):
    """The part of a Tool the composer needs (structural, so the engine never imports tools)."""

    @property
    def name(self) -> str: ...

    @property
    def input_grammar(self) -> Grammar: ...


_PLAIN_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def _prefix(command: str) -> str:
    """The rule-name prefix of a command's input rules: one-to-one, and only lowercase letters, digits
    and `-` (GBNF's rule alphabet; Lark lowercases rule names). A name of [a-z0-9_] keeps its readable
    form (`get_time` -> `cmd-get-time`); any other (`Get.Time`) is written `cmd-0-` and each character
    outside [a-z0-9] as `-` and two hex digits (`cmd-0--47et-2e-54ime`): no plain name starts `cmd-0`."""
    if _PLAIN_NAME.match(command):
        return "cmd-" + command.replace("_", "-")
    return "cmd-0-" + "".join(c if c in _RULE_CHARS else f"-{ord(c):02x}" for c in command)


_RULE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


@cache
def _step_rules() -> dict[str, Node]:
    """The rules of the shipped step layout (`root`, `thought`), before the composer adds `action`."""
    return parse_gbnf_rules(load_grammar_source("step"))


def thought_rule(max_chars: int) -> Node:
    """`thought ::= [^\\n] [^\\n]{0,max_chars-1}`: one line of 1 to `max_chars` characters."""
    return Seq((_LINE_CHAR, Repeat(_LINE_CHAR, 0, max_chars - 1)))


_LINE_CHAR = CharClass((("\n", "\n"),), negated=True)


def _action(commands: Iterable[str], input_rules: Mapping[str, str]) -> Node:
    """The `action` rule: one `"command: " input` alternative per command, in order."""
    options = tuple(Seq((Lit(f"{c}: "), Ref(input_rules[c]))) for c in commands)
    return options[0] if len(options) == 1 else Alt(options)


@dataclass(frozen=True, eq=False)
class StepGrammar:
    """One composed step grammar: its GBNF for the decoder, its parser for the validator, and what it
    admits (each command and the rule of its input), so that callers ask it rather than read its rules.

    Made by `compose_step_grammar`; `input_rules` defaults to the names the composer gives.
    """

    grammar: Grammar
    commands: tuple[str, ...]
    input_rules: Mapping[str, str] = field(default_factory=dict)
    """Each admitted command and the start rule of its input within `grammar`."""

    thought_rule: ClassVar[str] = "thought"

    def __post_init__(self) -> None:
        if not self.input_rules:
            object.__setattr__(self, "input_rules", {c: f"{_prefix(c)}-root" for c in self.commands})

    @cached_property
    def gbnf(self) -> str:
        return self.grammar.to_gbnf()

    @property
    def lark_source(self) -> str:
        return self.grammar.lark_source

    @property
    def parser(self) -> lark.Lark:
        return self.grammar.parser

    @cached_property
    def has_shipped_layout(self) -> bool:
        """Whether this is the shipped step layout (`tether/grammars/step.gbnf`) with the composer's
        `action` rule over `commands`: what the strategies of `tether.testing` reason from."""
        rules = self.grammar.rules
        return (
            self.grammar.start == "root"
            and bool(self.commands)
            and self.input_rules.keys() == set(self.commands)
            and all(rules.get(name) == node for name, node in _step_rules().items() if name != self.thought_rule)
            and _is_thought_line(rules.get(self.thought_rule))
            and all(rule in rules for rule in self.input_rules.values())
            and rules.get("action") == _action(self.commands, self.input_rules)
        )

    def input_grammar(self, command: str) -> Grammar:
        """The language of `command`'s input: this grammar, started at that input's rule."""
        return Grammar(self.grammar.rules, self.input_rules[command])

    def narrowed(self, commands: Collection[str]) -> StepGrammar:
        """The same grammar admitting only those of its commands in `commands` (their inputs unchanged,
        the answer still unable to name any command): what `compose_step_grammar(allowed=...)` makes."""
        kept = tuple(c for c in self.commands if c in commands)
        unknown = sorted(set(commands) - set(self.commands))
        if unknown or not kept:
            raise ConfigError(f"cannot restrict the step grammar to unknown commands {unknown or '(none)'}")
        inputs = {c: self.input_rules[c] for c in kept}
        rules = {**self.grammar.rules, "action": _action(kept, inputs)}
        return StepGrammar(Grammar(rules, self.grammar.start), kept, inputs)

    @cached_property
    def _commands_by_lark_rule(self) -> dict[str, str]:
        return {self.grammar.lark_rule(rule): c for c, rule in self.input_rules.items()}

    @cached_property
    def _thought_lark_rule(self) -> str:
        return self.grammar.lark_rule(self.thought_rule)

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
            problem = syntax_problem(text, exc, self.parser)
            raise ParseError(
                f"invalid step {problem}", text=text, position=problem.position, expected=problem.expected
            ) from None
        thought = command = value = None
        for node in tree.iter_subtrees():
            name = str(node.data)
            if name == self._thought_lark_rule:
                thought = _span(text, node)
            elif name in self._commands_by_lark_rule:
                command, value = self._commands_by_lark_rule[name], _span(text, node)
        assert thought is not None and command is not None and value is not None
        return Action(thought=thought, command=command, input=value)


def _is_thought_line(node: Node | None) -> bool:
    """Whether `node` is a `thought_rule` of some bound (what the shipped layout's thought may be)."""
    match node:
        case Seq((_, Repeat(_, 0, int(hi)))):
            return hi < MAX_THOUGHT_CHARS and node == thought_rule(hi + 1)
    return False


def _span(text: str, node: lark.Tree[lark.Token]) -> str:
    meta = node.meta
    return "" if meta.empty else text[meta.start_pos : meta.end_pos]


def compose_step_grammar(
    tools: Iterable[ToolLike],
    allowed: Sequence[str] | None = None,
    answer_type: AnswerType = "text",
    answer: Grammar | None = None,
    thought_chars: int = DEFAULT_THOUGHT_CHARS,
) -> StepGrammar:
    """The step grammar for these tools plus `answer`; `allowed` narrows which commands it admits,
    `answer_type` what the answer may be (`tether.engine.answer`), and `answer`, where given, is the
    answer's grammar instead (a typed output's, from `typed_answer_grammar`); a thought is one line of
    at most `thought_chars` characters."""
    if not 1 <= thought_chars <= MAX_THOUGHT_CHARS:
        raise ConfigError(f"thought_chars must be between 1 and {MAX_THOUGHT_CHARS}, not {thought_chars}")
    inputs: dict[str, Grammar] = {t.name: t.input_grammar for t in tools}
    # an answer cannot name a command: it cannot run on
    inputs[ANSWER] = answer if answer is not None else answer_grammar(inputs, answer_type)
    commands = tuple(inputs) if allowed is None else tuple(allowed)
    unknown = [c for c in commands if c not in inputs]
    if unknown or not commands:
        raise ConfigError(f"cannot restrict the step grammar to unknown commands {unknown or '(none)'}")
    rules = {**_step_rules(), StepGrammar.thought_rule: thought_rule(thought_chars)}
    input_rules: dict[str, str] = {}
    for command in commands:
        sub = inputs[command].prefixed(_prefix(command))
        clashes = sorted(rules.keys() & sub.rules.keys())
        if clashes:
            raise ConfigError(
                f"the input grammar of {command!r} renames to rule(s) {', '.join(clashes)} that another tool "
                "already uses; rename a rule or the tool"
            )
        rules.update(sub.rules)
        input_rules[command] = sub.start
    rules["action"] = _action(commands, input_rules)
    return StepGrammar(Grammar(rules), commands, input_rules)
