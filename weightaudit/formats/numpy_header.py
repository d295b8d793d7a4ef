"""NumPy's ``.npy`` header and dtype descriptions, read the way numpy reads them, without ``ast``.

:func:`read_npy_header` mirrors ``numpy.lib.format`` (``read_magic``, ``_check_version``,
``_read_array_header``): versions 1.0/2.0/3.0 only, a header of at most :data:`MAX_HEADER_SIZE` characters
(numpy's ``max_header_size``), a Python dict literal with exactly the keys ``descr``, ``fortran_order`` and
``shape``, a tuple of ints for the shape and a bool for the order. Anything numpy refuses raises
:class:`NpyRefused` with numpy's reason. The literal is parsed by :class:`_Literal`, a small bounded parser
(only the literal forms numpy's headers use: dicts, tuples, lists, strings, ints, True/False/None).

:func:`describe_dtype` tells what a ``descr`` holds: a plain numeric type (our dtype name and byte order), an
object dtype in any spelling numpy accepts (``'O'``, ``'|O'``, ``'<O'``, ``'O8'``, ``'object'``, ``'f4,O'``,
``'(2,)O'``, structured lists and subarray tuples with an object field), or something else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from weightaudit.formats.mapped_file import FileProblem

__all__ = ["NPY_MAGIC", "MAX_HEADER_SIZE", "NpyRefused", "NpyHeader", "read_npy_header", "DtypeInfo",
           "describe_dtype", "parse_literal"]

NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER_SIZE = 10_000          # numpy.lib.format's default max_header_size
MAX_LITERAL_DEPTH = 32
EXPECTED_KEYS = frozenset({"descr", "fortran_order", "shape"})
NUMERIC_TYPES = {"f2": "F16", "f4": "F32", "f8": "F64", "i1": "I8", "i2": "I16", "i4": "I32", "i8": "I64",
                 "u1": "U8", "u2": "U16", "u4": "U32", "u8": "U64", "b1": "BOOL", "c8": "C64", "c16": "C128"}
# One-letter codes numpy also writes or accepts for the same types (dtype.char), with their item sizes.
_CHAR_CODES = {"?": "b1", "b": "i1", "B": "u1", "h": "i2", "H": "u2", "i": "i4", "I": "u4", "l": "i8", "L": "u8",
               "q": "i8", "Q": "u8", "e": "f2", "f": "f4", "d": "f8", "F": "c8", "D": "c16"}


class NpyRefused(FileProblem):
    """numpy itself would refuse this ``.npy`` (the message is numpy's reason)."""


@dataclass(frozen=True)
class NpyHeader:
    descr: Any
    fortran_order: bool
    shape: tuple[int, ...]
    data_start: int
    version: tuple[int, int]


@dataclass(frozen=True)
class DtypeInfo:
    """What a dtype description holds: ``dtype`` (our name) for plain numerics, ``has_object`` for any
    object field; ``byte_order`` ``little``/``big``."""

    dtype: str | None
    has_object: bool
    byte_order: str = "little"


def read_npy_header(data: memoryview | bytes) -> NpyHeader:
    """Parse the header of an ``.npy`` at the start of ``data``; raise NpyRefused where numpy raises."""
    if bytes(data[:6]) != NPY_MAGIC:
        raise NpyRefused("the magic string is not correct (not a .npy array)")
    if len(data) < 8:
        raise NpyRefused("file ends inside the .npy magic")
    version = (data[6], data[7])
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise NpyRefused(f"we only support format version (1,0), (2,0), and (3,0), not {version}")
    size_format, start = ("<H", 10) if version == (1, 0) else ("<I", 12)
    if len(data) < start:
        raise NpyRefused("EOF before the .npy header length")
    length = struct.unpack_from(size_format, data, start - struct.calcsize(size_format))[0]
    if start + length > len(data):
        raise NpyRefused("EOF inside the .npy header")
    if length > 4 * MAX_HEADER_SIZE + 4:     # cannot decode to <= MAX_HEADER_SIZE characters
        raise NpyRefused(f"header info length ({length}) is large and may not be safe to load securely")
    raw = bytes(data[start:start + length])
    try:
        text = raw.decode("utf-8" if version == (3, 0) else "latin-1")
    except UnicodeDecodeError:
        raise NpyRefused("header is not valid UTF-8") from None
    if len(text) > MAX_HEADER_SIZE:
        raise NpyRefused(f"header info length ({len(text)}) is large and may not be safe to load securely")
    try:
        header = parse_literal(text, allow_long_suffix=version <= (2, 0))
    except ValueError as exc:
        raise NpyRefused(f"cannot parse header: {exc}") from None
    return _check_header(header, start + length, version)


def _check_header(header: Any, data_start: int, version: tuple[int, int]) -> NpyHeader:
    if not isinstance(header, dict):
        raise NpyRefused(f"header is not a dictionary: {type(header).__name__}")
    if set(header) != EXPECTED_KEYS:
        keys = sorted(map(repr, header))
        raise NpyRefused(f"header does not contain the correct keys: {', '.join(keys)}")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(x, int) for x in shape):
        raise NpyRefused(f"shape is not valid: {shape!r}")
    if not isinstance(header["fortran_order"], bool):
        raise NpyRefused(f"fortran_order is not a valid bool: {header['fortran_order']!r}")
    if any(x < 0 for x in shape):
        raise NpyRefused(f"negative dimensions are not allowed: {shape!r}")
    return NpyHeader(header["descr"], header["fortran_order"], tuple(int(x) for x in shape), data_start, version)


# --------------------------------------------------------------------------------------------------------------
# dtype descriptions
# --------------------------------------------------------------------------------------------------------------


def describe_dtype(descr: Any, depth: int = 0) -> DtypeInfo:
    """What ``numpy.lib.format.descr_to_dtype(descr)`` would hold (see module docstring)."""
    if depth > MAX_LITERAL_DEPTH:
        return DtypeInfo(None, True)          # cannot tell: treat as possibly holding objects
    if isinstance(descr, str):
        return _describe_string(descr)
    if isinstance(descr, tuple) and len(descr) == 2:           # (base, subarray shape)
        inner = describe_dtype(descr[0], depth + 1)
        return DtypeInfo(None, inner.has_object)
    if isinstance(descr, list):                                # structured: [(name, format[, shape]), ...]
        has_object = False
        for field_descr in descr:
            if not isinstance(field_descr, tuple) or len(field_descr) not in (2, 3):
                return DtypeInfo(None, True)
            has_object = has_object or describe_dtype(field_descr[1], depth + 1).has_object
        return DtypeInfo(None, has_object)
    return DtypeInfo(None, False)


def _describe_string(descr: str) -> DtypeInfo:
    if "O" in descr or "object" in descr.lower():
        return DtypeInfo(None, True)
    order = "big" if descr[:1] == ">" else "little"
    code = descr[1:] if descr[:1] in "<>|=" else descr
    code = _CHAR_CODES.get(code, code)
    return DtypeInfo(NUMERIC_TYPES.get(code), False, order)


# --------------------------------------------------------------------------------------------------------------
# A bounded Python-literal parser (the subset numpy headers use)
# --------------------------------------------------------------------------------------------------------------


def parse_literal(text: str, allow_long_suffix: bool = False) -> Any:
    """The value of a Python literal made of dicts, tuples, lists, strings, ints, True/False/None."""
    parser = _Literal(text, allow_long_suffix)
    value = parser.value(0)
    parser.skip_space()
    if parser.pos != len(text):
        raise ValueError(f"unexpected text at character {parser.pos}")
    return value


_CLOSERS = {"{": "}", "(": ")", "[": "]"}
_NAMES = {"True": True, "False": False, "None": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0", "\n": ""}


class _Literal:
    def __init__(self, text: str, allow_long_suffix: bool) -> None:
        self.text = text
        self.pos = 0
        self.allow_long_suffix = allow_long_suffix

    def skip_space(self) -> None:
        """Spaces, and comments to the end of their line (Python's tokenizer drops both)."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif char in " \t\r\n\f":
                self.pos += 1
            else:
                return

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos:self.pos + 1]

    def value(self, depth: int) -> Any:
        if depth > MAX_LITERAL_DEPTH:
            raise ValueError("literal nested too deeply")
        char = self.peek()
        if char in _CLOSERS:
            return self.container(char, depth)
        if char in ("'", '"'):
            return self.string(char)
        if char and char in "-0123456789":
            return self.integer()
        for name, constant in _NAMES.items():
            if self.text.startswith(name, self.pos):
                self.pos += len(name)
                return constant
        raise ValueError(f"unsupported literal at character {self.pos}")

    def container(self, opener: str, depth: int) -> Any:
        closer, items, pairs, trailing_comma = _CLOSERS[opener], [], [], False
        self.pos += 1
        while self.peek() != closer:
            if not self.peek():
                raise ValueError(f"unclosed {opener!r}")
            item = self.value(depth + 1)
            if opener == "{":
                if self.peek() != ":":
                    raise ValueError(f"expected ':' at character {self.pos}")
                self.pos += 1
                pairs.append((item, self.value(depth + 1)))
            else:
                items.append(item)
            trailing_comma = self.peek() == ","
            if trailing_comma:
                self.pos += 1
            elif self.peek() != closer:
                raise ValueError(f"expected ',' or {closer!r} at character {self.pos}")
        self.pos += 1
        if opener == "{":
            return self._dict(pairs)
        if opener == "[":
            return items
        if len(items) == 1 and not trailing_comma:
            return items[0]                    # (x) is x, not a tuple
        return tuple(items)

    @staticmethod
    def _dict(pairs: list[tuple[Any, Any]]) -> dict:
        result: dict = {}
        for key, value in pairs:
            if isinstance(key, (list, dict)):
                raise ValueError("unhashable dictionary key")
            result[key] = value
        return result

    def string(self, quote: str) -> str:
        out, pos = [], self.pos + 1
        while pos < len(self.text):
            char = self.text[pos]
            if char == quote:
                self.pos = pos + 1
                return "".join(out)
            if char == "\\" and pos + 1 < len(self.text):
                escaped = self.text[pos + 1]
                if escaped not in _ESCAPES:
                    raise ValueError(f"unsupported escape at character {pos}")
                out.append(_ESCAPES[escaped])
                pos += 2
                continue
            if char == "\n":
                break
            out.append(char)
            pos += 1
        raise ValueError("unterminated string")

    def integer(self) -> int:
        start = self.pos
        if self.text[self.pos] == "-":
            self.pos += 1
            self.skip_space()
        digits_start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in "0123456789":
            self.pos += 1
        digits = self.text[digits_start:self.pos]
        if not digits or len(digits) > 64 or (digits[0] == "0" and digits.strip("0")):
            raise ValueError(f"bad integer at character {start}")
        if self.allow_long_suffix and self.text[self.pos:self.pos + 1] in ("L", "l"):
            self.pos += 1
        value = int(digits)
        return -value if self.text[start] == "-" else value
