"""WA411: pickles hidden in a pickle's constants (raw, hex or base64, compressed or not), followed up to
MAX_NESTED_DEPTH levels.

A constant that decodes to a protocol 2–5 pickle is run through the symbolic machine (never unpickled); the
first call it would make outside the allowlist, or a known-dangerous import, is what the finding names.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import functools
import lzma
import re
import zlib
from typing import Any, Callable, NamedTuple

from weightaudit.formats.pickle_vm import BytesRef, Limits, PickleResult, render, scan_stream
from weightaudit.model import Finding
from weightaudit.rules.pickle_classify import Classifier, Level
from weightaudit.rules.pickle_rule_defs import LIMIT_EXCEEDED, NESTED_PICKLE

__all__ = ["MAX_NESTED_DEPTH", "NESTED_OPCODES", "nested_pickle_findings"]

MAX_NESTED_DEPTH = 4   # pickles inside pickles inside pickles...: multi-stage payloads, bounded
MAX_NESTED_BYTES = 1 << 20   # bytes of one constant decoded and scanned; a longer one is scanned by its head
MAX_HIDDEN_PICKLES = 10_000  # default of limits.hidden_pickles_per_file: hidden pickles scanned per pickle
NESTED_OPCODES = 100_000   # default of limits.nested_pickle_opcodes: opcodes per hidden pickle
INFLATE_RATIO = 16     # a compressed constant is inflated to at most 16x its size (a payload padded beyond is cut)


class Hidden(NamedTuple):
    """What a constant hides: the first call its pickle would make (None: it stopped at the opcode limit first)."""

    call: str | None
    depth: int
    cut: bool = False     # stopped because inflation or a long constant was cut (1 MiB, 16x), not at the opcodes
    too_deep: bool = False  # holds yet another pickle, deeper than MAX_NESTED_DEPTH: not followed


def nested_pickle_findings(result: PickleResult, path: str, where: Callable[[int, str], str],
                           data: bytes | memoryview, judge: Classifier,
                           max_opcodes: int = NESTED_OPCODES, max_pickles: int = MAX_HIDDEN_PICKLES
                           ) -> list[Finding]:
    """WA411 per constant hiding a pickle that would call code; WA405 (the file unverified) when such a pickle
    runs past ``max_opcodes`` (``limits.nested_pickle_opcodes``) before anything bad was seen."""
    findings = []
    scans = [max_pickles, 0]  # [hidden pickles this pickle may still scan, 1 once one was left unscanned]
    for pos, value in result.byte_strings:     # every constant: the first-character filter keeps this linear
        found = _nested_payload(value, data, 1, judge, max_opcodes, scans)
        if found is not None:
            findings.append(_hidden_finding(found, path, where(pos, "constant"), max_opcodes))
        if scans[1]:
            findings.append(LIMIT_EXCEEDED.finding(path, f"limits.hidden_pickles_per_file = {max_pickles:,} pickles "
                                                         "hidden in constants were scanned; the rest were not "
                                                         "searched: not fully checked",
                                                   where=where(pos, "constant")))
            break
    return findings


def _hidden_finding(found: Hidden, path: str, where: str, max_opcodes: int) -> Finding:
    levels = "" if found.depth == 1 else f" ({found.depth} pickles deep)"
    if found.call is None and found.too_deep:
        return LIMIT_EXCEEDED.finding(path, f"a constant holds pickles nested more than {MAX_NESTED_DEPTH} deep; the "
                                            "innermost was not followed: not fully checked", where=where)
    if found.call is None and found.cut:
        return LIMIT_EXCEEDED.finding(path, f"a constant holds a pickle{levels} that inflates past (or, stored plain, "
                                            f"runs past) the {MAX_NESTED_BYTES:,} bytes scanned (at most "
                                            f"{INFLATE_RATIO}x its compressed size): not fully checked", where=where)
    if found.call is None:
        return LIMIT_EXCEEDED.finding(path, f"a constant holds a pickle{levels} of more than "
                                            f"limits.nested_pickle_opcodes = {max_opcodes:,} opcodes: not fully "
                                            "checked", where=where)
    return NESTED_PICKLE.finding(path, f"a constant holds a pickle{levels} that would run {found.call}", where=where)


def _nested_payload(value: Any, data: bytes | memoryview, depth: int, judge: Classifier,
                    max_opcodes: int, scans: list[int]) -> Hidden | None:
    """The first call a pickle hidden in this constant would make and how deep it sits (a call of None: a hidden
    pickle hit the opcode limit and nothing bad was seen), or None."""
    limited: Hidden | None = None
    if not _may_hide_pickle(value, data):
        return None
    cut: list[bytes] = []
    for payload in _decoded_candidates(value, data, cut):
        if scans[0] <= 0:
            scans[1] = 1
            return limited
        scans[0] -= 1
        inner, _ = scan_stream(payload, limits=Limits(max_opcodes=max_opcodes))
        bad = [render(c) for r in inner for c in r.calls if not judge.is_allowed(c.func)]
        bad += [u.ref.qualname for r in inner for u in r.globals
                if judge.judge_global(u.ref).level is Level.DANGEROUS]
        if bad:
            return Hidden(bad[0], depth)
        if limited is None and any(a.kind == "limit" for r in inner for a in r.anomalies):
            limited = Hidden(None, depth)
        if limited is None and any(payload is c for c in cut) and _ran_to_the_end(inner, payload):
            limited = Hidden(None, depth, cut=True)
        for r in inner:
            for _, deeper in r.byte_strings:
                if depth >= MAX_NESTED_DEPTH:
                    if limited is None and _may_hide_pickle(deeper, payload) and _decoded_candidates(deeper, payload):
                        limited = Hidden(None, depth, too_deep=True)
                    continue
                found = _nested_payload(deeper, payload, depth + 1, judge, max_opcodes, scans)
                if found is not None and found.call is not None:
                    return found
                limited = limited or found
    return limited


def _decoded_candidates(value: Any, data: bytes | memoryview, cut: list[bytes] | None = None,
                        max_bytes: int = MAX_NESTED_BYTES) -> list[bytes]:
    """Raw, hex and base64 decodings of a constant (each also inflated) that look like a protocol 2-5 pickle.
    An inflation stopped at its cap (``max_bytes``, 16x the compressed size) before the stream ended is also
    appended to ``cut`` (side-file searches report it: the rest of that pickle was not scanned)."""
    truncated = False
    if isinstance(value, BytesRef):
        truncated = value.length > max_bytes       # scanned by its head: a pickle begins at the constant's start
        raw = bytes(data[value.offset:value.offset + min(value.length, max_bytes)])
        value = raw.decode("utf-8", "replace") if value.kind == "str" else raw
    elif len(value) > max_bytes:
        truncated, value = True, value[:max_bytes]
    if isinstance(value, bytearray):
        value = bytes(value)
    candidates: list[bytes] = []
    if isinstance(value, bytes):
        candidates.append(value)
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            value = ""
    if isinstance(value, str) and len(value) >= 8:
        text = value.strip()
        candidates.append(text.encode("latin-1", "ignore"))
        decoders = (_hex_head, _base64_head) if truncated else (bytes.fromhex, _base64)
        for decode in decoders:
            try:
                candidates.append(decode(text))
            except (ValueError, binascii.Error):
                continue
    candidates += [inflated for c in candidates if (inflated := _inflated(c, cut, max_bytes)) is not None]
    found = [c for c in candidates if len(c) >= 4 and c[0] == 0x80 and 2 <= c[1] <= 5]
    if truncated and cut is not None:
        cut.extend(found)
    return found


def _base64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _hex_head(text: str) -> bytes:
    """The whole hex digit pairs at the head of a cut text (fromhex allows a space between pairs)."""
    head = _HEX_HEAD.match(text)
    return bytes.fromhex(head.group(0)) if head else b""


def _base64_head(text: str) -> bytes:
    """The whole base64 quads at the head of a cut text."""
    head = _BASE64_HEAD.match(text)
    return base64.b64decode(head.group(0)[: len(head.group(0)) // 4 * 4], validate=True) if head else b""


_HEX_HEAD = re.compile(r"(?:[0-9A-Fa-f]{2} ?)+")
_BASE64_HEAD = re.compile(r"[A-Za-z0-9+/]+")
_FIRST_VISIBLE = re.compile(r"\S")


def _ran_to_the_end(inner: list, payload: bytes) -> bool:
    """The scan of a cut payload stopped only because the payload ended (a pickle longer than what was scanned),
    not at an opcode no pickle has (bytes that merely start like one)."""
    if not inner:
        return False
    first = inner[0]
    return not first.ok and (first.error_pos is None or first.error_pos >= len(payload) - 64)


def _may_hide_pickle(value: Any, data: bytes | memoryview) -> bool:
    """Can this constant decode (raw, hex or base64, then maybe inflate) to a pickle? Only if its first byte, or
    its first visible character, is the first of a pickle or of a compressed stream in one of those spellings:
    one look per constant, so a pickle of a million tensor names costs a million looks, not a million decodes."""
    if isinstance(value, BytesRef):
        head = bytes(data[value.offset:value.offset + min(value.length, 4096)])
        if value.length > len(head) and not head.strip():
            return True       # a long run of white space first: decode it whole (stripping is what decoding does)
        value = head.decode("utf-8", "replace") if value.kind == "str" else head
    if isinstance(value, (bytes, bytearray)):
        if value[:1] and value[0] in _first_bytes():
            return True
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return False
    first = _FIRST_VISIBLE.search(value)
    return first is not None and first.group(0) in _first_chars()


@functools.cache
def _first_bytes() -> frozenset[int]:
    """First bytes of a pickle (PROTO) and of every compressed stream _inflated opens."""
    return frozenset({0x80} | {magic[0] for magic, _ in _COMPRESSORS})


@functools.cache
def _first_chars() -> frozenset[str]:
    """First characters of those bytes written raw (latin-1), as hex (either case) and as base64."""
    chars: set[str] = set()
    for byte in _first_bytes():
        chars.add(chr(byte))
        chars.update(f"{byte:02x}"[0] + f"{byte:02X}"[0])
        chars.add(base64.b64encode(bytes([byte])).decode()[0])
    return frozenset(chars)


def _inflated(blob: bytes, cut: list[bytes] | None = None, max_bytes: int = MAX_NESTED_BYTES) -> bytes | None:
    """A zlib, gzip, xz/lzma or bz2 stream (by magic bytes) that inflates to a pickle header: its first
    INFLATE_RATIO x its own size (at most MAX_NESTED_BYTES), so work stays linear in the file's bytes."""
    for magic, make in _COMPRESSORS:
        if blob.startswith(magic):
            try:
                head = make().decompress(blob, 2)
                if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
                    return None
                inflater = make()
                inflated = inflater.decompress(blob, min(max_bytes, INFLATE_RATIO * len(blob)))
                if cut is not None and not inflater.eof:
                    cut.append(inflated)
                return inflated
            except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
                return None
    return None


_COMPRESSORS: tuple[tuple[bytes, Callable[[], Any]], ...] = (
    (b"\x1f\x8b", lambda: _Zlib(zlib.decompressobj(wbits=31))),
    *((bytes([0x78, second]), lambda: _Zlib(zlib.decompressobj())) for second in (0x01, 0x5E, 0x9C, 0xDA)),
    (b"\xfd7zXZ\x00", lzma.LZMADecompressor),
    (b"\x5d\x00\x00", lzma.LZMADecompressor),
    (b"BZh", bz2.BZ2Decompressor),
)


class _Zlib:
    """zlib's decompressobj with the (data, max_length) call the lzma and bz2 decompressors take."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self.inner.decompress(data, max_length)

    @property
    def eof(self) -> bool:
        return self.inner.eof
