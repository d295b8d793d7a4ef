"""Integer literals of the text opcodes ``INT`` and ``LONG``, parsed exactly as CPython's C unpickler does.

``INT`` goes through C ``strtol(s, &end, 0)`` on a 64-bit long (so ``I0x10`` is 16 and ``I010`` is 8), falling back
to ``int(s, 0)`` on overflow; ``"00"``/``"01"`` are booleans and a NUL ends the number. ``LONG`` drops one
trailing ``L`` and uses ``int(s, 0)``. Scanners built on ``pickletools`` read some of these differently, which is
why the machine reports a differential when the text is not the plain decimal form.
"""

from __future__ import annotations

from weightaudit.formats.pickle_values import PickleError

__all__ = ["c_strtol", "parse_int_line", "parse_long_line"]

_TEXT_WHITESPACE = b" \t\n\v\f\r"


def c_strtol(text: bytes) -> tuple[int | None, int]:
    """C ``strtol(text, &end, 0)`` on a 64-bit long: (value or None on overflow, index of ``end``)."""
    i, n = 0, len(text)
    while i < n and text[i] in _TEXT_WHITESPACE:
        i += 1
    sign = 1
    if i < n and text[i] in b"+-":
        sign = -1 if text[i] == ord("-") else 1
        i += 1
    base, digits = 10, "0123456789"
    if i + 1 < n and text[i] == ord("0") and text[i + 1] in b"xX" and i + 2 < n and chr(text[i + 2]) in "0123456789abcdefABCDEF":
        base, digits, i = 16, "0123456789abcdefABCDEF", i + 2
    elif i < n and text[i] == ord("0"):
        base, digits = 8, "01234567"
    start = i
    while i < n and chr(text[i]) in digits:
        i += 1
    if i == start:
        return 0, 0                                     # no conversion: end = text start
    value = sign * int(text[start:i].decode("ascii"), base)
    if not -(1 << 63) <= value < (1 << 63):
        return None, i
    return value, i


def parse_int_line(line: bytes, pos: int) -> int | bool:
    """The ``INT`` opcode argument as CPython's ``load_int`` reads it (``line`` includes the newline)."""
    if len(line) < 2:
        raise PickleError("INT: bad line", pos)
    value, end = c_strtol(line)
    tail = line[end:end + 1]
    if value is None or tail not in (b"\n", b"\0"):
        return _pylong_from_string(line, pos, "INT")
    if len(line) == 3 and value in (0, 1):
        return bool(value)
    return value


def parse_long_line(line: bytes, pos: int) -> int:
    """The ``LONG`` opcode argument: one trailing ``L`` dropped, then ``int(s, 0)``."""
    body = line[:-1]
    if len(body) > 0 and body.endswith(b"L"):
        body = body[:-1]
    return _pylong_from_string(body + b"\n", pos, "LONG")


def _pylong_from_string(line: bytes, pos: int, opcode: str) -> int:
    text = line.split(b"\0", 1)[0]
    try:
        return int(text.decode("ascii"), 0)
    except (ValueError, UnicodeDecodeError):
        raise PickleError(f"{opcode}: could not convert {text[:40]!r} to int", pos) from None

