"""Opcode handlers of the symbolic pickle machine that import and call: ``GLOBAL``, ``STACK_GLOBAL``, ``EXT*``,
``REDUCE``, ``NEWOBJ(_EX)``, ``OBJ``, ``INST``, ``BUILD`` and the persistent ids.

Nothing is imported and nothing is called: globals become :class:`~weightaudit.formats.pickle_values.Global`
references, calls :class:`~weightaudit.formats.pickle_values.Call` records. The checks CPython makes before it
imports or calls (``STACK_GLOBAL requires str``, argument tuples, ``BUILD`` state shapes) are made here the same way.
"""

from __future__ import annotations

from typing import Any

from weightaudit.formats.pickle_core import is_concrete
from weightaudit.formats.pickle_ops_values import ValueOps
from weightaudit.formats.pickle_values import (
    BytesRef, Call, DynamicGlobal, ExtRef, Global, GlobalUse, PersistentId, PickleError, find_class_global, render,
)

__all__ = ["CallOps"]

_ALLOC_CALLABLES = frozenset({"builtins.bytearray", "builtins.bytes", "builtins.range", "builtins.list",
                              "numpy.zeros", "numpy.ones", "numpy.empty", "numpy.full"})
_SPECIAL_CALLABLES = _ALLOC_CALLABLES | {"copyreg.add_extension"}     # what _note_special_call looks at


class CallOps(ValueOps):
    # ---- imports ----
    def _find_class(self, module: str, name: str) -> Global:
        ref = find_class_global(module, name, self.proto)
        self.result.globals.append(GlobalUse(ref, self.op_name, self.op_pos))
        return ref

    def _line_utf8(self) -> str:
        line = self.readline(2)[:-1]
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise PickleError(f"{self.op_name}: module or name is not valid UTF-8", self.op_pos) from None

    def op_global(self) -> None:
        module = self._line_utf8()
        name = self._line_utf8()
        self.push(self._find_class(module, name))

    def _as_str(self, value: Any) -> Any:
        return self.text_of(value) if isinstance(value, BytesRef) and value.kind == "str" else value

    def op_stack_global(self) -> None:
        name = self._as_str(self.pop())
        module = self._as_str(self.pop())
        if isinstance(module, str) and isinstance(name, str):
            self.push(self._find_class(module, name))
            return
        if any(is_concrete(v) and not isinstance(v, str) for v in (module, name)):
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

    # ---- calls ----
    def _call(self, func: Any, args: Any, kwargs: Any = None) -> None:
        if type(func) is not Global and is_concrete(func):
            raise PickleError(f"{self.op_name}: {type(func).__name__} object is not callable", self.op_pos)
        call = Call(func, args, kwargs, self.op_name, self.op_pos)
        self.result.calls.append(call)
        if type(func) is Global and type(args) is tuple and func.qualname in _SPECIAL_CALLABLES:
            self._note_special_call(call)
        stack = self.stack
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(call)

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
        stack, marks = self.stack, self.marks
        if len(stack) - (marks[-1] if marks else 0) < 2:
            raise self.underflow()
        args = stack.pop()
        func = stack.pop()
        if not isinstance(args, tuple) and is_concrete(args):
            raise PickleError("REDUCE: argument list must be a tuple", self.op_pos)
        self._call(func, args)

    def op_newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        if is_concrete(args) and not isinstance(args, tuple):
            raise PickleError("NEWOBJ expected an arg tuple", self.op_pos)
        self._call(cls, args)

    def op_newobj_ex(self) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        if is_concrete(args) and not isinstance(args, tuple):
            raise PickleError("NEWOBJ_EX args argument must be a tuple", self.op_pos)
        if is_concrete(kwargs) and not isinstance(kwargs, dict):
            raise PickleError("NEWOBJ_EX kwargs argument must be a dict", self.op_pos)
        self._call(cls, args, kwargs)

    def op_obj(self) -> None:
        items = self.pop_mark()
        if not items:
            raise self.underflow()
        self._call(items[0], self.make_tuple(items[1:]))

    def op_inst(self) -> None:
        module = self._line_utf8()
        name = self._line_utf8()
        args = self.make_tuple(self.pop_mark())
        self._call(self._find_class(module, name), args)

    # ---- BUILD: __setstate__, or __dict__ and slot updates ----
    def op_build(self) -> None:
        state = self.pop()
        target = self.top()
        if is_concrete(target):
            self._build_plain(state)
            return
        self._record_mutation(target, state=state)

    def _build_plain(self, state: Any) -> None:
        """BUILD on one of our plain values (no ``__setstate__``, no ``__dict__``), as C ``load_build`` does it."""
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        if state is not None and is_concrete(state):
            if not isinstance(state, dict):
                raise PickleError("state is not a dictionary", self.op_pos)
            raise PickleError("BUILD: the object has no __dict__", self.op_pos)
        if slots is not None and is_concrete(slots):
            if not isinstance(slots, dict):
                raise PickleError("slot state is not a dictionary", self.op_pos)
            if slots:
                raise PickleError("BUILD: the object has no attributes to set", self.op_pos)

    # ---- persistent ids ----
    def op_persid(self) -> None:
        line = self.readline()[:-1]
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
        stack = self.stack
        if len(stack) >= self.max_stack:
            raise self.stack_full()
        stack.append(ref)
