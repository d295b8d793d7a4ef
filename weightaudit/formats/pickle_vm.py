"""A bounded symbolic pickle machine: runs every opcode of protocols 0–5 over inert values.

Nothing is imported and nothing is called. ``GLOBAL``/``STACK_GLOBAL``/``INST`` push a :class:`Global`
reference; ``REDUCE``/``NEWOBJ``/``NEWOBJ_EX``/``OBJ``/``INST`` push a :class:`Call` record; ``BUILD``,
``SETITEM(S)``, ``APPEND(S)`` and ``ADDITEMS`` on anything that is not one of our own plain containers are
recorded on the target (they would run ``__setstate__``/``__setitem__``/``append``/``add`` code).

This module holds the entry points and re-exports the public names; the parts live in modules with one job each:

- :mod:`~weightaudit.formats.pickle_values` — the values it pushes (:class:`Global`, :class:`Call`, ...) and
  :func:`render`; :mod:`~weightaudit.formats.pickle_result` — :class:`Limits` and :class:`PickleResult`;
- :mod:`~weightaudit.formats.pickle_reader` — bytes and ``FRAME``; :mod:`~weightaudit.formats.pickle_ints` — ``INT``/``LONG``;
- :mod:`~weightaudit.formats.pickle_core` (stack, memo, loop), :mod:`~weightaudit.formats.pickle_ops_values` and
  :mod:`~weightaudit.formats.pickle_ops_calls` (opcode handlers), :mod:`~weightaudit.formats.pickle_machine` (table);
- :mod:`~weightaudit.formats.pickle_recover` — the linear scan that reads on when a run stops early.

Parsing follows CPython's C unpickler (``Modules/_pickle.c``) where scanners built on ``pickletools`` were
fooled:

- ``INT`` uses C ``strtol(s, &end, 0)`` (so ``I0x10`` is 16 and ``I010`` is 8), falling back to
  ``int(s, 0)`` on overflow; ``"00"``/``"01"`` are booleans; a NUL ends the number.
- ``LONG`` uses ``int(s, 0)`` after dropping one trailing ``L``.
- ``FRAME`` has two readings: from a byte string frames are only an availability check ("bytes mode"); from a
  file object without ``peek`` (``torch.load``'s ``BytesIO``, or large frames) an opcode that straddles the
  frame end loses the unread tail of the frame ("file mode"). :func:`scan_pickle` runs file mode and, when a
  straddle happened, bytes mode as well, and reports the differential.
- the mark stack is separate from the value stack and fences it, as in C (``POP`` may pop a mark).
- ``STACK_GLOBAL`` demands ``str`` operands; symbolic operands (computed at load time) become a
  :class:`DynamicGlobal` and an anomaly.
- ``EXT1/2/4`` resolve through copyreg's registry, which is empty by default; an :class:`ExtRef` is pushed and
  reported, unless the same pickle registered the code with ``copyreg.add_extension`` first.
- stacked pickles: :func:`scan_stream` keeps reading after ``STOP`` until the data ends.
- plain values follow C exactly where the old machine was stricter: empty ``APPENDS``/``SETITEMS``/``ADDITEMS``
  do nothing whatever sits below the mark, ``BUILD(None)`` (or a ``(None, {})`` state) works on any value, and
  ``FLOAT`` goes through ``PyOS_string_to_double`` (no spaces, no underscores, overflow refused).
- ``NEXT_BUFFER`` pushes an :class:`OutOfBandBuffer` (CPython with ``buffers=``) and reports it.

Deliberate deviations (tests/formats/test_pickle_differential.py checks everything else against CPython): a
``FRAME`` longer than the data is read on like ``pickle.py`` (C refuses; reported as a differential), non-ASCII
``STRING`` payloads decode as UTF-8 like ``torch.load`` (C's default ASCII refuses), and what a call would raise
at run time (wrong arguments, a missing attribute) is unknown to a machine that never calls.

Every resource is bounded by :class:`Limits` (opcodes, memo entries, stack depth, mark nesting, declared
lengths of ints/strings, recovery-scan steps). A limit hit ends the run with an anomaly of kind ``"limit"``; the
machine is iterative, so no pickle can exhaust the Python stack. No early stop: when a run ends with an error or a
limit, :func:`~weightaudit.formats.pickle_recover.recover` scans the rest of the buffer linearly and adds every
global and call it sees (``from_scan=True``), so a payload after a deliberate error is still reported while the
result keeps its ``error`` (the file stays unverified).
"""

from __future__ import annotations

from weightaudit.formats.pickle_ints import c_strtol, parse_int_line, parse_long_line
from weightaudit.formats.pickle_machine import OPCODE_NAMES, PickleMachine
from weightaudit.formats.pickle_recover import recover
from weightaudit.formats.pickle_result import HIGHEST_PROTOCOL, Limits, PickleResult
from weightaudit.formats.pickle_values import (
    Anomaly, BytesRef, Call, DynamicGlobal, ExtRef, Global, GlobalUse, LimitExceeded, Mutation, OutOfBandBuffer,
    PersistentId, PickleError, render,
)

# Everything that other modules import from here, including the names re-exported from the part modules
# (they lived in this module before it was split).
__all__ = [
    "HIGHEST_PROTOCOL", "Limits", "PickleResult", "PickleMachine", "OPCODE_NAMES", "run_pickle", "scan_pickle",
    "scan_stream",
    "Global", "DynamicGlobal", "ExtRef", "PersistentId", "BytesRef", "OutOfBandBuffer", "Call", "Mutation",
    "Anomaly", "GlobalUse", "PickleError", "LimitExceeded", "render",
    "c_strtol", "parse_int_line", "parse_long_line",
]


def run_pickle(data: bytes | memoryview, start: int = 0, limits: Limits | None = None, file_mode: bool = True,
               budget: list[int] | None = None) -> PickleResult:
    """Run one pickle starting at ``start``. Never raises on bad input: errors land in ``result.error``, and the
    rest of the buffer is then scanned linearly (:func:`~weightaudit.formats.pickle_recover.recover`)."""
    limits = limits or Limits()
    view = data if isinstance(data, memoryview) else memoryview(data)
    machine = PickleMachine(view, start, limits, file_mode, budget or [limits.max_opcodes])
    result = machine.run()
    if result.error is not None:
        at = result.error_pos if result.error_pos is not None else result.end
        recover(view, max(at, start), limits, result, machine.memo, machine.proto)
    return result


def scan_pickle(data: bytes | memoryview, start: int = 0, limits: Limits | None = None,
                budget: list[int] | None = None) -> PickleResult:
    """Run one pickle the way ``torch.load``/a file-based unpickler read it; when an opcode straddles a FRAME
    end, also run the byte-string reading and merge what it imports and calls (it may hide a payload)."""
    limits = limits or Limits()
    budget = budget or [limits.max_opcodes]
    primary = run_pickle(data, start, limits, True, budget)
    if any(a.kind == "differential" and "straddles" in a.message for a in primary.anomalies):
        other = run_pickle(data, start, limits, False, budget)
        primary.globals.extend(other.globals)
        primary.calls.extend(other.calls)
        primary.mutations.extend(other.mutations)
        primary.anomalies.extend(a for a in other.anomalies if a.kind != "differential")
    return primary


def scan_stream(data: bytes | memoryview, start: int = 0, end: int | None = None, limits: Limits | None = None,
                max_pickles: int = 1_000_000) -> tuple[list[PickleResult], int]:
    """Run every stacked pickle from ``start`` until the data ends or one fails.

    Returns the results and the offset where parsing stopped (``end`` when everything parsed). A failing
    result is kept (its error says why); bytes after a clean STOP that are not a pickle show up as a final
    result with an error.
    """
    limits = limits or Limits()
    view = data if isinstance(data, memoryview) else memoryview(data)
    if end is not None:
        view = view[:end]
    budget = [limits.max_opcodes]
    results: list[PickleResult] = []
    pos = start
    while pos < len(view) and len(results) < max_pickles:
        result = scan_pickle(view, pos, limits, budget)
        results.append(result)
        if not result.ok or result.end <= pos:
            return results, result.end
        pos = result.end
    return results, pos
