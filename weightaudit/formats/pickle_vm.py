"""A bounded symbolic pickle machine: runs every opcode of protocols 0–5 over inert values.

Nothing is imported and nothing is called. ``GLOBAL``/``STACK_GLOBAL``/``INST`` push a :class:`Global`
reference; ``REDUCE``/``NEWOBJ``/``NEWOBJ_EX``/``OBJ``/``INST`` push a :class:`Call` record; ``BUILD``,
``SETITEM(S)``, ``APPEND(S)`` and ``ADDITEMS`` on anything that is not one of our own plain containers are
recorded on the target (they would run ``__setstate__``/``__setitem__``/``append``/``add`` code).

The values it pushes (:class:`Global`, :class:`Call`, ...) and :func:`render` live in
:mod:`weightaudit.formats.pickle_values`; the ``INT``/``LONG`` text parsing in :mod:`weightaudit.formats.pickle_ints`.
Both are re-exported here.

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

Every resource is bounded by :class:`Limits` (opcodes, memo entries, stack depth, mark nesting, declared
lengths of ints/strings). A limit hit ends the run with an anomaly of kind ``"limit"``; the machine is
iterative, so no pickle can exhaust the Python stack.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from weightaudit.formats.pickle_ints import c_strtol, parse_int_line, parse_long_line
from weightaudit.formats.pickle_values import (
    Anomaly, BytesRef, Call, DynamicGlobal, ExtRef, Global, GlobalUse, LimitExceeded, Mutation, PersistentId,
    PickleError, render,
)

# Everything that other modules import from here, including the names re-exported from pickle_values and
# pickle_ints (they lived in this module before it was split).
__all__ = [
    "HIGHEST_PROTOCOL", "Limits", "PickleResult", "PickleMachine", "OPCODE_NAMES", "run_pickle", "scan_pickle",
    "scan_stream",
    "Global", "DynamicGlobal", "ExtRef", "PersistentId", "BytesRef", "Call", "Mutation", "Anomaly", "GlobalUse",
    "PickleError", "LimitExceeded", "render",
    "c_strtol", "parse_int_line", "parse_long_line",
]

HIGHEST_PROTOCOL = 5


# --------------------------------------------------------------------------------------------------------------
# Machine settings and outcome (the symbolic values themselves are in pickle_values)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource bounds. ``max_opcodes`` is shared by all pickles of one stream."""

    max_opcodes: int = 10_000_000
    max_memo: int = 5_000_000
    max_stack: int = 5_000_000
    max_marks: int = 100_000
    max_long_bytes: int = 1 << 16           # LONG/LONG4/INT text: no weights file needs bigger ints
    max_inline_bytes: int = 1 << 12         # longer byte strings stay in the file as BytesRef
    max_alloc: int = 1 << 32                # bytearray(n)/bytes(n) style declared allocations


@dataclass
class PickleResult:
    """The outcome of running one pickle.

    ``value`` is what ``load()`` returns (None when ``error`` is set). ``end`` is the offset just after
    ``STOP`` (or where the error happened). ``opcodes`` counts executed opcodes by name.
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

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------------------------------------------
# Byte reader with CPython's two FRAME semantics
# --------------------------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: memoryview, pos: int, file_mode: bool) -> None:
        self.data = data
        self.pos = pos
        self.file_mode = file_mode
        self.frame_end = -1
        self.straddles: list[int] = []

    def _leave_frame_if_straddling(self, n: int) -> None:
        if self.file_mode and self.pos < self.frame_end < self.pos + n:
            self.straddles.append(self.pos)
            self.pos = self.frame_end

    def read(self, n: int, at: int) -> memoryview:
        self._leave_frame_if_straddling(n)
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise PickleError("pickle data was truncated", at)
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def readline(self, at: int) -> bytes:
        if self.file_mode and self.pos < self.frame_end:
            inside = bytes(self.data[self.pos:self.frame_end]).find(b"\n")
            if inside < 0:
                self.straddles.append(self.pos)
                self.pos = self.frame_end
        idx = _find_newline(self.data, self.pos)
        if idx < 0:
            raise PickleError("pickle data was truncated (no newline)", at)
        line = bytes(self.data[self.pos:idx + 1])
        self.pos = idx + 1
        return line

    def frame(self, n: int, at: int, on_short: Callable[[str], None]) -> None:
        if n < 0:
            raise PickleError(f"FRAME length {n} is negative", at)
        if self.pos + n > len(self.data):
            # C's _pickle refuses ("pickle data was truncated"); pickle.py reads the short frame and goes on.
            on_short(f"FRAME declares {n} bytes but only {len(self.data) - self.pos} remain: the C unpickler "
                     "refuses the file, the pure-Python one reads on")
            n = len(self.data) - self.pos
        if not self.file_mode:
            return
        if self.pos < self.frame_end and self.pos + n > self.frame_end:
            self.straddles.append(self.pos)
            self.pos = self.frame_end
        n = min(n, len(self.data) - self.pos)
        if not (self.pos < self.frame_end):
            self.frame_end = self.pos + n


def _find_newline(data: memoryview, start: int, window: int = 1 << 16) -> int:
    """Index of the next ``\\n`` at or after ``start`` (searched in windows, no full copy), or -1."""
    pos = start
    while pos < len(data):
        chunk = bytes(data[pos:pos + window])
        idx = chunk.find(b"\n")
        if idx >= 0:
            return pos + idx
        pos += window
    return -1


# --------------------------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------------------------

_ALLOC_CALLABLES = frozenset({"builtins.bytearray", "builtins.bytes", "builtins.range", "builtins.list",
                              "numpy.zeros", "numpy.ones", "numpy.empty", "numpy.full"})


class _Stop(Exception):
    pass


class PickleMachine:
    """Runs one pickle from ``start`` over ``data``; see :func:`run_pickle`."""

    def __init__(self, data: memoryview, start: int, limits: Limits, file_mode: bool, budget: list[int]) -> None:
        self.reader = _Reader(data, start, file_mode)
        self.data = data
        self.limits = limits
        self.budget = budget                 # [opcodes left], shared across stacked pickles
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.extensions: dict[int, Global] = {}
        self.result = PickleResult(start=start, end=start, mode="file" if file_mode else "bytes")
        self.op_pos = start
        self.op_name = ""

    # ---- stack helpers (C semantics: the top mark fences the stack) ----
    @property
    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def push(self, value: Any) -> None:
        if len(self.stack) >= self.limits.max_stack:
            raise LimitExceeded(f"stack depth above {self.limits.max_stack}", self.op_pos)
        self.stack.append(value)

    def pop(self) -> Any:
        if len(self.stack) <= self.fence:
            raise PickleError(f"{self.op_name}: unpickling stack underflow", self.op_pos)
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= self.fence:
            raise PickleError(f"{self.op_name}: unpickling stack underflow", self.op_pos)
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise PickleError(f"{self.op_name}: could not find MARK", self.op_pos)
        mark = self.marks.pop()
        items = self.stack[mark:]
        del self.stack[mark:]
        return items

    def memo_put(self, key: int) -> None:
        if key < 0:
            raise PickleError(f"negative {self.op_name} argument", self.op_pos)
        if key not in self.memo and len(self.memo) >= self.limits.max_memo:
            raise LimitExceeded(f"memo above {self.limits.max_memo} entries", self.op_pos)
        self.memo[key] = self.top()

    def memo_get(self, key: int) -> None:
        if key not in self.memo:
            raise PickleError(f"{self.op_name}: memo value not found at index {key}", self.op_pos)
        self.push(self.memo[key])

    def anomaly(self, kind: str, message: str) -> None:
        self.result.anomalies.append(Anomaly(kind, self.op_pos, message))

    # ---- reading helpers ----
    def read(self, n: int) -> memoryview:
        return self.reader.read(n, self.op_pos)

    def read_uint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "little", signed=False)

    def read_sint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "little", signed=True)

    def read_counted(self, length: int, kind: str) -> Any:
        """Bytes of a counted opcode; long ones stay in place as BytesRef."""
        if length < 0:
            raise PickleError(f"{self.op_name}: negative byte count", self.op_pos)
        self.reader._leave_frame_if_straddling(length)
        if self.reader.pos + length > len(self.data):
            raise PickleError(f"{self.op_name}: declared length {length} exceeds the remaining data", self.op_pos)
        if length > self.limits.max_inline_bytes:
            ref = BytesRef(self.reader.pos, length, kind)
            self.reader.pos += length
            return ref
        return bytes(self.read(length))

    # ---- main loop ----
    def run(self) -> PickleResult:
        res = self.result
        try:
            while True:
                self.op_pos = self.reader.pos
                if self.budget[0] <= 0:
                    raise LimitExceeded(f"more than {self.limits.max_opcodes} opcodes", self.op_pos)
                self.budget[0] -= 1
                if self.reader.pos >= len(self.data):
                    raise PickleError("pickle data was truncated (no STOP)" if self.op_pos > res.start else "ran out of input", self.op_pos)
                code = self.data[self.reader.pos]
                handler = _DISPATCH.get(code)
                if handler is None:
                    raise PickleError(f"invalid load key {bytes([code])!r}", self.op_pos)
                self.reader.pos += 1
                name, fn = handler
                self.op_name = name
                res.opcodes[name] = res.opcodes.get(name, 0) + 1
                fn(self)
        except _Stop:
            res.end = self.reader.pos
        except LimitExceeded as exc:
            res.error, res.error_pos, res.end = str(exc), exc.pos, self.reader.pos
            self.anomaly("limit", str(exc))
        except PickleError as exc:
            res.error, res.error_pos, res.end = str(exc), exc.pos, self.reader.pos
        res.protocol = self.proto
        for straddle in self.reader.straddles:
            res.anomalies.append(Anomaly("differential", straddle,
                                         "an opcode straddles a FRAME end: file-based and byte-string unpicklers "
                                         "read different opcodes here"))
        return res

    # ---- opcodes: structure ----
    def op_proto(self) -> None:
        proto = self.read(1)[0]
        if proto > HIGHEST_PROTOCOL:
            raise PickleError(f"unsupported pickle protocol: {proto}", self.op_pos)
        self.proto = proto

    def op_frame(self) -> None:
        self.reader.frame(self.read_uint(8), self.op_pos, lambda msg: self.anomaly("differential", msg))

    def op_stop(self) -> None:
        self.result.value = self.pop()
        raise _Stop

    def op_mark(self) -> None:
        if len(self.marks) >= self.limits.max_marks:
            raise LimitExceeded(f"MARK nesting above {self.limits.max_marks}", self.op_pos)
        self.marks.append(len(self.stack))

    def op_pop(self) -> None:
        if self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()
        else:
            self.pop()

    def op_pop_mark(self) -> None:
        self.pop_mark()

    def op_dup(self) -> None:
        self.push(self.top())

    # ---- opcodes: constants ----
    def op_none(self) -> None:
        self.push(None)

    def op_newtrue(self) -> None:
        self.push(True)

    def op_newfalse(self) -> None:
        self.push(False)

    def op_int(self) -> None:
        line = self.reader.readline(self.op_pos)
        if len(line) > self.limits.max_long_bytes:
            raise LimitExceeded(f"INT literal of {len(line)} bytes", self.op_pos)
        value = parse_int_line(line, self.op_pos)
        body = line[:-1]
        if not isinstance(value, bool) and body.strip(b" \t") not in (str(value).encode(), b"+" + str(value).encode()):
            self.anomaly("differential", f"INT {body[:40]!r} is read as {value} by CPython but rejected or "
                                         "read differently by pickletools-based scanners")
        self.push(value)

    def op_binint(self) -> None:
        self.push(self.read_sint(4))

    def op_binint1(self) -> None:
        self.push(self.read_uint(1))

    def op_binint2(self) -> None:
        self.push(self.read_uint(2))

    def op_long(self) -> None:
        line = self.reader.readline(self.op_pos)
        if len(line) > self.limits.max_long_bytes:
            raise LimitExceeded(f"LONG literal of {len(line)} bytes", self.op_pos)
        value = parse_long_line(line, self.op_pos)
        body = line[:-1].rstrip(b"L")
        if body.strip() != str(value).encode() and body.strip() != b"+" + str(value).encode():
            self.anomaly("differential", f"LONG {body[:40]!r} is read as {value} by CPython (base-0 parsing)")
        self.push(value)

    def _long_n(self, n: int) -> None:
        if n < 0:
            raise PickleError("LONG pickle has negative byte count", self.op_pos)
        if n > self.limits.max_long_bytes:
            raise LimitExceeded(f"{self.op_name} declares a {n}-byte integer", self.op_pos)
        self.push(int.from_bytes(self.read(n), "little", signed=True))

    def op_long1(self) -> None:
        self._long_n(self.read_uint(1))

    def op_long4(self) -> None:
        self._long_n(self.read_sint(4))

    def op_float(self) -> None:
        line = self.reader.readline(self.op_pos)
        try:
            self.push(float(line[:-1].split(b"\0", 1)[0].decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            raise PickleError("FLOAT: could not convert string to float", self.op_pos) from None

    def op_binfloat(self) -> None:
        self.push(struct.unpack(">d", self.read(8))[0])

    def _string(self, raw: Any) -> None:
        if isinstance(raw, BytesRef):
            self.push(BytesRef(raw.offset, raw.length, "str"))
        else:
            self.push(_decode_py2_string(raw))
        self.result.byte_strings.append((self.op_pos, self.stack[-1]))

    def op_string(self) -> None:
        line = self.reader.readline(self.op_pos)[:-1]
        if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
            try:
                decoded, _ = codecs.escape_decode(line[1:-1])
            except ValueError:
                raise PickleError("STRING: bad escape", self.op_pos) from None
            self._string(decoded)
        else:
            raise PickleError("the STRING opcode argument must be quoted", self.op_pos)

    def op_binstring(self) -> None:
        self._string(self.read_counted(self.read_sint(4), "bytes"))

    def op_short_binstring(self) -> None:
        self._string(self.read_counted(self.read_uint(1), "bytes"))

    def _bytes(self, n: int, kind: str = "bytes") -> None:
        value = self.read_counted(n, kind)
        if kind == "bytearray" and isinstance(value, bytes):
            value = bytearray(value)
        self.push(value)
        self.result.byte_strings.append((self.op_pos, value))

    def op_binbytes(self) -> None:
        self._bytes(self.read_uint(4))

    def op_short_binbytes(self) -> None:
        self._bytes(self.read_uint(1))

    def op_binbytes8(self) -> None:
        self._bytes(self.read_uint(8))

    def op_bytearray8(self) -> None:
        self._bytes(self.read_uint(8), "bytearray")

    def _unicode(self, raw: Any) -> None:
        if isinstance(raw, BytesRef):
            value: Any = BytesRef(raw.offset, raw.length, "str")
        else:
            try:
                value = raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise PickleError(f"{self.op_name}: invalid UTF-8", self.op_pos) from None
        self.push(value)
        self.result.byte_strings.append((self.op_pos, value))

    def op_unicode(self) -> None:
        line = self.reader.readline(self.op_pos)[:-1]
        try:
            self.push(line.decode("raw-unicode-escape"))
        except UnicodeDecodeError:
            raise PickleError("UNICODE: bad escape", self.op_pos) from None
        self.result.byte_strings.append((self.op_pos, self.stack[-1]))

    def op_binunicode(self) -> None:
        self._unicode(self.read_counted(self.read_uint(4), "str"))

    def op_short_binunicode(self) -> None:
        self._unicode(self.read_counted(self.read_uint(1), "str"))

    def op_binunicode8(self) -> None:
        self._unicode(self.read_counted(self.read_uint(8), "str"))

    def op_next_buffer(self) -> None:
        self.anomaly("out-of-band", "NEXT_BUFFER: out-of-band buffer requested")
        raise PickleError("pickle stream refers to out-of-band data but no buffers were given", self.op_pos)

    def op_readonly_buffer(self) -> None:
        self.top()

    # ---- opcodes: containers ----
    def op_empty_tuple(self) -> None:
        self.push(())

    def op_empty_list(self) -> None:
        self.push([])

    def op_empty_dict(self) -> None:
        self.push({})

    def op_empty_set(self) -> None:
        self.push(set())

    def op_tuple(self) -> None:
        self.push(tuple(self.pop_mark()))

    def _tuple_n(self, n: int) -> None:
        if len(self.stack) - self.fence < n:
            raise PickleError(f"{self.op_name}: unpickling stack underflow", self.op_pos)
        items = tuple(self.stack[len(self.stack) - n:])
        del self.stack[len(self.stack) - n:]
        self.push(items)

    def op_tuple1(self) -> None:
        self._tuple_n(1)

    def op_tuple2(self) -> None:
        self._tuple_n(2)

    def op_tuple3(self) -> None:
        self._tuple_n(3)

    def op_list(self) -> None:
        self.push(self.pop_mark())

    def op_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise PickleError("odd number of items for DICT", self.op_pos)
        result: dict[Any, Any] = {}
        for i in range(0, len(items), 2):
            self._dict_set(result, items[i], items[i + 1])
        self.push(result)

    def op_frozenset(self) -> None:
        items = self.pop_mark()
        try:
            self.push(frozenset(items))
        except TypeError:
            raise PickleError("FROZENSET: unhashable item", self.op_pos) from None

    def _dict_set(self, target: dict, key: Any, value: Any) -> None:
        try:
            target[key] = value
        except TypeError:
            raise PickleError(f"{self.op_name}: unhashable key of type {type(key).__name__}", self.op_pos) from None

    def _setitems(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, dict):
            for key, value in pairs:
                self._dict_set(target, key, value)
            return
        self._mutate(target)
        if isinstance(target, Call):
            target.setitems.extend(pairs)

    def op_setitem(self) -> None:
        value = self.pop()
        key = self.pop()
        self._setitems(self.top(), [(key, value)])

    def op_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise PickleError("odd number of items for SETITEMS", self.op_pos)
        self._setitems(self.top(), [(items[i], items[i + 1]) for i in range(0, len(items), 2)])

    def _appends(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(items)
            return
        self._mutate(target)
        if isinstance(target, Call):
            target.appends.extend(items)

    def op_append(self) -> None:
        value = self.pop()
        self._appends(self.top(), [value])

    def op_appends(self) -> None:
        items = self.pop_mark()
        self._appends(self.top(), items)

    def op_additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, set):
            try:
                target.update(items)
            except TypeError:
                raise PickleError("ADDITEMS: unhashable item", self.op_pos) from None
            return
        self._mutate(target)
        if isinstance(target, Call):
            target.appends.extend(items)

    def _mutate(self, target: Any) -> None:
        """Record an operation that runs the target's own code (``__setitem__``, ``append``, ``__setstate__``)."""
        if isinstance(target, (str, bytes, int, float, tuple, frozenset, type(None), BytesRef)):
            raise PickleError(f"{self.op_name} on an immutable {type(target).__name__}", self.op_pos)
        self.result.mutations.append(Mutation(self.op_name, target, self.op_pos))
        if isinstance(target, (Global, DynamicGlobal, ExtRef)):
            self.anomaly("global-mutation", f"{self.op_name} modifies an imported object {render(target)} "
                                            "(overwrites module or class attributes)")

    # ---- opcodes: memo ----
    def op_put(self) -> None:
        line = self.reader.readline(self.op_pos)
        try:
            key = int(line.decode("ascii"), 10)
        except (ValueError, UnicodeDecodeError):
            raise PickleError("PUT: bad index", self.op_pos) from None
        self.memo_put(key)

    def op_binput(self) -> None:
        self.memo_put(self.read_uint(1))

    def op_long_binput(self) -> None:
        self.memo_put(self.read_uint(4))

    def op_memoize(self) -> None:
        self.memo_put(len(self.memo))

    def op_get(self) -> None:
        line = self.reader.readline(self.op_pos)
        try:
            key = int(line.decode("ascii"), 10)
        except (ValueError, UnicodeDecodeError):
            raise PickleError("GET: bad index", self.op_pos) from None
        self.memo_get(key)

    def op_binget(self) -> None:
        self.memo_get(self.read_uint(1))

    def op_long_binget(self) -> None:
        self.memo_get(self.read_uint(4))

    # ---- opcodes: globals and calls ----
    def _find_class(self, module: str, name: str) -> Global:
        raw_module, raw_name = module, name
        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        ref = Global(module, name, raw_module, raw_name)
        self.result.globals.append(GlobalUse(ref, self.op_name, self.op_pos))
        return ref

    def _line_utf8(self) -> str:
        line = self.reader.readline(self.op_pos)[:-1]
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise PickleError(f"{self.op_name}: module or name is not valid UTF-8", self.op_pos) from None

    def op_global(self) -> None:
        module = self._line_utf8()
        name = self._line_utf8()
        self.push(self._find_class(module, name))

    def op_stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        if isinstance(module, str) and isinstance(name, str):
            self.push(self._find_class(module, name))
            return
        if _is_concrete(module) and _is_concrete(name):
            raise PickleError("STACK_GLOBAL requires str", self.op_pos)
        self.anomaly("dynamic-global", f"STACK_GLOBAL imports a name computed at load time: "
                                       f"module={render(module)} name={render(name)}")
        self.push(DynamicGlobal(module, name, self.op_pos))

    def _ext(self, code: int) -> None:
        if code <= 0:
            raise PickleError("EXT specifies code <= 0", self.op_pos)
        if code in self.extensions:
            ref = self.extensions[code]
            self.result.globals.append(GlobalUse(ref, self.op_name, self.op_pos))
            self.push(ref)
            return
        self.anomaly("ext", f"{self.op_name} code {code} is not in copyreg's (empty) extension registry: "
                            "it resolves only if the loading process registered it, to any global")
        self.push(ExtRef(code, self.op_pos))

    def op_ext1(self) -> None:
        self._ext(self.read_uint(1))

    def op_ext2(self) -> None:
        self._ext(self.read_uint(2))

    def op_ext4(self) -> None:
        self._ext(self.read_sint(4))

    def _call(self, func: Any, args: Any, kwargs: Any = None) -> None:
        if _is_concrete(func) and not isinstance(func, (Global,)):
            raise PickleError(f"{self.op_name}: {type(func).__name__} object is not callable", self.op_pos)
        call = Call(func, args, kwargs, self.op_name, self.op_pos)
        self.result.calls.append(call)
        self._note_special_call(call)
        self.push(call)

    def _note_special_call(self, call: Call) -> None:
        func = call.func
        if not isinstance(func, Global) or not isinstance(call.args, tuple):
            return
        if func.qualname == "copyreg.add_extension" and len(call.args) == 3:
            module, name, code = call.args
            if isinstance(module, str) and isinstance(name, str) and isinstance(code, int):
                self.extensions[code] = Global(module, name, module, name)
        if func.qualname in _ALLOC_CALLABLES and call.args and isinstance(call.args[0], int) \
                and not isinstance(call.args[0], bool) and call.args[0] > self.limits.max_alloc:
            self.anomaly("allocation", f"{render(call)} declares an allocation of {call.args[0]} units")

    def op_reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        if _is_concrete(args) and not isinstance(args, tuple):
            raise PickleError("REDUCE: argument list must be a tuple", self.op_pos)
        self._call(func, args)

    def op_newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        if _is_concrete(args) and not isinstance(args, tuple):
            raise PickleError("NEWOBJ expected an arg tuple", self.op_pos)
        self._call(cls, args)

    def op_newobj_ex(self) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        if _is_concrete(args) and not isinstance(args, tuple):
            raise PickleError("NEWOBJ_EX args argument must be a tuple", self.op_pos)
        if _is_concrete(kwargs) and not isinstance(kwargs, dict):
            raise PickleError("NEWOBJ_EX kwargs argument must be a dict", self.op_pos)
        self._call(cls, args, kwargs)

    def op_obj(self) -> None:
        items = self.pop_mark()
        if not items:
            raise PickleError("OBJ: unpickling stack underflow", self.op_pos)
        self._call(items[0], tuple(items[1:]))

    def op_inst(self) -> None:
        module = self._line_utf8()
        name = self._line_utf8()
        args = tuple(self.pop_mark())
        self._call(self._find_class(module, name), args)

    def op_build(self) -> None:
        state = self.pop()
        target = self.top()
        self._mutate(target)
        if isinstance(target, Call):
            target.state.append(state)
        self.after_build(target, state)

    def after_build(self, target: Any, state: Any) -> None:
        """Hook for readers that interleave raw bytes with opcodes (joblib writes array bytes after BUILD)."""

    def op_persid(self) -> None:
        line = self.reader.readline(self.op_pos)[:-1]
        try:
            pid: Any = line.decode("ascii")
        except UnicodeDecodeError:
            raise PickleError("persistent IDs in protocol 0 must be ASCII strings", self.op_pos) from None
        self._persistent(pid)

    def op_binpersid(self) -> None:
        self._persistent(self.pop())

    def _persistent(self, pid: Any) -> None:
        ref = PersistentId(pid, self.op_pos)
        self.result.persistent_ids.append(ref)
        self.push(ref)


def _decode_py2_string(raw: bytes) -> str | bytes:
    """STRING/BINSTRING payloads: ASCII as str (the default ``encoding``), else torch's utf-8, else bytes."""
    for encoding in ("ascii", "utf-8"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw


def _is_concrete(value: Any) -> bool:
    """True for values whose runtime type we know exactly (constants and our own containers)."""
    return isinstance(value, (str, bytes, bytearray, int, float, complex, tuple, list, dict, set, frozenset,
                              type(None), BytesRef))


_OPCODES: tuple[tuple[bytes, str, Callable[[PickleMachine], None]], ...] = (
    (b"(", "MARK", PickleMachine.op_mark), (b".", "STOP", PickleMachine.op_stop),
    (b"0", "POP", PickleMachine.op_pop), (b"1", "POP_MARK", PickleMachine.op_pop_mark),
    (b"2", "DUP", PickleMachine.op_dup), (b"F", "FLOAT", PickleMachine.op_float),
    (b"I", "INT", PickleMachine.op_int), (b"J", "BININT", PickleMachine.op_binint),
    (b"K", "BININT1", PickleMachine.op_binint1), (b"L", "LONG", PickleMachine.op_long),
    (b"M", "BININT2", PickleMachine.op_binint2), (b"N", "NONE", PickleMachine.op_none),
    (b"P", "PERSID", PickleMachine.op_persid), (b"Q", "BINPERSID", PickleMachine.op_binpersid),
    (b"R", "REDUCE", PickleMachine.op_reduce), (b"S", "STRING", PickleMachine.op_string),
    (b"T", "BINSTRING", PickleMachine.op_binstring), (b"U", "SHORT_BINSTRING", PickleMachine.op_short_binstring),
    (b"V", "UNICODE", PickleMachine.op_unicode), (b"X", "BINUNICODE", PickleMachine.op_binunicode),
    (b"a", "APPEND", PickleMachine.op_append), (b"b", "BUILD", PickleMachine.op_build),
    (b"c", "GLOBAL", PickleMachine.op_global), (b"d", "DICT", PickleMachine.op_dict),
    (b"}", "EMPTY_DICT", PickleMachine.op_empty_dict), (b"e", "APPENDS", PickleMachine.op_appends),
    (b"g", "GET", PickleMachine.op_get), (b"h", "BINGET", PickleMachine.op_binget),
    (b"i", "INST", PickleMachine.op_inst), (b"j", "LONG_BINGET", PickleMachine.op_long_binget),
    (b"l", "LIST", PickleMachine.op_list), (b"]", "EMPTY_LIST", PickleMachine.op_empty_list),
    (b"o", "OBJ", PickleMachine.op_obj), (b"p", "PUT", PickleMachine.op_put),
    (b"q", "BINPUT", PickleMachine.op_binput), (b"r", "LONG_BINPUT", PickleMachine.op_long_binput),
    (b"s", "SETITEM", PickleMachine.op_setitem), (b"t", "TUPLE", PickleMachine.op_tuple),
    (b")", "EMPTY_TUPLE", PickleMachine.op_empty_tuple), (b"u", "SETITEMS", PickleMachine.op_setitems),
    (b"G", "BINFLOAT", PickleMachine.op_binfloat),
    (b"\x80", "PROTO", PickleMachine.op_proto), (b"\x81", "NEWOBJ", PickleMachine.op_newobj),
    (b"\x82", "EXT1", PickleMachine.op_ext1), (b"\x83", "EXT2", PickleMachine.op_ext2),
    (b"\x84", "EXT4", PickleMachine.op_ext4), (b"\x85", "TUPLE1", PickleMachine.op_tuple1),
    (b"\x86", "TUPLE2", PickleMachine.op_tuple2), (b"\x87", "TUPLE3", PickleMachine.op_tuple3),
    (b"\x88", "NEWTRUE", PickleMachine.op_newtrue), (b"\x89", "NEWFALSE", PickleMachine.op_newfalse),
    (b"\x8a", "LONG1", PickleMachine.op_long1), (b"\x8b", "LONG4", PickleMachine.op_long4),
    (b"B", "BINBYTES", PickleMachine.op_binbytes), (b"C", "SHORT_BINBYTES", PickleMachine.op_short_binbytes),
    (b"\x8c", "SHORT_BINUNICODE", PickleMachine.op_short_binunicode),
    (b"\x8d", "BINUNICODE8", PickleMachine.op_binunicode8), (b"\x8e", "BINBYTES8", PickleMachine.op_binbytes8),
    (b"\x8f", "EMPTY_SET", PickleMachine.op_empty_set), (b"\x90", "ADDITEMS", PickleMachine.op_additems),
    (b"\x91", "FROZENSET", PickleMachine.op_frozenset), (b"\x92", "NEWOBJ_EX", PickleMachine.op_newobj_ex),
    (b"\x93", "STACK_GLOBAL", PickleMachine.op_stack_global), (b"\x94", "MEMOIZE", PickleMachine.op_memoize),
    (b"\x95", "FRAME", PickleMachine.op_frame), (b"\x96", "BYTEARRAY8", PickleMachine.op_bytearray8),
    (b"\x97", "NEXT_BUFFER", PickleMachine.op_next_buffer),
    (b"\x98", "READONLY_BUFFER", PickleMachine.op_readonly_buffer),
)
_DISPATCH: dict[int, tuple[str, Callable[[PickleMachine], None]]] = {code[0]: (name, fn) for code, name, fn in _OPCODES}
OPCODE_NAMES: dict[int, str] = {code[0]: name for code, name, _ in _OPCODES}


# --------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------


def run_pickle(data: bytes | memoryview, start: int = 0, limits: Limits | None = None, file_mode: bool = True,
               budget: list[int] | None = None) -> PickleResult:
    """Run one pickle starting at ``start``. Never raises on bad input: errors land in ``result.error``."""
    limits = limits or Limits()
    view = data if isinstance(data, memoryview) else memoryview(data)
    return PickleMachine(view, start, limits, file_mode, budget or [limits.max_opcodes]).run()


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
