"""WA419: compute and memory bombs built from allowlisted callables.

An allowlisted call is data-only but not free: ``bytearray(2**40)``, ``set(range(10**10))``, numpy
``_reconstruct(ndarray, (10**12,), ...)``, ``decimal.Decimal('9' * 10**6)`` or ``Decimal('1e999999999')`` cost
what their arguments say. Each measure below reads the symbolic arguments of one :class:`Call` (never runs it)
and returns how many units (elements, bytes, digits) it would produce. The limits are named constants.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable

from weightaudit.formats.pickle_values import BytesRef, Call, Global, render
from weightaudit.model import Finding, Severity
from weightaudit.rules.pickle_rule_defs import ALLOCATION_BOMB

__all__ = ["BOMB_NOTABLE_UNITS", "BOMB_LIMIT_UNITS", "BOMB_NOTABLE_DIGITS", "BOMB_LIMIT_DIGITS",
           "BOMB_LIMIT_EXPONENT", "bomb_findings", "call_units"]

BOMB_NOTABLE_UNITS = 1 << 24        # elements/bytes: medium from here (no weights file builds such containers)
BOMB_LIMIT_UNITS = 1 << 30          # high from here
BOMB_NOTABLE_DIGITS = 4300          # CPython's default int_max_str_digits
BOMB_LIMIT_DIGITS = 100_000         # high from here: arithmetic on such numbers is quadratic
BOMB_LIMIT_EXPONENT = 10 ** 6       # Decimal('1e999999999'): tiny text, int() of it explodes
MAX_CALLS_MEASURED = 100_000

_EXPONENT = re.compile(r"[eE]\s*([+-]?\d+)")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _args(call: Call) -> tuple:
    return call.args if isinstance(call.args, tuple) else ()


def _range_len(call: Call, depth: int = 0) -> int | None:
    ints = [_int(a) for a in _args(call)]
    if not ints or len(ints) > 3 or any(i is None for i in ints):
        return None
    try:
        return len(range(*ints))            # O(1) on ints, OverflowError past sys.maxsize
    except (OverflowError, ValueError):
        start, stop, step = (0, ints[0], 1) if len(ints) == 1 else (ints[0], ints[1], ints[2] if len(ints) == 3 else 1)
        return abs(stop - start) // max(abs(step or 1), 1)


MAX_MEASURE_DEPTH = 8      # set(list(range(n))): sized calls nested deeper are not measured


def value_units(value: Any, depth: int = 0) -> int | None:
    """Elements a value stands for: an int count, a sized call, or a literal's length."""
    if _int(value) is not None:
        return max(value, 0)
    if isinstance(value, Call):
        return call_units(value, depth + 1)
    if isinstance(value, (list, tuple, set, frozenset, dict, str, bytes, bytearray)):
        return len(value)
    if isinstance(value, BytesRef):
        return value.length
    return None


def _first_arg_units(call: Call, depth: int) -> int | None:
    args = _args(call)
    return value_units(args[0], depth) if args else None


def _shape_units(call: Call, depth: int = 0) -> int | None:
    args = _args(call)
    shape = args[1] if len(args) > 1 and call.func.name == "_reconstruct" else (args[0] if args else None)
    if _int(shape) is not None:
        return shape
    if isinstance(shape, (tuple, list)) and shape and all(_int(d) is not None for d in shape):
        return math.prod(max(d, 0) for d in shape)
    return None


def _digits(call: Call) -> int | None:
    args = _args(call)
    if not args:
        return None
    text = args[0]
    if isinstance(text, BytesRef):
        return text.length
    if isinstance(text, (str, bytes)):
        return len(text)
    return None


def _exponent(call: Call) -> int | None:
    args = _args(call)
    if args and isinstance(args[0], str):
        found = _EXPONENT.search(args[0][:200])
        if found and len(found.group(1)) < 30:
            return abs(int(found.group(1)))
    return None


_SIZED: dict[str, Callable[[Call, int], int | None]] = {
    "builtins.range": _range_len,
    **{name: _first_arg_units for name in (
        "builtins.bytearray", "builtins.bytes", "builtins.set", "builtins.frozenset", "builtins.list",
        "builtins.tuple", "collections.deque", "collections.Counter", "builtins.dict", "collections.OrderedDict")},
    **{name: _shape_units for name in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
                                       "numpy.ndarray")},
}
_EXPONENT_PARSERS = frozenset({"decimal.Decimal", "fractions.Fraction"})   # Fraction('1e99999999') computes 10**e
_NUMBERS = frozenset({"builtins.int", "decimal.Decimal", "fractions.Fraction", "builtins.float", "builtins.complex"})


def call_units(call: Call, depth: int = 0) -> int | None:
    """Elements/bytes the call would produce (None: not a sized call or not measurable)."""
    func = call.func
    if not isinstance(func, Global) or depth > MAX_MEASURE_DEPTH:
        return None
    measure = _SIZED.get(func.qualname)
    return measure(call, depth) if measure is not None else None


def _grade(units: int, notable: int, limit: int) -> Severity | None:
    if units >= limit:
        return Severity.HIGH
    if units >= notable:
        return Severity.MEDIUM
    return None


def _judge(call: Call) -> tuple[Severity, str] | None:
    func = call.func
    if not isinstance(func, Global):
        return None
    if func.qualname in _NUMBERS:
        digits = _digits(call) or 0
        exponent = _exponent(call) if func.qualname in _EXPONENT_PARSERS else None
        if exponent is not None and exponent > BOMB_LIMIT_EXPONENT:
            return Severity.HIGH, f"{render(call, depth=1, width=80)} has a decimal exponent of {exponent}"
        grade = _grade(digits, BOMB_NOTABLE_DIGITS, BOMB_LIMIT_DIGITS)
        return (grade, f"{func.qualname} parses a {digits}-character number") if grade else None
    units = call_units(call)
    grade = _grade(units, BOMB_NOTABLE_UNITS, BOMB_LIMIT_UNITS) if units is not None else None
    return (grade, f"{render(call, depth=2, width=100)} builds {units} elements") if grade else None


def bomb_findings(calls: Iterable[Call], path: str, where: Callable[[int, str], str],
                  skip_positions: set[int]) -> list[Finding]:
    """WA419 for each call whose size passes a notable limit (high past the hard limit)."""
    findings = []
    for index, call in enumerate(calls):
        if index >= MAX_CALLS_MEASURED:
            break
        if call.pos in skip_positions:
            continue
        judged = _judge(call)
        if judged is not None:
            severity, message = judged
            findings.append(ALLOCATION_BOMB.finding(path, message, where=where(call.pos, call.opcode),
                                                    severity=severity))
    return findings
