"""What a grammar's language may hold, and what llama.cpp can decode at a bounded cost: the checks a
tool's input grammar passes at registration."""

from __future__ import annotations

from collections.abc import Iterable

from tether.engine.gbnf.nodes import Alt, AnyChar, CharClass, Grammar, Lit, Node, Ref, Repeat, Seq, quantifier
from tether.errors import GrammarError

__all__ = [
    "LLAMA_MAX_REPETITIONS",
    "check_llama_repetitions",
    "llama_cpp_accepts",
    "may_produce",
    "nested_repeat_size",
]


LLAMA_MAX_REPETITIONS = 2000
"""llama.cpp's MAX_REPETITION_THRESHOLD: it refuses a larger minimum and reads a larger maximum as no maximum."""


def check_llama_repetitions(grammar: Grammar) -> None:
    """GrammarError naming the rule for a repetition bound llama.cpp refuses, or silently makes unbounded
    (which would let the decoder write more than the validator accepts)."""
    for name, node in grammar.rules.items():
        for lo, hi in _bounds(node):
            shown = quantifier(lo, hi)
            if lo > LLAMA_MAX_REPETITIONS:
                raise GrammarError(
                    f"rule {name!r}: repetition {shown} needs {lo} repetitions, more than llama.cpp allows "
                    f"({LLAMA_MAX_REPETITIONS}; 'number of repetitions exceeds sane defaults')"
                )
            if hi is not None and hi > LLAMA_MAX_REPETITIONS:
                raise GrammarError(
                    f"rule {name!r}: repetition {shown} has a maximum above {LLAMA_MAX_REPETITIONS}, which llama.cpp "
                    "reads as no maximum; write * (or a smaller bound)"
                )


def _bounds(node: Node) -> Iterable[tuple[int, int | None]]:
    match node:
        case Seq(items) | Alt(items):
            for item in items:
                yield from _bounds(item)
        case Repeat(item, lo, hi):
            yield lo, hi
            yield from _bounds(item)


def nested_repeat_size(grammar: Grammar) -> tuple[int, str]:
    """The largest product of the bounds of repetitions nested inside one another (through rule
    references, recursion counted once; 1 without nesting), and the rule where that nesting starts.

    Why: llama.cpp keeps one grammar stack per way of having read the text so far. A lone `X{0,199}`
    has one way (its count), but `(("a"{0,9}){0,9}){0,9}` has up to 9*9*9, and llama.cpp's per-token
    cost grows with that (seconds per token at 729). An unbounded `X*` is one recursive rule: it
    counts as 1 (as `X{3,}` counts 3).
    """
    memo: dict[str, tuple[int, int]] = {}

    def size(node: Node, active: frozenset[str]) -> tuple[int, int]:
        """(largest product over paths through >= 1 repetition, ... through >= 2), 0 where none."""
        match node:
            case Ref(name):
                if name in active:
                    return 0, 0
                if name not in memo:
                    memo[name] = size(grammar.rules[name], active | {name})
                return memo[name]
            case Seq(items) | Alt(items):
                sizes = [size(i, active) for i in items]
                return max((a for a, _ in sizes), default=0), max((b for _, b in sizes), default=0)
            case Repeat(item, lo, hi):
                bound = max(lo, 1) if hi is None else max(hi, 1)
                one, _ = size(item, active)
                return bound * max(one, 1), bound * one
        return 0, 0

    # Of the rules reaching the largest product, the last defined: usually the one that holds it.
    worst, _, rule = max((size(Ref(name), frozenset())[1], i, name) for i, name in enumerate(grammar.rules))
    return max(worst, 1), rule


def may_produce(grammar: Grammar, char: str) -> bool:
    """Whether some string of the language may contain `char`: any reachable literal or class that
    can produce it (an over-estimate only where a rule can never finish)."""
    seen: set[str] = set()
    todo: list[Node] = [Ref(grammar.start)]
    while todo:
        match todo.pop():
            case Lit(text) if char in text:
                return True
            case AnyChar():
                return True
            case CharClass(ranges, negated) if any(a <= char <= b for a, b in ranges) != negated:
                return True
            case Ref(name) if name not in seen:
                seen.add(name)
                todo.append(grammar.rules[name])
            case Seq(items) | Alt(items):
                todo.extend(items)
            case Repeat(item, _, hi) if hi != 0:
                todo.append(item)
    return False


def llama_cpp_accepts(gbnf: str) -> bool:
    """Whether llama.cpp's own GBNF parser takes `gbnf` (it refuses e.g. left recursion, which Lark allows).

    Builds a vocabulary-free grammar sampler, the only step that parses: `LlamaGrammar.from_string`
    merely stores the text, so a bad grammar would otherwise surface at the first decode.
    """
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True
