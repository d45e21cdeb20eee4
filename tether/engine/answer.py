"""The grammar of a final answer: a short line that cannot run on into another step.

A forced last step once produced `answer: 1,000 answer: 1,000 answer: 1,000 …` up to the token
budget. An answer is therefore at most `ANSWER_MAX_WORDS` words separated by spaces, none longer
than `ANSWER_MAX_WORD_CHARS` characters, and no word may start a step line: a command name, `answer`,
`Thought`, `Observation` or `Question` followed by a colon (in any case) is outside the language.

The words are matched by a trie of those names, written as GBNF rules, one rule per trie node: a
word that leaves the trie is free for the rest of its length, and the colon after a complete name
has no rule. Every choice is decided by the next character, so llama.cpp keeps one grammar stack,
and the Lark validator accepts exactly the same language.
"""

from __future__ import annotations

from collections.abc import Iterable

from tether.engine.gbnf import Alt, CharClass, Grammar, Lit, Node, Ref, Repeat, Seq
from tether.engine.protocol import ANSWER

__all__ = ["ANSWER_MAX_WORDS", "ANSWER_MAX_WORD_CHARS", "STEP_LINE_NAMES", "answer_grammar"]

ANSWER_MAX_WORDS = 24
ANSWER_MAX_WORD_CHARS = 40
STEP_LINE_NAMES = (ANSWER, "thought", "observation", "question")  # the transcript's own line openings

_SPACES = " \t\r\n"


def _chars(chars: Iterable[str], *, negated: bool = False) -> CharClass:
    return CharClass(tuple((c, c) for c in sorted(set(chars))), negated)


def _either_case(ch: str) -> Node:
    cases = {ch.lower(), ch.upper()}
    return Lit(ch) if len(cases) == 1 else _chars(cases)


def answer_grammar(commands: Iterable[str]) -> Grammar:
    """The answer's input grammar when these commands are registered (start rule `root`)."""
    names = sorted({name.casefold() for name in (*commands, *STEP_LINE_NAMES)})
    children: list[dict[str, int]] = [{}]  # trie over "name:"; node 0 is the start of a word
    for name in names:
        node = 0
        for ch in name + ":":
            if ch not in children[node]:
                children.append({})
                children[node][ch] = len(children) - 1
            node = children[node][ch]
    depth = [0] * len(children)
    for node, edges in enumerate(children):
        for child in edges.values():
            depth[child] = depth[node] + 1
    rules: dict[str, Node] = {}
    for node, edges in enumerate(children):
        if not edges:
            continue  # a complete "name:": no way on, so it cannot be written
        followed = {c for ch in edges for c in (ch.lower(), ch.upper())}
        options: list[Node] = [Seq((_either_case(ch), Ref(f"w-{child}"))) for ch, child in edges.items() if ch != ":"]
        tail = f"tail-{ANSWER_MAX_WORD_CHARS - depth[node] - 1}"  # what is left of the word after this letter
        rules.setdefault(tail, Repeat(_chars(_SPACES, negated=True), 0, ANSWER_MAX_WORD_CHARS - depth[node] - 1))
        options.append(Seq((_chars(_SPACES + "".join(followed), negated=True), Ref(tail))))
        body: Node = options[0] if len(options) == 1 else Alt(tuple(options))
        rules[f"w-{node}"] = body if node == 0 else Repeat(body, 0, 1)  # past the first letter a word may end
    word_gap = Repeat(Lit(" "), 1, 2)
    rules["root"] = Seq(
        (
            Repeat(Lit(" "), 0, 2),
            Ref("w-0"),
            Repeat(Seq((word_gap, Ref("w-0"))), 0, ANSWER_MAX_WORDS - 1),
            Repeat(Lit(" "), 0, 2),
        )
    )
    return Grammar(rules, "root")
