"""The calculator tool: safe arithmetic with Python's semantics, and no eval.

The expression is parsed with the Lark grammar converted from `calculate.gbnf`, the same grammar
the decoder constrains the model with, so anything the model can write is something this module
can read. The parse tree is then evaluated by a small transformer. Every step has a bounded cost:
the input length is capped, huge powers are refused before they are computed, and every
intermediate result is checked, so no input can make the tool hang or eat memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lark
from lark.visitors import Transformer_NonRecursive

from tether.engine.gbnf import load_grammar_source, syntax_problem
from tether.engine.tool import Tool
from tether.errors import ToolError

__all__ = ["MAX_INT_DIGITS", "MAX_LENGTH", "calculate", "evaluate", "format_number"]

Number = int | float


@dataclass(frozen=True)
class _Operand:
    """An operand of a `**` chain: its value and whether an odd number of minus signs precede it."""

    negative: bool
    value: Number


_Child = str | int | float | _Operand | None  # a lark.Token is a str

MAX_LENGTH = 1000
"""Longest expression accepted: the Earley parse grows faster than linearly with the length."""

MAX_INT_DIGITS = 4300
"""Most digits an integer result may have: Python's default limit for printing an int
(sys.int_info.default_max_str_digits), so that every result the calculator gives can be shown."""

_INT_LIMIT = 10**MAX_INT_DIGITS  # the smallest int with too many digits
_INT_LIMIT_BITS = int(MAX_INT_DIGITS / math.log10(2))  # 2**k >= _INT_LIMIT exactly when k > this

# name -> (fewest, most) arguments; the grammar itself allows one or two to every function.
_ARITY = {
    "sqrt": (1, 1),
    "abs": (1, 1),
    "exp": (1, 1),
    "round": (1, 2),
    "min": (1, 2),
    "max": (1, 2),
    "log": (1, 2),
}


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, with Python's precedence, types and results.

    Raises ToolError for anything it will not compute: text outside the grammar (naming the
    column), division by zero, math domain errors, and results too large to compute quickly.
    """
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression is too long ({len(expression)} characters; the limit is {MAX_LENGTH})")
    parser = calculate.input_grammar.parser
    try:
        tree = parser.parse(expression)
    except lark.UnexpectedInput as exc:
        raise ToolError(_parse_error_message(parser, expression, exc)) from None
    try:
        value = _Evaluator().transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, ToolError):
            raise exc.orig_exc from None
        raise
    assert isinstance(value, (int, float))
    return value


def format_number(value: Number) -> str:
    """The result as text the way Python prints it: `391`, `0.5`, `2.0`, `1e+16`."""
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # the process lowered sys.set_int_max_str_digits below our own bound
            raise ToolError("result has too many digits to print") from None
    return repr(value)


def _calculate(expression: str) -> str:
    return format_number(evaluate(expression))


calculate = Tool(
    name="calculate",
    description=(
        "Evaluate an arithmetic expression (+ - * / // % **, parentheses, sqrt, abs, round, min, max, log, exp, pi, e)."
    ),
    func=_calculate,
    example="0.17 * 2340",
    grammar=load_grammar_source("calculate"),
    timeout_s=2.0,
)


def _parse_error_message(parser: lark.Lark, text: str, exc: lark.UnexpectedInput) -> str:
    """The shared reading of the error, worded for the model (an expression is usually one line)."""
    problem = syntax_problem(text, exc, parser)
    where = problem.where(line="\n" in text)
    expected = f"; expected one of {', '.join(sorted(problem.expected))}" if problem.expected else ""
    if problem.at_end:
        return f"cannot parse the expression: it ends too early at {where}{expected}"
    return f"cannot parse the expression at {where}: unexpected {problem.found}{expected}"


class _Evaluator(Transformer_NonRecursive[lark.Token, _Child]):
    """Bottom-up evaluation of the parse tree; non-recursive, so deep nesting cannot overflow the stack.

    Whitespace becomes None, operator and function rules their text, everything else a number.
    """

    def r_root(self, c: list[_Child]) -> Number:
        return _numbers(c)[0]

    def r_ws(self, c: list[_Child]) -> None:
        return None

    def r_add_op(self, c: list[_Child]) -> str:
        return str(c[0])

    r_mul_op = r_sign = r_function = r_add_op

    def r_digits(self, c: list[_Child]) -> str:
        return "".join(str(t) for t in c if t is not None)

    r_exponent = r_digits

    def r_number(self, c: list[_Child]) -> Number:
        text = "".join(str(t) for t in c if t is not None)
        if not any(ch in text for ch in ".eE"):
            return int(text)
        value = float(text)
        if not math.isfinite(value):
            raise ToolError(f"number {text} is too large for a float")
        return value

    def r_constant(self, c: list[_Child]) -> Number:
        return math.pi if c[0] == "pi" else math.e

    def r_atom(self, c: list[_Child]) -> Number:
        return _numbers(c)[0]

    def r_operand(self, c: list[_Child]) -> _Operand:
        (value,) = _numbers(c)
        return _Operand(negative=sum(x == "-" for x in c if isinstance(x, str)) % 2 == 1, value=value)

    def r_factor(self, c: list[_Child]) -> Number:
        """`a ** -b ** c` as Python reads it, a ** (-(b ** c)): from the right, each operand's signs
        apply to the power it starts."""
        value: Number | None = None
        for operand in reversed([x for x in c if isinstance(x, _Operand)]):
            result = operand.value if value is None else _power(operand.value, value)
            value = _checked(-result) if operand.negative else result
        assert value is not None
        return value

    def r_term(self, c: list[_Child]) -> Number:
        items = [x for x in c if x is not None]
        value = items[0]
        assert isinstance(value, (int, float))
        for op, right in zip(items[1::2], items[2::2], strict=True):
            assert isinstance(op, str) and isinstance(right, (int, float))
            value = _binary(op, value, right)
        return value

    r_sum = r_term

    def r_call(self, c: list[_Child]) -> Number:
        name = c[0]
        assert isinstance(name, str)
        return _call(name, _numbers(c))


def _numbers(c: list[_Child]) -> list[Number]:
    return [x for x in c if isinstance(x, (int, float))]


def _checked(value: Number) -> Number:
    """The value, if it stays within the bounds that keep the next operation cheap."""
    if isinstance(value, int):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise ToolError(f"result is too large (more than {MAX_INT_DIGITS} digits)")
    elif not math.isfinite(value):
        raise ToolError("result is too large for a float (overflow)")
    return value


def _binary(op: str, a: Number, b: Number) -> Number:
    try:
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        elif op == "/":
            result = a / b
        elif op == "//":
            result = a // b
        else:
            result = a % b
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError(f"result of {op} is too large for a float (overflow)") from None
    return _checked(result)


def _power(base: Number, exponent: Number) -> Number:
    """base ** exponent, refusing before any work a result with too many digits."""
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        # |base ** exponent| >= 2 ** (exponent * (bits of |base| - 1)): refuse without computing it
        and exponent * (abs(base).bit_length() - 1) > _INT_LIMIT_BITS
    ):
        raise ToolError(f"result of ** is too large (more than {MAX_INT_DIGITS} digits)")
    if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
        raise ToolError("a negative number raised to a fractional power has no real value")
    try:
        result: Number = base**exponent
    except ZeroDivisionError:
        raise ToolError("division by zero: zero cannot be raised to a negative power") from None
    except OverflowError:
        raise ToolError("result of ** is too large for a float (overflow)") from None
    return _checked(result)


def _short(value: Number) -> str:
    """A number for an error message: never thousands of digits."""
    if isinstance(value, int) and value.bit_length() > 200:
        return "a huge integer"
    return format_number(value)


def _call(name: str, args: list[Number]) -> Number:
    lo, hi = _ARITY[name]
    if not lo <= len(args) <= hi:
        wanted = f"{lo}" if lo == hi else f"{lo} or {hi}"
        raise ToolError(f"{name} takes {wanted} argument{'s' if hi > 1 else ''}, got {len(args)}")
    x = args[0]
    try:
        if name == "sqrt":
            if x < 0:
                raise ToolError(f"sqrt of a negative number ({_short(x)}) has no real value")
            return _checked(math.sqrt(x))
        if name == "abs":
            return _checked(abs(x))
        if name == "exp":
            return _checked(math.exp(x))
        if name == "log":
            if x <= 0:
                raise ToolError(f"log needs a positive number, got {_short(x)}")
            if len(args) == 1:
                return math.log(x)
            base = args[1]
            if base <= 0 or base == 1:
                raise ToolError(f"log base must be positive and not 1, got {_short(base)}")
            return math.log(x, base)
        if name == "round":
            return _checked(_round(args))
        return min(args) if name == "min" else max(args)
    except OverflowError:
        shown = ", ".join(map(_short, args))
        raise ToolError(f"{name}({shown}) is too large for a float (overflow)") from None


def _round(args: list[Number]) -> Number:
    """Python's round; a huge negative digit count on an int is clamped so it costs nothing."""
    x = args[0]
    if len(args) == 1:
        return round(x)
    digits = args[1]
    if not isinstance(digits, int):
        raise ToolError(f"round's second argument (digits) must be an integer, got {_short(digits)}")
    if isinstance(x, int):
        # any digits below this rounds x to 0, and int.__round__ would first build 10**-digits
        digits = max(digits, -(x.bit_length() // 3 + 2))
    return round(x, digits)
