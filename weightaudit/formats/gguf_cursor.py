"""Bounded little-endian reads over a mapped GGUF header (``gguf.py`` walks the header with them): every declared
length is checked against the bytes left in the file and the header limit before anything is read, and a read
that cannot go on raises :class:`HeaderError` carrying the rule it breaks."""

from __future__ import annotations

import struct
from typing import Any

from weightaudit.rules import gguf_rules as G

KEPT_STRING_CHARS = 4096          # non-template strings are kept up to this many characters


class HeaderError(Exception):
    """The header cannot be read further; carries the rule it breaks."""

    def __init__(self, rule: Any, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.where = where


class Cursor:
    """Bounded little-endian reads over the mapped file. ``limit`` caps how far the header may reach."""

    def __init__(self, buf: Any, size: int, limit: int) -> None:
        self.buf, self.size, self.limit, self.pos = buf, size, limit, 0

    def remaining(self) -> int:
        return self.size - self.pos

    def fixed(self, fmt: str, width: int, what: str) -> Any:
        if self.pos + width > self.size:
            raise HeaderError(G.HEADER_TRUNCATED, f"file ends inside {what} (byte {self.pos:,} of {self.size:,})")
        self._within_limit(width, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += width
        return value

    def u32(self, what: str) -> int:
        return self.fixed("<I", 4, what)

    def u64(self, what: str) -> int:
        return self.fixed("<Q", 8, what)

    def declared(self, nbytes: int, what: str) -> None:
        """Check that a declared length of ``nbytes`` fits in the file and the header limit."""
        if nbytes > self.remaining():
            raise HeaderError(G.LENGTH_OUT_OF_BOUNDS, f"{what} declares {nbytes:,} bytes at byte {self.pos:,} but "
                              f"only {self.remaining():,} remain in the file")
        self._within_limit(nbytes, what)

    def _within_limit(self, nbytes: int, what: str) -> None:
        if self.pos + nbytes > self.limit:
            raise HeaderError(G.LENGTH_OUT_OF_BOUNDS, f"header reaches past the {self.limit:,}-byte limit while "
                              f"reading {what}")

    def raw_string(self, what: str) -> tuple[int, int]:
        """(start, length) of a u64-length-prefixed string, skipped."""
        length = self.u64(f"{what} length")
        self.declared(length, what)
        start = self.pos
        self.pos += length
        return start, length

    def text(self, start: int, length: int, keep: int | None = KEPT_STRING_CHARS) -> str:
        end = start + length if keep is None else start + min(length, keep * 4)
        decoded = bytes(self.buf[start:end]).decode("utf-8", errors="replace")
        return decoded if keep is None else decoded[:keep]

    def skip(self, nbytes: int, what: str) -> None:
        self.declared(nbytes, what)
        self.pos += nbytes
