"""Tiny opcode-level pickle builders for tests: payloads are written byte by byte, never by pickling objects.

``glob("os", "system")`` is a protocol 0–3 GLOBAL; ``sglob`` a protocol 4 STACK_GLOBAL (dotted names allowed);
``call(func, *args)`` a REDUCE; ``pkl(body, proto)`` wraps a body in PROTO ... STOP.
"""

from __future__ import annotations

import struct


def text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def num(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -2**31 <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def raw_bytes(value: bytes) -> bytes:
    return b"C" + bytes([len(value)]) + value if len(value) < 256 else b"B" + struct.pack("<I", len(value)) + value


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sglob(module: str, name: str) -> bytes:
    return b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93"


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def lst(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"l"


def dct(*pairs: tuple[bytes, bytes]) -> bytes:
    return b"(" + b"".join(k + v for k, v in pairs) + b"d"


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + b"R"


def newobj(cls: bytes, *args: bytes) -> bytes:
    return cls + tup(*args) + b"\x81"


def build(obj: bytes, state: bytes) -> bytes:
    return obj + state + b"b"


def pkl(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."
