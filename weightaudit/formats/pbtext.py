"""A small, bounded reader for protobuf text format (``saved_model.pbtxt``, ``*.pbtxt`` graphs).

Hand-written tokenizer and recursive-descent parser; the only regular expressions are two single
character-class scans (whitespace runs, bare words), which cannot backtrack: every byte is looked at a constant
number of times. It accepts the subset of text format that TensorFlow writes and that the
audit needs: ``name: value``, ``name { ... }`` / ``name < ... >`` (with or without ``:``), ``[a, b]`` lists,
``[type.googleapis.com/...]`` extension / Any names, quoted strings with C escapes (adjacent strings
concatenate), bare identifiers and numbers, ``#`` comments, ``,``/``;`` separators.

``parse_text`` returns a tree of ``(field name, value)`` lists (value: ``bytes`` for strings, ``str`` for bare
tokens, a list for messages); ``TextMessage`` exposes it with the same ``items()`` interface as the wire
reader, typed by ``savedmodel_graph.SCHEMA``.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from weightaudit.formats.savedmodel_graph import SCHEMA, Budget, WalkLimit

_PUNCT = frozenset(b"{}<>:[],;")
# Single character-class scans (no alternation, no nesting): linear, nothing to backtrack.
_SPACE_RUN = re.compile(rb"[ \t\r\n\f\v]*")
_WORD = re.compile(rb"[^ \t\r\n\f\v{}<>:\[\],;\"'#]*")
_SIMPLE_ESCAPES = {ord("n"): 10, ord("t"): 9, ord("r"): 13, ord("a"): 7, ord("b"): 8, ord("f"): 12, ord("v"): 11,
                   ord("\\"): 92, ord("'"): 39, ord('"'): 34, ord("?"): 63}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_OCT = frozenset(b"01234567")


class TextFormatError(ValueError):
    """Not valid protobuf text format (in the subset we read)."""


class _Lexer:
    """Tokens of a text-format document: ('p', char) punctuation, ('s', bytes) string, ('w', str) word."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.peeked: tuple[str, Any] | None = None

    def peek(self) -> tuple[str, Any] | None:
        if self.peeked is None:
            self.peeked = self._next()
        return self.peeked

    def take(self) -> tuple[str, Any] | None:
        token = self.peek()
        self.peeked = None
        return token

    def _skip_space(self) -> None:
        data, end = self.data, len(self.data)
        pos = _SPACE_RUN.match(data, self.pos).end()
        while pos < end and data[pos] == 35:       # '#': comment to end of line
            newline = data.find(b"\n", pos)
            pos = end if newline < 0 else _SPACE_RUN.match(data, newline).end()
        self.pos = pos

    def _next(self) -> tuple[str, Any] | None:
        self._skip_space()
        if self.pos >= len(self.data):
            return None
        byte = self.data[self.pos]
        if byte in _PUNCT:
            self.pos += 1
            return "p", chr(byte)
        if byte in (34, 39):
            return "s", self._strings()
        start = self.pos
        self.pos = _WORD.match(self.data, start).end()
        return "w", self.data[start:self.pos].decode("utf-8", "replace")

    def _strings(self) -> bytes:
        """One or more adjacent quoted strings, concatenated."""
        out = bytearray()
        while True:
            out += self._string()
            self._skip_space()
            if self.pos >= len(self.data) or self.data[self.pos] not in (34, 39):
                return bytes(out)

    def _string(self) -> bytes:
        data, quote = self.data, self.data[self.pos]
        close = data.find(quote, self.pos + 1)
        if close > 0 and data.find(92, self.pos + 1, close) < 0 and data.find(10, self.pos + 1, close) < 0:
            start, self.pos = self.pos + 1, close + 1       # no escapes: one slice
            return data[start:close]
        pos, out = self.pos + 1, bytearray()
        while True:
            if pos >= len(data) or data[pos] == 10:
                raise TextFormatError(f"unterminated string at byte {self.pos}")
            byte = data[pos]
            if byte == quote:
                self.pos = pos + 1
                return bytes(out)
            if byte != 92:
                out.append(byte)
                pos += 1
                continue
            pos = self._escape(pos + 1, out)

    def _escape(self, pos: int, out: bytearray) -> int:
        data = self.data
        if pos >= len(data):
            raise TextFormatError("string ends inside an escape")
        byte = data[pos]
        if byte in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[byte])
            return pos + 1
        if byte in _OCT:
            end = pos
            while end < len(data) and end < pos + 3 and data[end] in _OCT:
                end += 1
            out.append(int(data[pos:end], 8) & 0xFF)
            return end
        if byte in (ord("x"), ord("X")):
            end = pos + 1
            while end < len(data) and end < pos + 3 and data[end] in _HEX:
                end += 1
            if end == pos + 1:
                raise TextFormatError("\\x escape without hex digits")
            out.append(int(data[pos + 1:end], 16))
            return end
        if byte in (ord("u"), ord("U")):
            width = 4 if byte == ord("u") else 8
            digits = data[pos + 1:pos + 1 + width]
            if len(digits) != width or any(d not in _HEX for d in digits):
                raise TextFormatError("bad unicode escape")
            out += chr(min(int(digits, 16), 0x10FFFF)).encode("utf-8", "surrogatepass")
            return pos + 1 + width
        raise TextFormatError(f"unknown escape \\{chr(byte)}")


class _Parser:
    def __init__(self, data: bytes, budget: Budget) -> None:
        self.lexer = _Lexer(data)
        self.budget = budget

    def document(self) -> list:
        entries = self.message(None, 0)
        if self.lexer.peek() is not None:
            raise TextFormatError(f"unexpected {self.lexer.peek()[1]!r} at top level")
        return entries

    def message(self, close: str | None, depth: int) -> list:
        if depth > self.budget.limits.max_text_depth:      # limits.graph_text_depth (protobuf's default: 100)
            raise WalkLimit("max_text_depth", self.budget.limits.max_text_depth)
        entries: list = []
        while True:
            token = self.lexer.peek()
            if token is None:
                if close is not None:
                    raise TextFormatError(f"message not closed with {close!r}")
                return entries
            if token == ("p", close):
                self.lexer.take()
                return entries
            self.budget.tick()
            name = self.field_name()
            self.field_values(name, entries, depth)
            if self.lexer.peek() in (("p", ","), ("p", ";")):
                self.lexer.take()

    def field_name(self) -> str:
        token = self.lexer.take()
        if token is not None and token[0] == "w":
            return token[1]
        if token == ("p", "["):                          # extension or Any type URL: [a.b/c.D]
            parts = []
            while (part := self.lexer.take()) != ("p", "]"):
                if part is None:
                    raise TextFormatError("unterminated [extension] name")
                parts.append(str(part[1]))
            return "[" + "".join(parts) + "]"
        raise TextFormatError(f"expected a field name, got {token!r}")

    def field_values(self, name: str, entries: list, depth: int) -> None:
        has_colon = self.lexer.peek() == ("p", ":")
        if has_colon:
            self.lexer.take()
        token = self.lexer.peek()
        if token == ("p", "["):                    # a list; message lists may omit the ':'
            if not has_colon:
                self._expect_message_list(name)
            self.lexer.take()
            if self.lexer.peek() == ("p", "]"):
                self.lexer.take()
                return
            while True:
                entries.append((name, self.value(depth)))
                separator = self.lexer.take()
                if separator == ("p", "]"):
                    return
                if separator != ("p", ","):
                    raise TextFormatError(f"expected ',' or ']' in the list of {name}")
        entries.append((name, self.value(depth)))

    def _expect_message_list(self, name: str) -> None:
        """``name [ {...}, ... ]`` without ':' is only legal for messages; peek past the '['."""
        data, pos = self.lexer.data, self.lexer.pos
        following = _SPACE_RUN.match(data, pos).end()
        if following < len(data) and data[following] not in b"{<]":
            raise TextFormatError(f"a list of scalars for {name} needs ':'")

    def value(self, depth: int) -> Any:
        token = self.lexer.take()
        if token in (("p", "{"), ("p", "<")):
            return self.message("}" if token[1] == "{" else ">", depth + 1)
        if token is not None and token[0] == "s":
            return token[1]
        if token is not None and token[0] == "w":
            if token[1] == "-":                       # "- 5" is legal: a sign then a number
                following = self.lexer.take()
                return "-" + str(following[1] if following else "")
            return token[1]
        raise TextFormatError(f"expected a value, got {token!r}")


def parse_text(data: bytes, budget: Budget) -> list:
    """Parse a text-format message; raises TextFormatError or WalkLimit."""
    return _Parser(data, budget).document()


class TextMessage:
    """A parsed text-format message typed by ``SCHEMA`` (same interface as ``WireMessage``)."""

    __slots__ = ("entries", "kind", "budget")

    def __init__(self, entries: list, kind: str, budget: Budget) -> None:
        self.entries, self.kind, self.budget = entries, kind, budget

    def items(self) -> Iterator[tuple[str, Any]]:
        spec = _BY_NAME[self.kind]
        for name, value in self.entries:
            self.budget.tick()
            kind = spec.get(name)
            if kind is None:
                continue
            if kind in ("string", "bytes"):
                if isinstance(value, bytes):
                    yield name, value.decode("utf-8", "replace") if kind == "string" else value
            elif kind == "present":
                yield name, True
            elif isinstance(value, list):
                yield name, TextMessage(value, kind, self.budget)


_BY_NAME: dict[str, dict[str, str]] = {kind: {name: sub for name, sub in spec.values()} for kind, spec in SCHEMA.items()}
