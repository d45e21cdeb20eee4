"""The grammar of a final answer: a short line that cannot run on into another step.

A forced last step once produced `answer: 1,000 answer: 1,000 answer: 1,000 …` up to the token
budget. An answer is therefore at most `ANSWER_MAX_WORDS` words separated by spaces, none longer
than `ANSWER_MAX_WORD_CHARS` characters, and no word may start a step line: a command name, `answer`,
`Thought`, `Observation` or `Question` followed by a colon (in any case) is outside the language.

The words are matched by a trie of those names, written as GBNF rules, one rule per trie node: a
word that leaves the trie is free for the rest of its length, and the colon after a complete name
has no rule. Every choice is decided by the next character, so llama.cpp keeps one grammar stack,
and the Lark validator accepts exactly the same language.

The first word may not be `answer` itself either ("answer: answer to the question is: Jack Lemmon" was
a small model's most common closed-book answer): on the trie's path to `answer`, the first word has its
own rules (`first-*`), and the node after the last letter must go on to another letter ("answers").

An answer may be narrowed to an expected type (`AnswerType`): `number` (an optional sign, digits with
optional thousands commas, optional decimals; no units, so "57 stickers" cannot be written), `yes-no`
(`yes` or `no`, any case), `short` (the text answer, at most `SHORT_ANSWER_MAX_WORDS` words), or `text`
(the default).

A short answer is one phrase, not the start of a sentence: a small model reading passages wrote
`answer: 2009. The English local newspaper, featuring…` and `answer: "Texas Tech University". The
question asks…`, and the budget glued the rest into one word. So its words hold no double quotes and
no full stop, except between two digits ("3.5") and in initials and abbreviations ("C. W. Grafton",
"U.S.", "Ltd.": a capital and at most two small letters, then a point, repeated); the point
after any other word ends the answer (the closed-book grammar takes it as a closing mark). None of the
narrower languages can hold a colon, so none can start a step line either.

A short answer is a phrase, not a clause: the model wrote `answer: Erika Jayne was born first` and
`answer: Caroline Carver played Princess Jessica in the TVfilm` where the answer was the name. So no
word of it may be one of `SHORT_ANSWER_VERBS` ("is", "was", "are", "were", any case; "wash" and "Isle"
are fine: the trie above gives these words' last letters no end), and it holds no parentheses (a
closed-book pass takes ")" as a closing mark): a title's "(film)" is not part of an answer. None of
the 203 answers of the HotpotQA development files has either.

An agent with an `output_type` narrows the answer to that type's grammar instead (`typed_answer_grammar`:
a number, an enum's value, one line of JSON), padded like the others.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Literal, get_args

from tether.engine.gbnf import Alt, CharClass, Grammar, Lit, Node, Ref, Repeat, Seq, either_case
from tether.engine.protocol import ANSWER
from tether.errors import ConfigError

__all__ = [
    "ANSWER_MAX_WORDS",
    "ANSWER_MAX_WORD_CHARS",
    "ANSWER_TYPES",
    "SHORT_ANSWER_MAX_WORDS",
    "SHORT_ANSWER_VERBS",
    "STEP_LINE_NAMES",
    "AnswerType",
    "answer_grammar",
    "typed_answer_grammar",
]

AnswerType = Literal["text", "number", "yes-no", "short"]
ANSWER_TYPES: tuple[AnswerType, ...] = get_args(AnswerType)
ANSWER_MAX_WORDS = 24
SHORT_ANSWER_MAX_WORDS = 8
SHORT_ANSWER_VERBS = ("is", "was", "are", "were")  # words that make a short answer a sentence
NUMBER_MAX_DIGITS = 18  # before the decimal point, commas aside
NUMBER_MAX_DECIMALS = 10
ANSWER_MAX_WORD_CHARS = 40
STEP_LINE_NAMES = (ANSWER, "thought", "observation", "question")  # the transcript's own line openings

_SPACES = " \t\r\n"
_QUOTES = '"\u201c\u201d'  # left out of a short answer's words, with a point and parentheses


def _padded(body: Node) -> Grammar:
    """`body` with the up to two spaces either side that every answer may have."""
    return Grammar({"root": Seq((Repeat(Lit(" "), 0, 2), body, Repeat(Lit(" "), 0, 2)))}, "root")


def _number() -> Node:
    digit = CharClass.of("0123456789")
    grouped = Seq((Repeat(digit, 0, 2), Repeat(Seq((Lit(","), Repeat(digit, 3, 3))), 1, NUMBER_MAX_DIGITS // 3)))
    whole = Seq((digit, Alt((grouped, Repeat(digit, 0, NUMBER_MAX_DIGITS - 1)))))
    decimals = Repeat(Seq((Lit("."), Repeat(digit, 1, NUMBER_MAX_DECIMALS))), 0, 1)
    return Seq((Repeat(CharClass.of("+-"), 0, 1), whole, decimals))


def _yes_no() -> Node:
    return Alt((Seq(tuple(map(either_case, "yes"))), Seq(tuple(map(either_case, "no")))))


def typed_answer_grammar(value: Grammar) -> Grammar:
    """The answer grammar of a typed output: `value`'s language (a derived grammar, start `root`),
    with the up to two spaces either side that every answer may have."""
    inner = value.prefixed("value")
    padding = Repeat(Lit(" "), 0, 2)
    return Grammar({**inner.rules, "root": Seq((padding, Ref(inner.start), padding))}, "root")


def answer_grammar(commands: Iterable[str], answer_type: AnswerType = "text") -> Grammar:
    """The answer's input grammar when these commands are registered (start rule `root`), narrowed to
    `answer_type`."""
    if answer_type == "number":
        return _padded(_number())
    if answer_type == "yes-no":
        return _padded(_yes_no())
    if answer_type not in ("text", "short"):
        raise ConfigError(f"unknown answer type {answer_type!r}: use {', '.join(ANSWER_TYPES)}")
    short = answer_type == "short"
    max_words = SHORT_ANSWER_MAX_WORDS if short else ANSWER_MAX_WORDS
    outside = _SPACES + (_QUOTES + ".()" if short else "")  # what no word may hold (a short one: see above)
    # a name whose "name:" is longer than a word cannot be written as one, so needs no branch
    names = {n.casefold() + ":" for n in (*commands, *STEP_LINE_NAMES) if len(n) < ANSWER_MAX_WORD_CHARS}
    banned = SHORT_ANSWER_VERBS if short else ()
    children: list[dict[str, int]] = [{}]  # trie over "name:" and the banned words; node 0 starts a word
    unfinished = set()  # the nodes where a word may not end: the last letters of the banned words
    for name in sorted(names | set(banned)):
        node = 0
        for ch in name:
            if ch not in children[node]:
                children.append({})
                children[node][ch] = len(children) - 1
            node = children[node][ch]
        if name in banned:
            unfinished.add(node)
    depth = [0] * len(children)
    for node, edges in enumerate(children):
        for child in edges.values():
            depth[child] = depth[node] + 1
    first_word = [0]  # the nodes on the path to "answer", which the first word may not end at
    for ch in ANSWER:
        first_word.append(children[first_word[-1]][ch])
    rules: dict[str, Node] = {}

    def rule_of(node: int, first: bool) -> str:
        return f"first-{node}" if first and node in first_word else f"w-{node}"

    for first in (False, True):
        for node, edges in enumerate(children):
            if (not edges and node not in unfinished) or rule_of(node, first) in rules:
                continue  # a complete "name:": no way on, so it cannot be written
            followed = {c for ch in edges for c in (ch.lower(), ch.upper())}
            options: list[Node] = [
                Seq((either_case(ch), Ref(rule_of(child, first)))) for ch, child in edges.items() if ch != ":"
            ]
            tail = f"tail-{ANSWER_MAX_WORD_CHARS - depth[node] - 1}"  # what is left of the word after this letter
            letter: Node = CharClass.of(outside, negated=True)
            if short:  # a point only between two digits, as in 3.5 (not "2009.0.0.0", which a model wrote)
                digit = CharClass.of(string.digits)
                letter = Alt((letter, Seq((digit, Lit("."), digit))))
            rules.setdefault(tail, Repeat(letter, 0, ANSWER_MAX_WORD_CHARS - depth[node] - 1))
            options.append(Seq((CharClass.of(outside + "".join(followed), negated=True), Ref(tail))))
            body: Node = options[0] if len(options) == 1 else Alt(tuple(options))
            # past the first letter a word may end, but not as a banned word (nor the first as "answer")
            may_end = node != 0 and node not in unfinished and not (first and node == first_word[-1])
            rules[rule_of(node, first)] = Repeat(body, 0, 1) if may_end else body
    first_word_rule: Node = Ref("first-0")
    word_rule: Node = Ref("w-0")
    if short:  # initials and abbreviations: "C.", "U.S.", "Ltd."
        small = Repeat(CharClass.of(string.ascii_lowercase), 0, 2)
        rules["abbreviation"] = Repeat(Seq((CharClass.of(string.ascii_uppercase), small, Lit("."))), 1, 6)
        first_word_rule, word_rule = Alt((first_word_rule, Ref("abbreviation"))), Alt((word_rule, Ref("abbreviation")))
    word_gap = Repeat(Lit(" "), 1, 2)
    rules["root"] = Seq(
        (
            Repeat(Lit(" "), 0, 2),
            first_word_rule,
            Repeat(Seq((word_gap, word_rule)), 0, max_words - 1),
            Repeat(Lit(" "), 0, 2),
        )
    )
    return Grammar(rules, "root")
