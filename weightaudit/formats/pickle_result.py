"""The symbolic pickle machine's settings (:class:`Limits`) and the outcome of one run (:class:`PickleResult`).

Re-exported by :mod:`weightaudit.formats.pickle_vm`, where loaders and rules import them from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightaudit.formats.pickle_values import Anomaly, Call, GlobalUse, Mutation, PersistentId

__all__ = ["HIGHEST_PROTOCOL", "Limits", "PickleResult"]

HIGHEST_PROTOCOL = 5


@dataclass(frozen=True)
class Limits:
    """Resource bounds. ``max_opcodes`` is shared by all pickles of one stream; ``max_scan_steps`` bounds the
    linear recovery scan that reads on after a run stopped early (one step per opcode or skipped byte)."""

    max_opcodes: int = 10_000_000
    max_memo: int = 5_000_000
    max_stack: int = 5_000_000
    max_marks: int = 100_000
    max_long_bytes: int = 1 << 16           # LONG/LONG4/INT text: no weights file needs bigger ints
    max_inline_bytes: int = 1 << 12         # longer byte strings stay in the file as BytesRef
    max_alloc: int = 1 << 32                # bytearray(n)/bytes(n) style declared allocations
    max_scan_steps: int = 4_000_000         # linear recovery scan after an error or a limit
    max_tuple_depth: int = 1_000            # tuple-in-tuple nesting (hashing deeper chains crashes CPython)


@dataclass
class PickleResult:
    """The outcome of running one pickle.

    ``value`` is what ``load()`` returns (None when ``error`` is set). ``end`` is the offset just after
    ``STOP`` (or where the error happened). ``opcodes`` counts executed opcodes by name. When the run stopped
    early, ``recovered_from`` is the offset where the linear recovery scan started: the globals and calls it saw
    are in ``globals``/``calls`` with ``from_scan=True``.
    """

    start: int
    end: int
    value: Any = None
    error: str | None = None
    error_pos: int | None = None
    protocol: int = 0
    globals: list[GlobalUse] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    mutations: list[Mutation] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    persistent_ids: list[PersistentId] = field(default_factory=list)
    opcodes: dict[str, int] = field(default_factory=dict)
    byte_strings: list[tuple[int, Any]] = field(default_factory=list)   # (pos, bytes/str/BytesRef) candidates
    mode: str = "file"
    recovered_from: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
