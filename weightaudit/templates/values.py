"""What the walker knows about a template value, and constant folding of the string operations templates use.

A value is abstract: a small set of constants it may hold (``'__cla' ~ 'ss__'`` -> ``{'__class__'}``), whether
it is a string assembled at render time, and whether it reaches Python internals or starts from a Jinja/Flask
global. Folding is bounded: at most ``MAX_VALUES`` alternatives, strings of at most ``MAX_TEXT`` characters,
integers of at most ``MAX_INT_BITS`` bits; anything bigger is "unknown" (and, for strings, "assembled").
Folding only ever applies str/int operations to constants the template wrote itself: no object of the template
is touched, no attribute is looked up.
"""

from __future__ import annotations

import operator
import re
import string
from dataclasses import dataclass, field, replace
from itertools import islice, product
from typing import Any, Callable, Iterable

MAX_VALUES = 32
MAX_TEXT = 4096          # folded strings longer than this are "assembled, unknown" (names are short)
MAX_INT_BITS = 4096
MAX_FORMAT_WIDTH = 1000
PATH_CHARS = 160


@dataclass(frozen=True)
class ConstDict:
    """A dict literal or ``dict(...)`` of constants (hashable, so it can sit in a set of alternatives)."""

    items: tuple[tuple[Any, Any], ...]

    def get(self, key: Any) -> Any:
        for k, v in self.items:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class Val:
    """``consts``: the constants it may be (None: unknown). ``built``: a string assembled at render time.
    ``internal``: how it reached Python internals. ``root``: the global it is (cycler, range, a macro ...).
    ``attrs``: a namespace's attributes. ``path``: how the template wrote it, for messages."""

    consts: frozenset | None = None
    built: bool = False
    internal: str | None = None
    root: str | None = None
    attrs: tuple[tuple[str, "Val"], ...] | None = None
    path: str = ""
    elements: "Val | None" = field(default=None, compare=False)   # what iterating it yields, when known
    open: bool = False                # it may also be something other than ``consts`` (a branch we cannot fold)

    def with_path(self, path: str) -> "Val":
        return replace(self, path=path[:PATH_CHARS])


DATA = Val()


def const(value: Any, path: str = "") -> Val:
    return Val(consts=frozenset([value]), path=path[:PATH_CHARS]) if _ok(value) else Val(path=path[:PATH_CHARS])


def _ok(value: Any) -> bool:
    """A constant we keep: bounded size, hashable."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return True
    if isinstance(value, int):
        return value.bit_length() <= MAX_INT_BITS
    if isinstance(value, str):
        return len(value) <= MAX_TEXT
    if isinstance(value, tuple):
        return len(value) <= 4096 and all(_ok(v) for v in value)
    return isinstance(value, ConstDict)


def strings(val: Val) -> list[str]:
    return sorted(v for v in (val.consts or ()) if isinstance(v, str))


def merge(a: Val, b: Val) -> Val:
    """Either of two values (branches of an if, a value before and after a loop)."""
    if a is b:
        return a
    known = [v.consts for v in (a, b) if v.consts is not None]
    consts = frozenset().union(*known) if known else None
    if consts is not None and len(consts) > MAX_VALUES:
        consts = None
    is_open = a.open or b.open or len(known) == 1
    attrs = None
    if a.attrs is not None or b.attrs is not None:
        keys = dict(a.attrs or ()) | {}
        for k, v in b.attrs or ():
            keys[k] = merge(keys[k], v) if k in keys else v
        attrs = tuple(keys.items())
    elements = a.elements if b.elements is None else (b.elements if a.elements is None else
                                                      merge(a.elements, b.elements))
    return Val(consts, a.built or b.built, a.internal or b.internal,
               a.root if a.root == b.root else (a.root or b.root), attrs, a.path or b.path, elements, is_open)


def _has_str(*vals: Val) -> bool:
    return any(isinstance(c, str) for v in vals for c in (v.consts or ()))


def fold(fn: Callable[..., Any], vals: list[Val], path: str, built: bool = True) -> Val:
    """``fn`` over every combination of the operands' constants; unknown if any operand is unknown or the
    result is too big. ``built``: the result is a string assembled from pieces."""
    internal = next((v.internal for v in vals if v.internal), None)
    path = path[:PATH_CHARS]
    if any(v.consts is None for v in vals):
        return Val(built=built and (any(v.built for v in vals) or _has_str(*vals)), internal=internal, path=path)
    out: set = set()
    for combo in islice(product(*[sorted(v.consts, key=repr) for v in vals]), MAX_VALUES * MAX_VALUES):
        try:
            result = fn(*combo)
        except (ArithmeticError, TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError):
            continue
        if not _ok(result) or len(out) >= MAX_VALUES:
            return Val(built=built, internal=internal, path=path)
        out.add(result)
    if not out:
        return Val(built=built and _has_str(*vals), internal=internal, path=path)
    return Val(frozenset(out), built=built and any(isinstance(r, str) for r in out), internal=internal,
               path=path, open=any(v.open for v in vals))


# ------------------------------------------------------------------------------------------ bounded operations

def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, tuple)) else 1


def safe_add(a: Any, b: Any) -> Any:
    if isinstance(a, (str, tuple)) and _size(a) + _size(b) > MAX_TEXT:
        raise ValueError("too long")
    return operator.add(a, b)


def safe_mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, (str, tuple)):
        a, b = b, a
    if isinstance(a, (str, tuple)):
        if not isinstance(b, int) or isinstance(b, bool) or _size(a) * max(b, 0) > MAX_TEXT:
            raise ValueError("too long")
    elif isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise ValueError("too big")
    return operator.mul(a, b)


def safe_pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if b < 0 or b * max(abs(a).bit_length(), 1) > MAX_INT_BITS:
            raise ValueError("too big")
    return operator.pow(a, b)


def safe_concat(*parts: Any) -> str:
    if sum(len(p) if isinstance(p, str) else 32 for p in parts) > MAX_TEXT:
        raise ValueError("too long")
    return "".join(_text(p) for p in parts)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)) or value is None:
        return str(value)
    raise TypeError("not a scalar")


# printf-style specs: %(name)s, flags, width, precision — one pass, no nested quantifiers.
_PRINTF_SPEC = re.compile(r"%(?:\([^)]{0,64}\))?[#0 +-]{0,5}(\*|\d{1,12})?(?:\.(\*|\d{1,12}))?[hlL]?.")


def safe_percent(fmt: Any, args: Any) -> str:
    """``fmt % args`` when the widths in ``fmt`` are small (``'%c%c' % (95, 95)`` is ``'__'``)."""
    if not isinstance(fmt, str) or len(fmt) > MAX_TEXT:
        raise TypeError("not a format")
    for match in _PRINTF_SPEC.finditer(fmt):
        for number in match.groups():
            if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                raise ValueError("unbounded width")
    if isinstance(args, ConstDict):
        args = dict(args.items)
    result = fmt % args
    if len(result) > MAX_TEXT:
        raise ValueError("too long")
    return result


def format_fields(fmt: str) -> list[str]:
    """The field names of a ``str.format`` string (``'{0.__class__}'`` -> ``['0.__class__']``)."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None]
    except (ValueError, IndexError):
        return []


def safe_format(fmt: Any, *args: Any, **kwargs: Any) -> str:
    """``fmt.format(...)`` when every field is a plain index or name (no attribute or item access) and widths
    are small; otherwise unknown."""
    if not isinstance(fmt, str) or len(fmt) > MAX_TEXT:
        raise TypeError("not a format")
    for _, name, spec, _ in string.Formatter().parse(fmt):
        if name and not (name.isdigit() or name.isidentifier()):
            raise ValueError("field with attribute or item access")
        if spec and ("{" in spec or any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d{1,12}", spec))):
            raise ValueError("unbounded spec")
    if any(not isinstance(a, (str, int, float)) for a in (*args, *kwargs.values())):
        raise TypeError("not a scalar argument")
    result = fmt.format(*args, **kwargs)
    if len(result) > MAX_TEXT:
        raise ValueError("too long")
    return result


def safe_slice(value: Any, start: Any, stop: Any, step: Any) -> Any:
    if not isinstance(value, (str, tuple)):
        raise TypeError("not sliceable")
    return value[slice(start, stop, step)]


def safe_index(value: Any, key: Any) -> Any:
    if isinstance(value, ConstDict):
        return value.get(key)
    if isinstance(value, (str, tuple)) and isinstance(key, int) and not isinstance(key, bool):
        return value[key]
    raise TypeError("not indexable")


def safe_join(value: Any, sep: Any = "") -> str:
    if isinstance(value, ConstDict):
        value = tuple(k for k, _ in value.items)
    if not isinstance(value, (str, tuple)) or not isinstance(sep, str):
        raise TypeError("not joinable")
    return safe_concat(*_interleave([_text(v) for v in value], sep))


def _interleave(parts: list[str], sep: str) -> Iterable[str]:
    for i, part in enumerate(parts):
        if i:
            yield sep
        yield part


def safe_replace(value: Any, old: Any, new: Any, count: Any = -1) -> str:
    if not all(isinstance(v, str) for v in (value, old, new)):
        raise TypeError("not text")
    if len(value) + len(new) * (len(value) + 1) > MAX_TEXT:
        raise ValueError("too long")
    return value.replace(old, new, count if isinstance(count, int) and count is not None else -1)


def safe_reverse(value: Any) -> Any:
    if isinstance(value, (str, tuple)):
        return value[::-1]
    raise TypeError("not reversible")


def safe_chr(code: Any) -> str:
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError("not a code point")
    return chr(code)


def elements(value: Any) -> Iterable[Any]:
    """What iterating a constant yields (characters of a string, items of a list, keys of a dict)."""
    if isinstance(value, (str, tuple)):
        return value
    if isinstance(value, ConstDict):
        return (k for k, _ in value.items)
    return ()


def element_val(val: Val, path: str) -> Val:
    """The loop variable when iterating ``val``."""
    if val.elements is not None:
        return val.elements.with_path(path)
    if val.consts is None:
        return Val(internal=val.internal and f"an element of {val.internal}", path=path[:PATH_CHARS])
    items: set = set()
    for value in val.consts:
        items.update(islice(elements(value), MAX_VALUES + 1))
        if len(items) > MAX_VALUES:
            return Val(built=True, path=path[:PATH_CHARS])
    return Val(frozenset(items), path=path[:PATH_CHARS], open=val.open) if items else Val(path=path[:PATH_CHARS])
