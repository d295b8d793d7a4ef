"""The state and main loop of the symbolic pickle machine: stack, mark stack, memo, reading helpers.

The opcode handlers live in :mod:`~weightaudit.formats.pickle_ops_values` (constants, containers, memo) and
:mod:`~weightaudit.formats.pickle_ops_calls` (globals, calls, BUILD, persistent ids); the table that maps opcode
bytes to handlers in :mod:`~weightaudit.formats.pickle_machine`. Stack semantics follow CPython's C unpickler
(``Modules/_pickle.c``): the mark stack is separate from the value stack and its top mark fences it.
"""

from __future__ import annotations

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
        inner = [i for i in made if type(i) is tuple]
        if not inner:
            self.tuple_depth.pop(id(made), None)
            return made
        depth = 1 + max([self.tuple_depth.get(id(i), 1) for i in inner])
        if depth > self.limits.max_tuple_depth:
            raise LimitExceeded(f"tuples nested more than {self.limits.max_tuple_depth} deep", self.op_pos)
        if depth > 1:
            self.tuple_depth[id(made)] = depth
        else:
            self.tuple_depth.pop(id(made), None)
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
            raise LimitExceeded(f"stack depth above {self.max_stack}", self.op_pos)
        stack.append(value)

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
        reader, data, table, budget = self.reader, self.data, self.DISPATCH, self.budget
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
            entry = table[code]
            if entry is None:
                raise PickleError(f"invalid load key {bytes([code])!r}", pos)
            reader.pos = pos + 1
            self.op_name = entry[0]
            counts[code] += 1
            entry[1](self)


# --------------------------------------------------------------------------------------------------------------
# What we know about a value's runtime type
# --------------------------------------------------------------------------------------------------------------

CONCRETE_TYPES = (str, bytes, bytearray, int, float, complex, tuple, list, dict, set, frozenset, type(None), BytesRef)


def is_concrete(value: Any) -> bool:
    """True for values whose runtime type we know exactly (constants and our own containers)."""
    return isinstance(value, CONCRETE_TYPES)
