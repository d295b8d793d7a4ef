"""The state and main loop of the symbolic pickle machine: stack, mark stack, memo, reading helpers.

The opcode handlers live in :mod:`~weightaudit.formats.pickle_ops_values` (constants, containers, memo) and
:mod:`~weightaudit.formats.pickle_ops_calls` (globals, calls, BUILD, persistent ids); the table that maps opcode
bytes to handlers in :mod:`~weightaudit.formats.pickle_machine`. Stack semantics follow CPython's C unpickler
(``Modules/_pickle.c``): the mark stack is separate from the value stack and its top mark fences it.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, ClassVar, Optional

from weightaudit.formats.pickle_reader import FrameReader
from weightaudit.formats.pickle_result import Limits, PickleResult
from weightaudit.formats.pickle_values import Anomaly, BytesRef, Global, LimitExceeded, PickleError

__all__ = ["MachineCore", "Stop"]


class Stop(Exception):
    """Raised by ``STOP``: the pickle ended cleanly."""


Handler = Callable[[Any], None]


class MachineCore:
    """Runs one pickle from ``start`` over ``data``; see :func:`weightaudit.formats.pickle_vm.run_pickle`."""

    DISPATCH: ClassVar[list[Optional[tuple[str, Handler]]]] = [None] * 256
    STANDARD_DISPATCH: ClassVar[list[Optional[tuple[str, Handler]]]] = []   # pickle_machine's table (inlining)

    def __init__(self, data: memoryview, start: int, limits: Limits, file_mode: bool, budget: list[int]) -> None:
        self.reader = FrameReader(data, start, file_mode)
        self.data = data
        self.limits = limits
        self.max_stack = limits.max_stack
        self.budget = budget                 # [opcodes left], shared across stacked pickles
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.extensions: dict[int, Global] = {}
        self.result = PickleResult(start=start, end=start, mode="file" if file_mode else "bytes")
        self.op_pos = start
        self.op_name = ""
        self.tuple_depth: dict[int, int] = {}      # id -> tuple-in-tuple nesting, for tuples deeper than 1

    def make_tuple(self, items: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
        """A tuple, with its tuple-in-tuple depth bounded: hashing a deep chain recurses in C (no guard, crash)."""
        made = tuple(items)
        depths = self.tuple_depth
        depth = 0
        for item in made:
            if type(item) is tuple:
                inner = depths.get(id(item), 1) if depths else 1
                if inner > depth:
                    depth = inner
        if not depth:
            if depths:
                depths.pop(id(made), None)      # a stale entry of a freed tuple whose id was reused
            return made
        depth += 1
        if depth > self.limits.max_tuple_depth:
            raise LimitExceeded(f"tuples nested more than {self.limits.max_tuple_depth} deep", self.op_pos)
        depths[id(made)] = depth
        return made

    # ---- stack helpers (C semantics: the top mark fences the stack) ----
    @property
    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def underflow(self) -> PickleError:
        return PickleError(f"{self.op_name}: unpickling stack underflow", self.op_pos)

    def push(self, value: Any) -> None:
        stack = self.stack
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(value)

    def stack_full(self) -> LimitExceeded:
        """The error of a push onto a full stack (hot handlers append directly after checking the depth)."""
        return LimitExceeded(f"stack depth above {self.max_stack}", self.op_pos)

    def pop(self) -> Any:
        stack = self.stack
        if len(stack) <= (self.marks[-1] if self.marks else 0):
            raise self.underflow()
        return stack.pop()

    def top(self) -> Any:
        stack = self.stack
        if len(stack) <= (self.marks[-1] if self.marks else 0):
            raise self.underflow()
        return stack[-1]

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
        stack, memo = self.stack, self.memo
        if len(stack) <= (self.marks[-1] if self.marks else 0):
            raise self.underflow()
        if len(memo) >= self.limits.max_memo and key not in memo:
            raise LimitExceeded(f"memo above {self.limits.max_memo} entries", self.op_pos)
        memo[key] = stack[-1]

    def memo_get(self, key: int) -> None:
        if key not in self.memo:
            raise PickleError(f"{self.op_name}: memo value not found at index {key}", self.op_pos)
        self.push(self.memo[key])

    def anomaly(self, kind: str, message: str) -> None:
        self.result.anomalies.append(Anomaly(kind, self.op_pos, message))

    # ---- reading helpers ----
    def read(self, n: int) -> memoryview:
        return self.reader.read(n, self.op_pos)

    def next_byte(self) -> int:
        """One argument byte (a frame end cannot split a single byte)."""
        reader = self.reader
        pos = reader.pos
        if pos >= len(self.data):
            raise PickleError("pickle data was truncated", self.op_pos)
        reader.pos = pos + 1
        return self.data[pos]

    def read_uint(self, n: int) -> int:
        reader, pos = self.reader, self.reader.pos
        end = pos + n
        if end > len(self.data) or pos < reader.frame_end < end:
            return int.from_bytes(self.read(n), "little", signed=False)   # truncated, or straddling a frame
        reader.pos = end
        return self.data[pos] if n == 1 else int.from_bytes(self.data[pos:end], "little", signed=False)

    def read_sint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "little", signed=True)

    def readline(self, min_length: int = 1) -> bytes:
        """One ``\\n``-terminated line; C's unpickler calls lines shorter than ``min_length`` truncated."""
        line = self.reader.readline(self.op_pos)
        if len(line) < min_length:
            raise PickleError(f"{self.op_name}: pickle data was truncated (empty line)", self.op_pos)
        return line

    def read_counted(self, length: int, kind: str) -> Any:
        """Bytes of a counted opcode; long ones stay in place as BytesRef."""
        if length < 0:
            raise PickleError(f"{self.op_name}: negative byte count", self.op_pos)
        self.reader.leave_frame_if_straddling(length)
        if self.reader.pos + length > len(self.data):
            raise PickleError(f"{self.op_name}: declared length {length} exceeds the remaining data", self.op_pos)
        if length > self.limits.max_inline_bytes:
            ref = BytesRef(self.reader.pos, length, kind)
            self.reader.pos += length
            return ref
        return bytes(self.read(length))

    def text_of(self, ref: BytesRef) -> str:
        """The text of a long ``str`` constant left in place (valid UTF-8: the machine checked it when read)."""
        return bytes(self.data[ref.offset:ref.offset + ref.length]).decode("utf-8", "surrogatepass")

    # ---- main loop ----
    def run(self) -> PickleResult:
        res = self.result
        try:
            self._loop()
        except Stop:
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

    def _loop(self) -> None:
        counts = [0] * 256
        try:
            self._dispatch(counts)
        finally:
            table, opcodes = self.DISPATCH, self.result.opcodes
            for code, count in enumerate(counts):
                if count:
                    name = table[code][0]                       # type: ignore[index]
                    opcodes[name] = opcodes.get(name, 0) + count

    def _dispatch(self, counts: list[int]) -> None:
        """The main loop. The commonest opcodes of torch pickles (memo puts and gets, small ints, marks, small
        tuples, constants: 80% of a state dict's opcodes) run inline when their common case applies; anything
        unusual (truncation, a frame end, an empty memo slot, a missing mark, a limit) goes to the table's handler,
        which raises exactly as before. A subclass whose table replaces one of these handlers (joblib's) runs the
        table for every opcode."""
        reader, data, table, budget = self.reader, self.data, self.DISPATCH, self.budget
        stack, marks, memo, depths = self.stack, self.marks, self.memo, self.tuple_depth
        max_stack, max_memo, max_marks = self.max_stack, self.limits.max_memo, self.limits.max_marks
        standard = self.STANDARD_DISPATCH
        inline = bool(standard) and all(table[c] is standard[c] for c in INLINE_KIND_OF)
        kinds = _INLINE_KINDS if inline else _NO_INLINE
        make_tuple, u32 = self.make_tuple, _U32.unpack_from
        file_mode, max_inline, byte_strings = reader.file_mode, self.limits.max_inline_bytes, self.result.byte_strings
        size = len(data)
        while True:
            pos = reader.pos
            self.op_pos = pos
            if budget[0] <= 0:
                raise LimitExceeded(f"more than {self.limits.max_opcodes} opcodes", pos)
            budget[0] -= 1
            if pos >= size:
                raise PickleError("pickle data was truncated (no STOP)" if pos > self.result.start
                                  else "ran out of input", pos)
            code = data[pos]
            kind = kinds[code]
            if kind:
                if kind == 1:                                     # LONG_BINPUT
                    end = pos + 5
                    if end <= size and not (pos + 1 < reader.frame_end < end) \
                            and len(stack) > (marks[-1] if marks else 0):
                        key = u32(data, pos + 1)[0]
                        if len(memo) < max_memo or key in memo:
                            memo[key] = stack[-1]
                            reader.pos = end
                            counts[code] += 1
                            continue
                elif kind == 2:                                   # BINGET
                    if pos + 1 < size and len(stack) < max_stack:
                        key = data[pos + 1]
                        if key in memo:
                            stack.append(memo[key])
                            reader.pos = pos + 2
                            counts[code] += 1
                            continue
                elif kind == 3:                                   # BININT1
                    if pos + 1 < size and len(stack) < max_stack:
                        stack.append(data[pos + 1])
                        reader.pos = pos + 2
                        counts[code] += 1
                        continue
                elif kind == 4:                                   # MARK
                    if len(marks) < max_marks:
                        marks.append(len(stack))
                        reader.pos = pos + 1
                        counts[code] += 1
                        continue
                elif kind == 5:                                   # TUPLE1 of a value that is not a tuple
                    if len(stack) > (marks[-1] if marks else 0) and type(stack[-1]) is not tuple:
                        made = (stack[-1],)
                        if depths:
                            depths.pop(id(made), None)            # as make_tuple: a stale entry of a reused id
                        stack[-1] = made
                        reader.pos = pos + 1
                        counts[code] += 1
                        continue
                elif kind == 6:                                   # TUPLE
                    if marks:
                        mark = marks.pop()
                        made = make_tuple(stack[mark:])
                        del stack[mark:]
                        if len(stack) >= max_stack:
                            raise self.stack_full()
                        stack.append(made)
                        reader.pos = pos + 1
                        counts[code] += 1
                        continue
                elif kind == 7:                                   # NONE, NEWTRUE, NEWFALSE, EMPTY_TUPLE
                    if len(stack) < max_stack:
                        stack.append(_CONSTANTS[code])
                        reader.pos = pos + 1
                        counts[code] += 1
                        continue
                elif kind == 9:                                   # BINUNICODE, short and valid, inside its frame
                    start = pos + 5
                    if start <= size and not (pos + 1 < reader.frame_end < start) and len(stack) < max_stack:
                        stop = start + u32(data, pos + 1)[0]
                        if stop <= size and stop - start <= max_inline \
                                and not (file_mode and start < reader.frame_end < stop):
                            try:
                                text = str(data[start:stop], "utf-8", "surrogatepass")
                            except UnicodeDecodeError:
                                text = None                       # the handler raises the error
                            if text is not None:
                                stack.append(text)
                                byte_strings.append((pos, text))
                                reader.pos = stop
                                counts[code] += 1
                                continue
                elif kind == 8:                                   # BINPUT
                    if pos + 1 < size and len(stack) > (marks[-1] if marks else 0):
                        key = data[pos + 1]
                        if len(memo) < max_memo or key in memo:
                            memo[key] = stack[-1]
                            reader.pos = pos + 2
                            counts[code] += 1
                            continue
            entry = table[code]
            if entry is None:
                raise PickleError(f"invalid load key {bytes([code])!r}", pos)
            reader.pos = pos + 1
            self.op_name = entry[0]
            counts[code] += 1
            entry[1](self)


# Opcodes :meth:`MachineCore._dispatch` runs inline, by kind, when the machine's table holds the standard
# handlers for all of them: LONG_BINPUT, BINGET, BININT1, MARK, TUPLE1, TUPLE, the constants, BINPUT, BINUNICODE.
INLINE_KIND_OF = {0x72: 1, 0x68: 2, 0x4b: 3, 0x28: 4, 0x85: 5, 0x74: 6, 0x4e: 7, 0x88: 7, 0x89: 7, 0x29: 7, 0x71: 8,
                  0x58: 9}
_INLINE_KINDS = [INLINE_KIND_OF.get(code, 0) for code in range(256)]
_NO_INLINE = [0] * 256
_CONSTANTS: list[Any] = [None] * 256
_CONSTANTS[0x88], _CONSTANTS[0x89], _CONSTANTS[0x29] = True, False, ()
_U32 = struct.Struct("<I")


# --------------------------------------------------------------------------------------------------------------
# What we know about a value's runtime type
# --------------------------------------------------------------------------------------------------------------

CONCRETE_TYPES = (str, bytes, bytearray, int, float, complex, tuple, list, dict, set, frozenset, type(None), BytesRef)


def is_concrete(value: Any) -> bool:
    """True for values whose runtime type we know exactly (constants and our own containers)."""
    return isinstance(value, CONCRETE_TYPES)
