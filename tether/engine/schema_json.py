"""The pieces of JSON text a schema's grammar is built from: the shared rules (a string with its
escapes, a number, any value), integers between two bounds written digit by digit, a pattern's node
fitted to length bounds, the shortest text of a grammar (for examples), and what a local `$ref` (a JSON
Pointer) points to.

Why apart from `tether.engine.schema`: these know JSON's lexical rules and nothing of JSON Schema's
keywords; the converter there decides which piece a keyword needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tether.engine.gbnf import Alt, CharClass, Grammar, Lit, Node, Ref, Repeat, Seq

__all__ = [
    "DIGIT",
    "SEP",
    "SHARED",
    "SHARED_NEEDS",
    "SPACE",
    "compact",
    "digits_between",
    "fit_length",
    "follow_ref",
    "shortest_text",
]

DIGIT = CharClass((("0", "9"),))
SPACE = Alt((Lit(" "), Lit("")))  # one optional space after `:` and `,`
SEP = Seq((Lit(","), SPACE))
_HEX = CharClass((("0", "9"), ("A", "F"), ("a", "f")))
_D = CharClass((("D", "D"), ("d", "d")))
_LOW = CharClass((("C", "F"), ("c", "f")))  # the second hex digit of a low surrogate
_UNIT = Alt(  # after \u: a code unit that is no surrogate, or a high surrogate then \u and its low one
    (  # (JSON parsers such as pydantic's refuse a lone surrogate)
        Seq((CharClass((("0", "9"), ("A", "C"), ("E", "F"), ("a", "c"), ("e", "f"))), _HEX, _HEX, _HEX)),
        Seq((_D, CharClass((("0", "7"),)), _HEX, _HEX)),
        Seq((_D, CharClass((("8", "9"), ("A", "B"), ("a", "b"))), _HEX, _HEX, Lit("\\u"), _D, _LOW, _HEX, _HEX)),
    )
)
_ESCAPE = Alt((CharClass.of('"/\\bfnrt'), Seq((Lit("u"), _UNIT))))
_CHAR = Alt(
    (CharClass((("\x00", "\x1f"), ('"', '"'), ("\\", "\\"), ("\x7f", "\x7f")), negated=True), Seq((Lit("\\"), _ESCAPE)))
)
SHARED: dict[str, Node] = {  # rules every grammar may use, added on first use
    "jchar": _CHAR,
    "jstring": Seq((Lit('"'), Repeat(Ref("jchar"), 0, None), Lit('"'))),
    "jint": Seq((Alt((Lit("-"), Lit(""))), Alt((Lit("0"), Seq((CharClass((("1", "9"),)), Repeat(DIGIT, 0, None))))))),
    "jfrac": Alt((Seq((Lit("."), Repeat(DIGIT, 1, None))), Lit(""))),
    "jexp": Alt(
        (
            Seq((CharClass((("E", "E"), ("e", "e"))), Alt((Lit("+"), Lit("-"), Lit(""))), Repeat(DIGIT, 1, None))),
            Lit(""),
        )
    ),
    "jnumber": Seq((Ref("jint"), Ref("jfrac"), Ref("jexp"))),
    "jvalue": Alt(
        (Ref("jobject"), Ref("jarray"), Ref("jstring"), Ref("jnumber"), Lit("true"), Lit("false"), Lit("null"))
    ),
    "jmember": Seq((Ref("jstring"), Lit(":"), SPACE, Ref("jvalue"))),
    "jobject": Seq(
        (Lit("{"), Alt((Seq((Ref("jmember"), Repeat(Seq((SEP, Ref("jmember"))), 0, None))), Lit(""))), Lit("}"))
    ),
    "jarray": Seq(
        (Lit("["), Alt((Seq((Ref("jvalue"), Repeat(Seq((SEP, Ref("jvalue"))), 0, None))), Lit(""))), Lit("]"))
    ),
}
SHARED_NEEDS = {
    "jstring": ("jchar",),
    "jnumber": ("jint", "jfrac", "jexp"),
    "jvalue": ("jobject", "jarray", "jstring", "jnumber"),
    "jmember": ("jstring", "jvalue"),
    "jobject": ("jmember",),
    "jarray": ("jvalue",),
}


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def follow_ref(root: Any, ref: str) -> Any:
    """What the local reference `ref` (`#/$defs/Name`, JSON Pointer escapes undone) points to in `root`;
    LookupError where it points to nothing."""
    target = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or part not in target:
            raise LookupError(ref)
        target = target[part]
    return target


def digits_between(lo: int, hi: int | None) -> Node:
    """The decimal numerals (no leading zeros) of lo..hi (hi None: no bound), 0 <= lo."""
    if hi is None:  # lo..(all numerals of lo's length), then any longer numeral
        width = len(str(lo))
        longer = Seq((CharClass((("1", "9"),)), *[DIGIT] * width, Repeat(DIGIT, 0, None)))
        return Alt((digits_between(lo, 10**width - 1), longer))
    options: list[Node] = []
    for width in range(len(str(lo)), len(str(hi)) + 1):
        a, b = max(lo, 10 ** (width - 1) if width > 1 else 0), min(hi, 10**width - 1)
        if a <= b:
            options.append(_same_width(str(a), str(b)))
    return options[0] if len(options) == 1 else Alt(tuple(options))


def _same_width(a: str, b: str) -> Node:
    """The numerals from a to b, both of the same width, digit by digit (as llama.cpp does)."""
    if a == b:
        return Lit(a)
    if a[0] == b[0]:
        return Seq((Lit(a[0]), _same_width(a[1:], b[1:])))
    rest = len(a) - 1
    if a[1:] == "0" * rest and b[1:] == "9" * rest:
        return Seq((CharClass(((a[0], b[0]),)), *[DIGIT] * rest))
    options: list[Node] = [Seq((Lit(a[0]), _same_width(a[1:], "9" * rest)))]
    if ord(b[0]) - ord(a[0]) > 1:
        options.append(Seq((CharClass(((chr(ord(a[0]) + 1), chr(ord(b[0]) - 1)),)), *[DIGIT] * rest)))
    options.append(Seq((Lit(b[0]), _same_width("0" * rest, b[1:]))))
    return Alt(tuple(options))


def fit_length(node: Node, lo: int, hi: int | None) -> Node | None:
    """The pattern's node narrowed to texts of lo..hi characters, or None where that takes more than
    narrowing its one variable-length repetition of one character (`[a-z]+` in `^[A-Z][a-z]+$`)."""
    shortest, longest = _lengths(node)
    if shortest >= lo and (hi is None or (longest is not None and longest <= hi)):
        return node
    items = list(node.items) if isinstance(node, Seq) else [node]
    while any(isinstance(i, Seq) for i in items):
        items = [part for i in items for part in (i.items if isinstance(i, Seq) else (i,))]
    varying = [k for k, i in enumerate(items) if _lengths(i)[0] != _lengths(i)[1]]
    if len(varying) != 1 or not isinstance(repeat := items[varying[0]], Repeat) or _lengths(repeat.item) != (1, 1):
        return None
    fixed = sum(_lengths(i)[0] for k, i in enumerate(items) if k != varying[0])
    low = max(repeat.min, lo - fixed)
    high = repeat.max if hi is None else hi - fixed if repeat.max is None else min(repeat.max, hi - fixed)
    if high is not None and high < low:
        return None
    items[varying[0]] = Repeat(repeat.item, low, high)
    return Seq(tuple(items))


def _lengths(node: Node) -> tuple[int, int | None]:
    """The fewest and most characters a pattern's node stands for (most None: unbounded); each of its
    literals is one character, however it is written (`\\"` inside a JSON string)."""
    match node:
        case Seq(items):
            spans = [_lengths(i) for i in items]
            tops = [b for _, b in spans]
            return sum(a for a, _ in spans), None if None in tops else sum(b for b in tops if b is not None)
        case Alt(options):
            spans = [_lengths(o) for o in options]
            tops = [b for _, b in spans]
            return min(a for a, _ in spans), None if None in tops else max(b for b in tops if b is not None)
        case Repeat(item, lo, hi):
            a, b = _lengths(item)
            return a * lo, None if hi is None or b is None else b * hi
    return 1, 1  # one character


def shortest_text(grammar: Grammar) -> str:
    """A shortest text of the language (the grammar's first choice among equals), for examples."""
    best: dict[str, str] = {}

    def text(node: Node) -> str | None:
        match node:
            case Lit(value):
                return value
            case CharClass(ranges, negated):
                if not negated:
                    return ranges[0][0]
                return next(
                    c for c in "a0 x_" + "".join(map(chr, range(0x21, 0x7F))) if not any(a <= c <= b for a, b in ranges)
                )
            case Ref(name):
                return best.get(name)
            case Seq(items):
                parts = [text(i) for i in items]
                return None if None in parts else "".join(p for p in parts if p is not None)
            case Alt(options):
                found = [t for t in map(text, options) if t is not None]
                return min(found, key=len) if found else None
            case Repeat(item, lo, _):
                one = text(item) if lo else ""
                return None if one is None else one * lo
        return "a"

    changed = True
    while changed:
        changed = False
        for name, node in grammar.rules.items():
            found = text(node)
            if found is not None and (name not in best or len(found) < len(best[name])):
                best[name], changed = found, True
    return best[grammar.start]
