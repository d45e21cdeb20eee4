"""The composed step grammar, property-tested with the strategies of `tether.testing`.

Two compositions: the calculator beside a free-text echo, and a mix of a fixed-word tool and a tool
whose input spans lines (so a second line after the action can be valid, and must not be mistaken
for a near miss).
"""

from __future__ import annotations

import importlib.util
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.cli import main
from tether.engine.gbnf import may_produce, parse_gbnf
from tether.engine.grammar import StepGrammar, ToolLike, compose_step_grammar
from tether.engine.protocol import Action
from tether.errors import ConfigError, ParseError, ToolError
from tether.testing import NEAR_MISSES, actions, invalid_steps, valid_steps
from tether.tools import BUILTIN_TOOLS, Tool, resolve_tools

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def calculate_tool() -> Tool:
    """The built-in calculator."""
    return resolve_tools(["calculate"])["calculate"]


ECHO = Tool(name="echo", description="Echo the text.", func=lambda s: s, example="hi")
COLOR = Tool(
    name="pick_color",
    description="Pick a colour.",
    func=str,
    example="red",
    grammar='root ::= "red" | "green" | "blue"',
)


class FakeMultiLineTool:
    """A composer input whose input spans lines: Tool registration refuses that (report row R11), but
    the composer and the strategies must still handle such a grammar."""

    name = "note"
    input_grammar = parse_gbnf('root ::= line ("\\n" line){0,2}\nline ::= [a-z ]{1,20}')


NOTE = FakeMultiLineTool()


@cache
def grammars() -> dict[str, StepGrammar]:
    return {
        "calculate+echo": compose_step_grammar([calculate_tool(), ECHO]),
        "echo+color+note": compose_step_grammar([ECHO, COLOR, NOTE]),
    }


NAMES = list(grammars())


@cache
def steps(name: str, max_repeat: int | None = 16) -> st.SearchStrategy[str]:
    return valid_steps(grammars()[name], max_repeat=max_repeat)


@cache
def drawn_actions(name: str) -> st.SearchStrategy[Action]:
    return actions(grammars()[name])


@cache
def near_misses(name: str, kind: str | None = None) -> st.SearchStrategy[str]:
    return invalid_steps(grammars()[name], kinds=None if kind is None else [kind])


def parses_or_refuses(grammar: StepGrammar, text: str) -> Action | None:
    """The Action, or None for a ParseError: anything else escaping the parser fails the test."""
    try:
        action = grammar.parse(text)
    except ParseError as exc:
        assert 0 <= exc.position <= len(text)
        assert f"line {text.count(chr(10), 0, exc.position) + 1}, column " in str(exc)
        return None
    assert action.to_text() == text
    return action


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data())
def test_valid_steps_parse_and_print_back(name: str, data: st.DataObject) -> None:
    grammar = grammars()[name]
    text = data.draw(steps(name))
    action = grammar.parse(text)
    assert action.command in grammar.commands
    assert action.to_text() == text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_full_size_valid_steps_parse_and_print_back(data: st.DataObject) -> None:
    grammar = grammars()["calculate+echo"]
    text = data.draw(steps("calculate+echo", None))
    assert grammar.parse(text).to_text() == text


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data())
def test_actions_print_and_parse_back(name: str, data: st.DataObject) -> None:
    grammar = grammars()[name]
    action = data.draw(drawn_actions(name))
    assert grammar.parse(action.to_text()) == action


@pytest.mark.parametrize("kind", NEAR_MISSES)
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_near_misses_are_refused(name: str, kind: str, data: st.DataObject) -> None:
    grammar = grammars()[name]
    text = data.draw(near_misses(name, kind))
    with pytest.raises(ParseError) as caught:
        grammar.parse(text)
    assert 0 <= caught.value.position <= len(text)
    if kind != "extra_line":  # after a whole step only the end of text may come: see below
        assert caught.value.expected


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data())
def test_any_near_miss_is_refused(name: str, data: st.DataObject) -> None:
    grammar = grammars()[name]
    text = data.draw(near_misses(name))
    with pytest.raises(ParseError):
        grammar.parse(text)


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(text=st.text())
def test_arbitrary_text_is_parsed_or_refused_never_crashes(name: str, text: str) -> None:
    parses_or_refuses(grammars()[name], text)


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data())
def test_arbitrary_text_after_the_thought_is_parsed_or_refused(name: str, data: st.DataObject) -> None:
    grammar = grammars()[name]
    command = data.draw(st.sampled_from([*grammar.commands, "nope"]))
    tail = data.draw(st.text(st.sampled_from(list("ab1+( )*\n:é")), max_size=20))
    parses_or_refuses(grammar, f"Thought: x\n{command}: {tail}")


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data())
def test_edited_valid_steps_are_parsed_or_refused(name: str, data: st.DataObject) -> None:
    grammar = grammars()[name]
    text = data.draw(steps(name))
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 3))
    insert = data.draw(st.text(st.sampled_from(list(": \nThougha1(")), max_size=3))
    parses_or_refuses(grammar, text[:at] + insert + text[at + cut :])


# ---------------------------------------------------------------- the strategies themselves


@pytest.mark.parametrize("name", NAMES)
def test_actions_reach_every_command(name: str) -> None:
    grammar = grammars()[name]
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(actions(grammar))
    def collect(action: Action) -> None:
        seen.add(action.command)

    collect()
    assert seen == set(grammar.commands)


def test_extra_lines_are_drawn_only_for_single_line_commands() -> None:
    grammar = grammars()["echo+color+note"]
    seen: set[str] = set()

    @settings(max_examples=100, deadline=None, database=None)
    @given(invalid_steps(grammar, kinds=["extra_line"]))
    def collect(text: str) -> None:
        seen.add(text.split("\n")[1].split(":")[0])

    collect()
    assert "note" not in seen
    assert seen <= {"echo", "pick_color", "answer"}


def test_invalid_steps_checks_its_arguments() -> None:
    grammar = grammars()["calculate+echo"]
    with pytest.raises(ValueError, match="unknown near-miss kinds"):
        invalid_steps(grammar, kinds=["typo"])
    with pytest.raises(ValueError, match="unknown near-miss kinds"):
        invalid_steps(grammar, kinds=[])
    only_multi_line = compose_step_grammar([NOTE], allowed=["note"])
    with pytest.raises(ValueError, match="newline"):
        invalid_steps(only_multi_line, kinds=["extra_line"])
    assert invalid_steps(only_multi_line) is not None  # the other kinds still apply
    with pytest.raises(ValueError, match="max_repeat"):
        valid_steps(grammar, max_repeat=-1)


def test_strategies_refuse_a_step_layout_they_do_not_know() -> None:
    from tether.engine.gbnf import parse_gbnf

    foreign = StepGrammar(parse_gbnf('root ::= "Thought: " thought "\\n"\nthought ::= "x"'), ("answer",))
    with pytest.raises(ValueError, match="step layout"):
        actions(foreign)
    with pytest.raises(ValueError, match="step layout"):
        invalid_steps(foreign)


@settings(max_examples=50, deadline=None)
@given(valid_steps(grammars()["echo+color+note"], alphabet=st.characters(codec="ascii", exclude_characters="\r")))
def test_alphabet_narrows_the_characters_drawn(text: str) -> None:
    assert text.isascii() and "\r" not in text


# ---------------------------------------------------------------- restriction


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data())
def test_answer_only_grammar_refuses_tool_commands(name: str, data: st.DataObject) -> None:
    answer_only = compose_step_grammar(_tools(name), allowed=["answer"])
    assert answer_only.commands == ("answer",)
    action = data.draw(drawn_actions(name))
    if action.command == "answer":
        assert answer_only.parse(action.to_text()) == action
    else:
        with pytest.raises(ParseError) as caught:
            answer_only.parse(action.to_text())
        assert caught.value.position == len(f"Thought: {action.thought}\n")
        assert caught.value.expected == {"'answer: '"}


def _tools(name: str) -> list[ToolLike]:
    return [calculate_tool(), ECHO] if name == "calculate+echo" else [ECHO, COLOR, NOTE]


def test_a_grammar_without_answer_refuses_answers() -> None:
    only_calculate = compose_step_grammar([calculate_tool(), ECHO], allowed=["calculate"])
    assert only_calculate.parse("Thought: x\ncalculate: 1+1\n").input == "1+1"
    with pytest.raises(ParseError) as caught:
        only_calculate.parse("Thought: x\nanswer: 2\n")
    assert caught.value.expected == {"'calculate: '"}


@pytest.mark.parametrize("allowed", [["search"], [], ["answer", "echo", "nope"]])
def test_restricting_to_unknown_or_no_commands_is_a_config_error(allowed: list[str]) -> None:
    with pytest.raises(ConfigError):
        compose_step_grammar([ECHO], allowed=allowed)


@pytest.mark.parametrize("name", NAMES)
def test_every_command_is_in_the_gbnf(name: str) -> None:
    grammar = grammars()[name]
    for command in grammar.commands:
        assert f'"{command}: "' in grammar.gbnf
    assert grammar.commands[-1] == "answer"


def test_the_grammar_command_prints_every_tool(capsys: pytest.CaptureFixture[str]) -> None:
    names = list(BUILTIN_TOOLS)
    assert main(["grammar", "--tools", ",".join(names)]) == 0
    gbnf = capsys.readouterr().out
    for command in [*names, "answer"]:
        assert f'"{command}: "' in gbnf
    assert gbnf == compose_step_grammar(resolve_tools(names)).gbnf
    assert main(["grammar", "--tools", ",".join(names), "--answer-only"]) == 0
    narrowed = capsys.readouterr().out
    assert '"answer: "' in narrowed and not any(f'"{command}: "' in narrowed for command in names)
    assert main(["grammar", "--tools", ",".join(names), "--lark"]) == 0
    assert capsys.readouterr().out == compose_step_grammar(resolve_tools(names)).lark_source


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama_cpp is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_llama_cpp_accepts_the_composed_gbnf(name: str) -> None:
    llama_cpp = importlib.import_module("llama_cpp")
    gbnf = grammars()[name].gbnf
    assert llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False) is not None  # only stores the text, so:
    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode(), b"root")  # llama.cpp parses it here
    assert sampler, gbnf
    llama_cpp.llama_sampler_free(sampler)


# ---------------------------------------------------------------- errors say where and what


def test_a_wrong_command_names_the_line_column_and_the_commands_expected() -> None:
    grammar = grammars()["calculate+echo"]
    text = "Thought: add them\ncalcualte: 1+1\n"
    with pytest.raises(ParseError) as caught:
        grammar.parse(text)
    error = caught.value
    assert error.position == text.index("calcualte")
    assert error.expected == {"'calculate: '", "'echo: '", "'answer: '"}
    assert "line 2, column 1" in str(error)
    assert "'calculate: '" in str(error) and "found 'c'" in str(error)
    assert error.text == text


@pytest.mark.parametrize(
    ("text", "line", "column", "found"),
    [
        ("Thought: \nanswer: x\n", 1, 10, "found '\\n'"),  # empty thought
        ("thought: x\nanswer: x\n", 1, 1, "found 't'"),
        ("Thought: x\nanswer x\n", 2, 1, "found 'a'"),
        ("Thought: x\nanswer: x", 2, 10, "found end of text"),
        ("Thought: " + "x" * 601 + "\nanswer: x\n", 1, 610, "found 'x'"),
        ("Thought: x\ncalculate: 1 +\n", 2, 15, "found '\\n'"),
        ("", 1, 1, "found end of text"),
    ],
)
def test_parse_errors_say_where(text: str, line: int, column: int, found: str) -> None:
    with pytest.raises(ParseError) as caught:
        grammars()["calculate+echo"].parse(text)
    assert f"at line {line}, column {column}: {found}" in str(caught.value)
    assert caught.value.expected


def test_text_after_a_whole_step_says_the_end_was_expected() -> None:
    with pytest.raises(ParseError) as caught:
        grammars()["calculate+echo"].parse("Thought: x\nanswer: x\nmore\n")
    assert "at line 3, column 1: found 'm'" in str(caught.value)
    assert "expected end of text" in str(caught.value)


def test_rule_names_of_different_tools_never_collide() -> None:
    # Tool `a`'s rule `b-root` and tool `a_b`'s `root` both become `cmd-a-b-root`; the later one wins
    # silently, so `a` accepted any line instead of only "x".
    a = Tool(name="a", description="A.", func=str, example="x", grammar='root ::= b-root\nb-root ::= "x"')
    a_b = Tool(name="a_b", description="AB.", func=str, example="hello")
    try:
        grammar = compose_step_grammar([a, a_b])
    except ConfigError:
        return  # refusing the pair, naming the clash, is a fix too
    assert grammar.parse("Thought: t\na: x\n").input == "x"
    assert grammar.parse("Thought: t\na_b: hello\n").input == "hello"
    with pytest.raises(ParseError):
        grammar.parse("Thought: t\na: hello\n")


# ---------------------------------------------------------------- what the grammar says about itself


@pytest.mark.parametrize("name", NAMES)
def test_the_grammar_names_each_commands_input_rule(name: str) -> None:
    grammar = grammars()[name]
    assert grammar.has_shipped_layout
    assert set(grammar.input_rules) == set(grammar.commands)
    for command in grammar.commands:
        assert grammar.input_grammar(command).start == grammar.input_rules[command]
    multi_line = {c for c in grammar.commands if may_produce(grammar.input_grammar(c), "\n")}
    assert multi_line == ({"note"} if "note" in grammar.commands else set())


@pytest.mark.parametrize(("name", "allowed"), [("calculate+echo", ["echo", "answer"]), ("echo+color+note", ["note"])])
@PROPERTY
@given(data=st.data())
def test_narrowed_admits_what_composing_with_allowed_admits(name: str, allowed: list[str], data: st.DataObject) -> None:
    full = grammars()[name]
    narrowed = full.narrowed(allowed)
    composed = compose_step_grammar(_tools(name), allowed=allowed)
    assert narrowed.commands == composed.commands == tuple(allowed)
    assert narrowed.input_rules == composed.input_rules
    assert narrowed.has_shipped_layout
    text = data.draw(steps(name))
    assert parses_or_refuses(narrowed, text) == parses_or_refuses(composed, text)
    assert (parses_or_refuses(narrowed, text) is None) == (full.parse(text).command not in allowed)


def test_narrowing_to_commands_the_grammar_lacks_is_a_config_error() -> None:
    narrowed = grammars()["calculate+echo"].narrowed(["echo"])
    with pytest.raises(ConfigError, match="calculate"):
        narrowed.narrowed(["calculate"])
    with pytest.raises(ConfigError, match="none"):
        narrowed.narrowed([])


@pytest.mark.parametrize("expression", ["1 +* 2", "2 $ 3", "sqrt(1", "1   + 2", "(1))"])
def test_the_step_validator_and_the_calculator_name_the_same_place(expression: str) -> None:
    line = "calculate: "
    with pytest.raises(ParseError) as step_error:
        grammars()["calculate+echo"].parse(f"Thought: t\n{line}{expression}")
    with pytest.raises(ToolError) as tool_error:
        calculate_tool()(expression)
    column = step_error.value.position - len("Thought: t\n") + 1 - len(line)
    assert f"column {column}" in str(tool_error.value)
    assert f"line 2, column {column + len(line)}" in str(step_error.value)
