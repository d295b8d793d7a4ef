"""The linear recovery scan: what a pickle imports and calls after the symbolic run had to stop.

When :class:`~weightaudit.formats.pickle_machine.PickleMachine` stops early (a malformed opcode, a limit, a
construct it refuses), the bytes after that point still reach a loader that is laxer, or are where a "broken
pickle" hides its payload. This scan walks the opcodes from there to the end of the buffer the way
``pickletools.genops`` does (no stack semantics), resynchronising one byte at a time on bytes that are not an
opcode, and reports every ``GLOBAL``/``INST``, every ``STACK_GLOBAL`` whose two operands are string constants it saw (memo
``PUT``/``GET`` of strings and globals followed; other operands name nothing and are skipped), every ``REDUCE``/``NEWOBJ``/``NEWOBJ_EX``/``OBJ``/``INST`` call
(attributed to the last global seen, arguments unknown). Records carry ``from_scan=True``. ``EXT`` codes and
``STACK_GLOBAL`` operands it cannot read name nothing and are skipped (a corrupt tail would otherwise produce noise
on every byte that looks like an opcode); the result keeps its error, so the file stays unverified.

Cost is linear in the bytes scanned: one step per opcode or skipped byte, at most ``Limits.max_scan_steps``.
"""

from __future__ import annotations

from typing import Any

from weightaudit.formats.pickle_machine import OPCODE_ARGS, OPCODE_NAMES
from weightaudit.formats.pickle_result import Limits, PickleResult
from weightaudit.formats.pickle_values import Anomaly, Call, Global, GlobalUse, find_class_global

__all__ = ["recover"]

_FIXED = {"": 0, "u1": 1, "u2": 2, "u4": 4, "s4": 4, "u8": 8, "f8": 8}
_COUNTED = {"n1": (1, False), "n4": (4, False), "s4n": (4, True), "n8": (8, False)}
# Opcodes that push nothing (or whose push the scan does not track as a value).
_NO_PUSH = frozenset({"MARK", "STOP", "POP", "POP_MARK", "FRAME", "BUILD", "APPEND", "APPENDS", "SETITEM",
                      "SETITEMS", "ADDITEMS", "READONLY_BUFFER"})
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING"})
_CALL_OPS = frozenset({"REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"})
_MAX_LINE = 1 << 16
_MAX_NAME = 1 << 12
_OTHER = object()          # a pushed value that is neither a string nor a global


def _dotted(text: str) -> bool:
    return 0 < len(text) <= _MAX_NAME and all(part.isidentifier() for part in text.split("."))


def _plan(shape: str, name: str) -> tuple[str, str, int, bool]:
    if shape in _FIXED:
        return name, "fixed", _FIXED[shape], False
    if shape in _COUNTED:
        return (name, "counted") + _COUNTED[shape]
    return name, shape, 0, False


# Per opcode byte: (name, "fixed" | "counted" | "line" | "2lines", argument width, signed), None for non-opcodes.
_PLAN: list[tuple[str, str, int, bool] | None] = [
    _plan(OPCODE_ARGS[code], OPCODE_NAMES[code]) if code in OPCODE_ARGS else None for code in range(256)]


class _Scan:
    def __init__(self, data: memoryview, result: PickleResult, memo: dict[int, Any], proto: int,
                 last: Global | None) -> None:
        self.data = data
        self.result = result
        self.memo = memo
        self.proto = proto
        self.recent: list[Any] = [_OTHER, _OTHER]      # the two most recently pushed values (strings, globals)
        self.last_callable: Any = last
        self.newline_at = -2                           # cached index of the next newline (-1: none left)

    # ---- reading ----
    def next_newline(self, pos: int) -> int:
        if self.newline_at == -1 or self.newline_at >= pos:
            return self.newline_at
        probe, window = pos, 1 << 12
        while probe < len(self.data):
            idx = bytes(self.data[probe:probe + window]).find(b"\n")
            if idx >= 0:
                self.newline_at = probe + idx
                return self.newline_at
            probe += window
            window = min(window * 2, 1 << 20)
        self.newline_at = -1
        return -1

    def push(self, value: Any) -> None:
        self.recent = [self.recent[1], value]

    # ---- one opcode; returns the next position, or None to resynchronise ----
    def step(self, pos: int) -> int | None:
        plan = _PLAN[self.data[pos]]
        if plan is None:
            return None
        name, kind, width, signed = plan
        if kind == "fixed":
            end = pos + 1 + width
            if end > len(self.data):
                return None
            special = _SPECIAL.get(name)
            if special is None:
                if name not in _NO_PUSH:
                    self.recent = [self.recent[1], _OTHER]
            else:
                special(self, name, pos, self.data[pos + 1:end])
            return end
        if kind == "counted":
            return self.counted(name, pos, width, signed)
        return self.lines(name, pos, 2 if kind == "2lines" else 1)

    def memo_put(self, name: str, pos: int, arg: memoryview) -> None:
        index = len(self.memo) if name == "MEMOIZE" else int.from_bytes(arg, "little")
        self.memo[index] = self.recent[1]

    def memo_get(self, name: str, pos: int, arg: memoryview) -> None:
        self.pushed(self.memo.get(int.from_bytes(arg, "little"), _OTHER))

    def proto_op(self, name: str, pos: int, arg: memoryview) -> None:
        self.proto = arg[0]

    def ext(self, name: str, pos: int, arg: memoryview) -> None:
        """An EXT code names a global only through the loading process's registry: nothing to name here."""
        self.last_callable = None
        self.push(_OTHER)

    def stack_global_op(self, name: str, pos: int, arg: memoryview) -> None:
        self.stack_global(pos)

    def call_op(self, name: str, pos: int, arg: memoryview) -> None:
        self.call(name, pos)

    def counted(self, name: str, pos: int, width: int, signed: bool) -> int | None:
        if pos + 1 + width > len(self.data):
            return None
        length = int.from_bytes(self.data[pos + 1:pos + 1 + width], "little", signed=signed)
        start = pos + 1 + width
        if length < 0 or start + length > len(self.data):
            return None
        value: Any = _OTHER
        if name in _STRING_OPS and length <= _MAX_NAME:
            try:
                value = bytes(self.data[start:start + length]).decode("utf-8")
            except UnicodeDecodeError:
                value = _OTHER
        self.push(value)
        return start + length

    def lines(self, name: str, pos: int, count: int) -> int | None:
        texts = []
        at = pos + 1
        for _ in range(count):
            newline = self.next_newline(at)
            if newline < 0 or newline - at > _MAX_LINE:
                return None
            if count == 2 or name in ("GET", "PUT", "UNICODE"):
                texts.append(bytes(self.data[at:newline]))
            at = newline + 1
        if count == 2:
            return at if self.named_global(name, pos, texts) else None
        self.line_op(name, texts[0] if texts else b"")
        return at

    def line_op(self, name: str, text: bytes) -> None:
        if name in ("GET", "PUT"):
            try:
                index = int(text.decode("ascii"), 10)
            except (UnicodeDecodeError, ValueError):
                return
            if name == "PUT":
                self.memo[index] = self.recent[1]
            else:
                self.pushed(self.memo.get(index, _OTHER))
        elif name == "UNICODE":
            self.push(text.decode("raw-unicode-escape", "replace"))
        else:
            self.push(_OTHER)

    # ---- what the scan reports ----
    def pushed(self, value: Any) -> None:
        self.push(value)
        if isinstance(value, Global):
            self.last_callable = value

    def named_global(self, name: str, pos: int, texts: list[bytes]) -> bool:
        try:
            module, attr = (t.decode("utf-8") for t in texts)
        except UnicodeDecodeError:
            return False
        if not (_dotted(module) and _dotted(attr)):
            return False
        ref = self.record_global(module, attr, name, pos)
        if name == "INST":
            self.result.calls.append(Call(ref, (), None, name, pos, from_scan=True))
            self.push(_OTHER)
        return True

    def record_global(self, module: str, attr: str, opcode: str, pos: int) -> Global:
        ref = find_class_global(module, attr, self.proto)
        self.result.globals.append(GlobalUse(ref, opcode, pos, from_scan=True))
        self.pushed(ref)
        return ref

    def stack_global(self, pos: int) -> None:
        module, attr = self.recent
        if isinstance(module, str) and isinstance(attr, str) and _dotted(module) and _dotted(attr):
            self.record_global(module, attr, "STACK_GLOBAL", pos)
            return
        # Operands the scan cannot read (computed, or bytes that only look like opcodes): nothing to name. The
        # file is unverified anyway; reporting every 0x93 byte of a corrupt tail would only add noise.
        self.last_callable = None
        self.push(_OTHER)

    def call(self, name: str, pos: int) -> None:
        if self.last_callable is not None:
            self.result.calls.append(Call(self.last_callable, (), None, name, pos, from_scan=True))
        self.push(_OTHER)


_SPECIAL = {
    "BINPUT": _Scan.memo_put, "LONG_BINPUT": _Scan.memo_put, "MEMOIZE": _Scan.memo_put,
    "BINGET": _Scan.memo_get, "LONG_BINGET": _Scan.memo_get, "PROTO": _Scan.proto_op,
    "EXT1": _Scan.ext, "EXT2": _Scan.ext, "EXT4": _Scan.ext, "STACK_GLOBAL": _Scan.stack_global_op,
    **{name: _Scan.call_op for name in _CALL_OPS},
}


def recover(data: memoryview, start: int, limits: Limits, result: PickleResult, memo: dict[int, Any],
            proto: int) -> None:
    """Scan ``data[start:]`` linearly and add what it imports and calls to ``result`` (``from_scan=True``)."""
    seed = {k: v for k, v in memo.items() if isinstance(v, (str, Global))}
    last = result.globals[-1].ref if result.globals else None
    scan = _Scan(data, result, seed, proto, last)
    result.recovered_from = start
    pos, steps, size = start, 0, len(data)
    while pos < size:
        steps += 1
        if steps > limits.max_scan_steps:
            result.anomalies.append(Anomaly("limit", pos, f"the recovery scan stopped after {limits.max_scan_steps} "
                                                          f"steps at byte {pos}; the rest was not read"))
            break
        following = scan.step(pos)
        pos = pos + 1 if following is None else following
    result.anomalies.append(Anomaly("recovered", start, f"the symbolic run stopped at byte {start} "
                                                        f"({result.error}); a linear scan read the {size - start} "
                                                        "bytes after it"))
