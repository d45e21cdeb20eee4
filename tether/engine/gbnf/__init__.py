"""GBNF, parsed into one small AST that emits both GBNF (for the decoder) and Lark (for the validator).

This package is the single source of truth for every grammar tether uses:

- `nodes`: the AST, `Grammar`, the two emitters, and the one cached Lark parser per grammar;
- `reader`: GBNF text into the AST (`parse_gbnf`), and the grammars shipped in `tether/grammars/`;
- `problems`: one reading of a Lark parse error, for every message that says where a text went wrong;
- `limits`: what a language may produce, and what llama.cpp can decode at a bounded cost.
"""

from tether.engine.gbnf.limits import (
    LLAMA_MAX_REPETITIONS,
    check_llama_repetitions,
    llama_cpp_accepts,
    may_produce,
    nested_repeat_size,
)
from tether.engine.gbnf.nodes import (
    LARK_PRELUDE,
    Alt,
    AnyChar,
    CharClass,
    Grammar,
    Lit,
    Node,
    Ref,
    Repeat,
    Seq,
    either_case,
)
from tether.engine.gbnf.problems import SyntaxProblem, describe_terminals, error_location, syntax_problem
from tether.engine.gbnf.reader import load_grammar_source, parse_gbnf, parse_gbnf_rules

__all__ = [
    "LARK_PRELUDE",
    "LLAMA_MAX_REPETITIONS",
    "Alt",
    "AnyChar",
    "CharClass",
    "Grammar",
    "Lit",
    "Node",
    "Ref",
    "Repeat",
    "Seq",
    "SyntaxProblem",
    "check_llama_repetitions",
    "describe_terminals",
    "either_case",
    "error_location",
    "llama_cpp_accepts",
    "load_grammar_source",
    "may_produce",
    "nested_repeat_size",
    "parse_gbnf",
    "parse_gbnf_rules",
    "syntax_problem",
]
