"""Opcode handlers of the symbolic pickle machine for structure, constants, containers and the memo.

Each handler follows CPython's C unpickler (``Modules/_pickle.c``): the same argument parsing (``INT`` through C
``strtol``, ``FLOAT`` through ``PyOS_string_to_double``), the same checks and the same effect on plain containers.
Operations that would run an object's own code (``append``/``__setitem__``/``add`` on something that is not one
of our plain containers) are recorded as :class:`~weightaudit.formats.pickle_values.Mutation`.
"""

from __future__ import annotations

import codecs
import re
import struct
from typing import Any

from weightaudit.formats.pickle_core import MachineCore, Stop, is_concrete
from weightaudit.formats.pickle_ints import parse_int_line, parse_long_line
from weightaudit.formats.pickle_result import HIGHEST_PROTOCOL
from weightaudit.formats.pickle_values import (
    BytesRef, Call, DynamicGlobal, ExtRef, Global, LimitExceeded, Mutation, OutOfBandBuffer, PickleError, render,
)

__all__ = ["ValueOps"]

_U32 = struct.Struct("<I")

# PyOS_string_to_double: no whitespace, no underscores; inf/infinity/nan in any case.
_C_FLOAT = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])")


def parse_c_float(line: bytes) -> float | None:
    """The ``FLOAT`` argument as C ``load_float`` reads it; None when CPython refuses it."""
    match = _C_FLOAT.match(line)
    if match is None or line[match.end():match.end() + 1] not in (b"\n", b"\0"):
        return None
    text = match.group().decode("ascii")
    value = float(text)
    if value in (float("inf"), float("-inf")) and "n" not in text.lower():
        return None                              # OverflowError in CPython
    return value


def _decode_py2_string(raw: bytes) -> str | bytes:
    """STRING/BINSTRING payloads: ASCII as str (the default ``encoding``), else torch's utf-8, else bytes."""
    for encoding in ("ascii", "utf-8"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw


class ValueOps(MachineCore):
    # ---- structure ----
    def op_proto(self) -> None:
        proto = self.read(1)[0]
        if proto > HIGHEST_PROTOCOL:
            raise PickleError(f"unsupported pickle protocol: {proto}", self.op_pos)
        self.proto = proto

    def op_frame(self) -> None:
        self.reader.frame(self.read_uint(8), self.op_pos, lambda msg: self.anomaly("differential", msg))

    def op_stop(self) -> None:
        self.result.value = self.pop()
        raise Stop

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

    # ---- numbers ----
    def op_none(self) -> None:
        stack = self.stack
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(None)

    def op_newtrue(self) -> None:
        stack = self.stack
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(True)

    def op_newfalse(self) -> None:
        stack = self.stack
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(False)

    def op_int(self) -> None:
        line = self.readline(2)
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
        self.push(self.next_byte())

    def op_binint2(self) -> None:
        self.push(self.read_uint(2))

    def op_long(self) -> None:
        line = self.readline(2)
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
        line = self.readline(2)
        value = parse_c_float(line)
        if value is None:
            raise PickleError(f"FLOAT: could not convert {line[:40]!r} to float", self.op_pos)
        self.push(value)

    def op_binfloat(self) -> None:
        self.push(struct.unpack(">d", self.read(8))[0])

    # ---- strings and bytes ----
    def _string(self, raw: Any) -> None:
        if isinstance(raw, BytesRef):
            self.push(BytesRef(raw.offset, raw.length, "str"))
        else:
            self.push(_decode_py2_string(raw))
        self.result.byte_strings.append((self.op_pos, self.stack[-1]))

    def op_string(self) -> None:
        line = self.readline()[:-1]
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
            try:   # validate in place, bounded by the file
                bytes(self.data[raw.offset:raw.offset + raw.length]).decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise PickleError(f"{self.op_name}: invalid UTF-8", self.op_pos) from None
            value: Any = BytesRef(raw.offset, raw.length, "str")
        else:
            try:
                value = raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise PickleError(f"{self.op_name}: invalid UTF-8", self.op_pos) from None
        self.push(value)
        self.result.byte_strings.append((self.op_pos, value))

    def op_unicode(self) -> None:
        line = self.readline()[:-1]
        try:
            self.push(line.decode("raw-unicode-escape"))
        except UnicodeDecodeError:
            raise PickleError("UNICODE: bad escape", self.op_pos) from None
        self.result.byte_strings.append((self.op_pos, self.stack[-1]))

    def op_binunicode(self) -> None:
        reader, data = self.reader, self.data
        pos = reader.pos
        end = pos + 4
        if end <= len(data) and not pos < reader.frame_end < end:     # the common case, without the helpers
            stop = end + _U32.unpack_from(data, pos)[0]
            if stop <= len(data) and stop - end <= self.limits.max_inline_bytes \
                    and not (reader.file_mode and end < reader.frame_end < stop):
                try:
                    value = str(data[end:stop], "utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    raise PickleError(f"{self.op_name}: invalid UTF-8", self.op_pos) from None
                reader.pos = stop
                stack = self.stack
                if len(stack) >= self.max_stack:
                    raise self.stack_full()
                stack.append(value)
                self.result.byte_strings.append((self.op_pos, value))
                return
        self._unicode(self.read_counted(self.read_uint(4), "str"))

    def op_short_binunicode(self) -> None:
        self._unicode(self.read_counted(self.read_uint(1), "str"))

    def op_binunicode8(self) -> None:
        self._unicode(self.read_counted(self.read_uint(8), "str"))

    # ---- protocol 5 buffers ----
    def op_next_buffer(self) -> None:
        self.anomaly("out-of-band", "NEXT_BUFFER: the pickle takes an out-of-band buffer from the loading code")
        count = sum(1 for a in self.result.anomalies if a.kind == "out-of-band")
        self.push(OutOfBandBuffer(count - 1, self.op_pos))

    def op_readonly_buffer(self) -> None:
        value = self.top()
        if isinstance(value, BytesRef) and value.kind == "str" or \
                is_concrete(value) and not isinstance(value, (bytes, bytearray, BytesRef)):
            raise PickleError(f"READONLY_BUFFER: {type(value).__name__} is not a bytes-like object", self.op_pos)

    # ---- containers ----
    def op_empty_tuple(self) -> None:
        stack = self.stack
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(())

    def op_empty_list(self) -> None:
        self.push([])

    def op_empty_dict(self) -> None:
        self.push({})

    def op_empty_set(self) -> None:
        self.push(set())

    def op_tuple(self) -> None:
        marks, stack = self.marks, self.stack
        if not marks:
            raise PickleError(f"{self.op_name}: could not find MARK", self.op_pos)
        mark = marks.pop()
        made = self.make_tuple(stack[mark:])
        del stack[mark:]
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(made)

    def _tuple_n(self, n: int) -> None:
        stack, marks = self.stack, self.marks
        if len(stack) - (marks[-1] if marks else 0) < n:
            raise self.underflow()
        made = self.make_tuple(stack[-n:])
        del stack[-n:]
        stack.append(made)               # n items were popped: the stack is below its limit

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

    def op_setitem(self) -> None:
        value = self.pop()
        key = self.pop()
        self._setitems(self.top(), [(key, value)])

    def op_setitems(self) -> None:
        items = self.pop_mark()
        if not items:
            self.top()                                   # C: a mark at the bottom is an underflow; else a no-op
            return
        if len(items) % 2:
            raise PickleError("odd number of items for SETITEMS", self.op_pos)
        self._setitems(self.top(), [(items[i], items[i + 1]) for i in range(0, len(items), 2)])

    def op_append(self) -> None:
        value = self.pop()
        self._appends(self.top(), [value])

    def op_appends(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if items:
            self._appends(target, items)

    def op_additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if not items:
            return
        if isinstance(target, set):
            try:
                target.update(items)
            except TypeError:
                raise PickleError("ADDITEMS: unhashable item", self.op_pos) from None
            return
        self._refuse_concrete(target, "add")
        self._record_mutation(target, items=items)

    def _setitems(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, dict):
            for key, value in pairs:
                self._dict_set(target, key, value)
            return
        if isinstance(target, (list, bytearray)) and self._set_sequence_items(target, pairs):
            return
        self._refuse_concrete(target, "__setitem__")
        self._record_mutation(target, pairs=pairs)

    def _set_sequence_items(self, target: list | bytearray, pairs: list[tuple[Any, Any]]) -> bool:
        """``list[i] = v`` / ``bytearray[i] = v`` as CPython does them; False when a key or value is symbolic."""
        if not all(is_concrete(k) and is_concrete(v) for k, v in pairs):
            return False
        try:
            for key, value in pairs:
                target[key] = value
        except (TypeError, IndexError, ValueError) as exc:
            raise PickleError(f"{self.op_name}: {exc}", self.op_pos) from None
        return True

    def _appends(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(items)
            return
        if isinstance(target, bytearray) and all(is_concrete(i) for i in items):
            try:
                target.extend(items)
            except (TypeError, ValueError) as exc:
                raise PickleError(f"{self.op_name}: {exc}", self.op_pos) from None
            return
        self._refuse_concrete(target, "extend")
        self._record_mutation(target, items=items)

    def _refuse_concrete(self, target: Any, method: str) -> None:
        """Plain values without the method the opcode calls fail in CPython."""
        if isinstance(target, BytesRef) and target.kind == "bytearray":
            return
        if is_concrete(target) and not isinstance(target, (list, bytearray)):
            raise PickleError(f"{self.op_name}: '{type(target).__name__}' object has no attribute '{method}'",
                              self.op_pos)

    def _record_mutation(self, target: Any, items: list[Any] | None = None,
                         pairs: list[tuple[Any, Any]] | None = None, state: Any = None) -> None:
        """Record an operation that runs the target's own code (``__setitem__``, ``append``, ``__setstate__``)."""
        self.result.mutations.append(Mutation(self.op_name, target, self.op_pos))
        if isinstance(target, (Global, DynamicGlobal, ExtRef)):
            self.anomaly("global-mutation", f"{self.op_name} modifies an imported object {render(target)} "
                                            "(overwrites module or class attributes)")
        if isinstance(target, Call):             # its lists start as empty tuples (see Call)
            if items is not None:
                target.appends = target.appends if type(target.appends) is list else []
                target.appends.extend(items)
            if pairs is not None:
                target.setitems = target.setitems if type(target.setitems) is list else []
                target.setitems.extend(pairs)
            if self.op_name == "BUILD":
                target.state = target.state if type(target.state) is list else []
                target.state.append(state)

    # ---- memo ----
    def _memo_index(self) -> int:
        line = self.readline(2)
        try:
            return int(line.decode("ascii"), 10)
        except (ValueError, UnicodeDecodeError):
            raise PickleError(f"{self.op_name}: bad index", self.op_pos) from None

    def op_put(self) -> None:
        self.memo_put(self._memo_index())

    def op_binput(self) -> None:
        self.memo_put(self.next_byte())

    def op_long_binput(self) -> None:
        self.memo_put(self.read_uint(4))

    def op_memoize(self) -> None:
        self.memo_put(len(self.memo))

    def op_get(self) -> None:
        self.memo_get(self._memo_index())

    def op_binget(self) -> None:
        key = self.next_byte()
        if key not in self.memo:
            raise PickleError(f"{self.op_name}: memo value not found at index {key}", self.op_pos)
        self.push(self.memo[key])

    def op_long_binget(self) -> None:
        self.memo_get(self.read_uint(4))
