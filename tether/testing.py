"""Hypothesis strategies drawn from a composed step grammar, for property-testing parsers and tools.

Why: the step grammar is the contract between the constrained decoder and the validator. Strategies
derived from that same grammar test the contract itself, not a hand-written copy that could drift:
`valid_steps` and `actions` yield only what the decoder may produce, `invalid_steps` yields the near
misses a model typically makes without a grammar, each provably outside the language.

    from hypothesis import given
    from tether import compose_step_grammar
    from tether.testing import valid_steps

    grammar = compose_step_grammar(my_tools)

    @given(valid_steps(grammar))
    def test_my_tools_accept_what_the_decoder_can_emit(text):
        action = grammar.parse(text)
        ...

Needs the `testing` extra (`pip install 'tether[testing]'`), which brings Hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Final

from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from tether.engine.gbnf import Alt, Grammar, Node, Repeat, Seq, may_produce
from tether.engine.grammar import StepGrammar
from tether.engine.protocol import Action

__all__ = ["DEFAULT_MAX_REPEAT", "NEAR_MISSES", "actions", "invalid_steps", "valid_steps"]

DEFAULT_MAX_REPEAT: Final = 16
"""How far past its minimum a repetition is drawn by default: small examples, quick to parse and read."""

NEAR_MISSES: Final = ("wrong_command", "missing_colon", "extra_line", "missing_thought_prefix", "empty_thought")
"""The kinds of near miss `invalid_steps` makes, each from a valid step."""

_THOUGHT_PREFIX: Final = "Thought: "


def valid_steps(
    grammar: StepGrammar, *, max_repeat: int | None = DEFAULT_MAX_REPEAT, alphabet: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[str]:
    """Step texts in the language of `grammar`, drawn by `from_lark` from the validator's own Lark form.

    Each repetition is drawn at most `max_repeat` times past its minimum (every such text is still in
    the language; the full range is rarely worth the parse time). `max_repeat=None` draws from
    `grammar.lark_source` unchanged. `alphabet` (from_lark's) narrows the characters drawn; it must
    still hold every character of the grammar's literals ("Thought: ", command names), or nothing can be.
    """
    return _rule_strategy(grammar, grammar.grammar.start, max_repeat, alphabet)


def actions(
    grammar: StepGrammar, *, max_repeat: int | None = DEFAULT_MAX_REPEAT, alphabet: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[Action]:
    """Actions that `grammar` accepts: a thought from its `thought` rule and, for each allowed command,
    an input from that command's input rule, so `grammar.parse(action.to_text()) == action`.
    """
    _check_layout(grammar)
    thoughts = _rule_strategy(grammar, grammar.thought_rule, max_repeat, alphabet)

    def for_command(command: str, rule: str) -> st.SearchStrategy[Action]:
        inputs = _rule_strategy(grammar, rule, max_repeat, alphabet)
        return st.builds(Action, thought=thoughts, command=st.just(command), input=inputs)

    return st.one_of([for_command(command, rule) for command, rule in grammar.input_rules.items()])


def invalid_steps(
    grammar: StepGrammar,
    *,
    kinds: Collection[str] | None = None,
    max_repeat: int | None = DEFAULT_MAX_REPEAT,
    alphabet: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[str]:
    """Near misses of valid steps that `grammar` must reject; `kinds` picks from NEAR_MISSES (default all).

    Every text is outside the language for a reason that follows from the step layout alone, not from
    asking the parser under test: a step is `"Thought: " thought "\\n" command ": " input "\\n"` where the
    thought is one line of at least one character (at most Limits.max_thought_chars), so e.g. an action
    line that starts with no allowed `command: ` cannot be valid. `extra_line` is drawn only for commands
    whose input grammar cannot produce a newline (otherwise a second line may be a valid continuation of
    the input).
    """
    _check_layout(grammar)
    wanted = tuple(NEAR_MISSES if kinds is None else kinds)
    unknown = sorted(set(wanted) - set(NEAR_MISSES))
    if unknown or not wanted:
        raise ValueError(f"unknown near-miss kinds {unknown or '(none)'}; choose from {', '.join(NEAR_MISSES)}")
    names = frozenset(grammar.commands)
    single_line = frozenset(c for c in names if not may_produce(grammar.input_grammar(c), "\n"))
    makers: dict[str, Callable[[Action], st.SearchStrategy[str]]] = {
        "wrong_command": lambda a: _wrong_command(a, names),
        "missing_colon": lambda a: _missing_colon(a, names),
        "extra_line": lambda a: _extra_line(a, names, single_line),
        "missing_thought_prefix": _missing_thought_prefix,
        "empty_thought": lambda a: st.just(f"{_THOUGHT_PREFIX}\n{a.command}: {a.input}\n"),
    }
    strategies: list[st.SearchStrategy[str]] = []
    for kind in dict.fromkeys(wanted):
        if kind == "extra_line":
            if not single_line:
                if kinds is not None:
                    raise ValueError("every command's input may contain a newline, so no extra line is a near miss")
                continue
            source = actions(grammar.narrowed(single_line), max_repeat=max_repeat, alphabet=alphabet)
        else:
            source = actions(grammar, max_repeat=max_repeat, alphabet=alphabet)
        strategies.append(source.flatmap(makers[kind]))
    return st.one_of(strategies)


# ---------------------------------------------------------------- near misses


def _starts_with_command(line: str, names: Collection[str]) -> bool:
    """Whether an action line begins like a valid one: some allowed `command: `."""
    return any(line.startswith(f"{name}: ") for name in names)


def _wrong_command(action: Action, names: frozenset[str]) -> st.SearchStrategy[str]:
    command = action.command
    lookalikes = [command.upper(), command.capitalize(), command + "s", command[:-1], command.replace("_", "-")]
    others = ["tool", "search", "Answer", "final_answer", "Action", "observation", "thought"]
    replacements = st.one_of(
        st.sampled_from(lookalikes + others), st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
    )
    return (
        replacements.map(lambda wrong: f"{wrong}: {action.input}")
        .filter(lambda line: not _starts_with_command(line, names))
        .map(lambda line: f"{_THOUGHT_PREFIX}{action.thought}\n{line}\n")
    )


def _missing_colon(action: Action, names: frozenset[str]) -> st.SearchStrategy[str]:
    separators = st.sampled_from([" ", "", " - ", "; ", "="])
    return (
        separators.map(lambda sep: f"{action.command}{sep}{action.input}")
        .filter(lambda line: not _starts_with_command(line, names))
        .map(lambda line: f"{_THOUGHT_PREFIX}{action.thought}\n{line}\n")
    )


def _extra_line(action: Action, names: frozenset[str], single_line: frozenset[str]) -> st.SearchStrategy[str]:
    # A valid step whose action line starts with only single-line commands has exactly two newlines,
    # the second at its very end; any text after it, ending in a third, is outside the language.
    step = action.to_text()
    line = f"{action.command}: {action.input}"
    assert all(name in single_line for name in names if line.startswith(f"{name}: "))
    extra = st.one_of(
        st.sampled_from(["Observation: 4", f"{_THOUGHT_PREFIX}{action.thought}", line, "", "Final answer: done"]),
        st.text(max_size=20),
    )
    return extra.map(lambda more: f"{step}{more}\n")


def _missing_thought_prefix(action: Action) -> st.SearchStrategy[str]:
    prefixes = st.sampled_from(["", "Thought:", "Thought ", "thought: ", "THOUGHT: ", "Thought", ": ", " Thought: "])
    return prefixes.map(lambda prefix: f"{prefix}{action.thought}\n{action.command}: {action.input}\n").filter(
        lambda text: not text.startswith(_THOUGHT_PREFIX)
    )


# ---------------------------------------------------------------- asking the composed grammar


def _check_layout(grammar: StepGrammar) -> None:
    """The near-miss reasoning and Action building hold for the shipped step layout only."""
    if not grammar.has_shipped_layout:
        raise ValueError("tether.testing knows only the shipped step layout (tether/grammars/step.gbnf)")


# ---------------------------------------------------------------- drawing from Lark


def _bounded(node: Node, cap: int) -> Node:
    match node:
        case Seq(items):
            return Seq(tuple(_bounded(i, cap) for i in items))
        case Alt(options):
            return Alt(tuple(_bounded(o, cap) for o in options))
        case Repeat(item, lo, hi):
            return Repeat(_bounded(item, cap), lo, lo + cap if hi is None else min(hi, lo + cap))
    return node


def _rule_strategy(
    grammar: StepGrammar, rule: str, max_repeat: int | None, alphabet: st.SearchStrategy[str] | None
) -> st.SearchStrategy[str]:
    if max_repeat is not None and max_repeat < 0:
        raise ValueError(f"max_repeat must be at least 0, not {max_repeat}")
    drawn = grammar.grammar if max_repeat is None else _bounded_grammar(grammar.grammar, max_repeat)
    start = drawn.lark_rule(rule)
    return (
        from_lark(drawn.parser, start=start)
        if alphabet is None
        else from_lark(drawn.parser, start=start, alphabet=alphabet)
    )


def _bounded_grammar(grammar: Grammar, cap: int) -> Grammar:
    return Grammar({name: _bounded(node, cap) for name, node in grammar.rules.items()}, grammar.start)
