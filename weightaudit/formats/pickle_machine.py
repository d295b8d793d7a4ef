"""The symbolic pickle machine: the opcode table of protocols 0–5 bound to the handlers.

:class:`PickleMachine` combines :class:`~weightaudit.formats.pickle_core.MachineCore` (stack, memo, main loop) with
the handlers of :mod:`~weightaudit.formats.pickle_ops_values` and :mod:`~weightaudit.formats.pickle_ops_calls`.
:data:`OPCODES` lists every opcode (byte, name, handler); the recovery scan reads the argument shapes from
:data:`OPCODE_ARGS`.
"""

from __future__ import annotations

from typing import Callable

from weightaudit.formats.pickle_ops_calls import CallOps

__all__ = ["PickleMachine", "OPCODES", "OPCODE_NAMES", "OPCODE_ARGS"]


class PickleMachine(CallOps):
    """Runs one pickle from ``start`` over ``data``; see :func:`weightaudit.formats.pickle_vm.run_pickle`."""


M = PickleMachine
# (byte, name, handler, argument shape): "" none, "u1/u2/u4/s4/u8" fixed ints, "line" one text line, "2lines"
# module and name lines, "n1/n4/s4n/n8" a length-counted payload (1, 4 unsigned, 4 signed, 8 byte length).
OPCODES: tuple[tuple[int, str, Callable[[PickleMachine], None], str], ...] = (
    (0x28, "MARK", M.op_mark, ""), (0x2e, "STOP", M.op_stop, ""), (0x30, "POP", M.op_pop, ""),
    (0x31, "POP_MARK", M.op_pop_mark, ""), (0x32, "DUP", M.op_dup, ""), (0x46, "FLOAT", M.op_float, "line"),
    (0x49, "INT", M.op_int, "line"), (0x4a, "BININT", M.op_binint, "s4"), (0x4b, "BININT1", M.op_binint1, "u1"),
    (0x4c, "LONG", M.op_long, "line"), (0x4d, "BININT2", M.op_binint2, "u2"), (0x4e, "NONE", M.op_none, ""),
    (0x50, "PERSID", M.op_persid, "line"), (0x51, "BINPERSID", M.op_binpersid, ""),
    (0x52, "REDUCE", M.op_reduce, ""), (0x53, "STRING", M.op_string, "line"),
    (0x54, "BINSTRING", M.op_binstring, "s4n"), (0x55, "SHORT_BINSTRING", M.op_short_binstring, "n1"),
    (0x56, "UNICODE", M.op_unicode, "line"), (0x58, "BINUNICODE", M.op_binunicode, "n4"),
    (0x61, "APPEND", M.op_append, ""), (0x62, "BUILD", M.op_build, ""), (0x63, "GLOBAL", M.op_global, "2lines"),
    (0x64, "DICT", M.op_dict, ""), (0x7d, "EMPTY_DICT", M.op_empty_dict, ""), (0x65, "APPENDS", M.op_appends, ""),
    (0x67, "GET", M.op_get, "line"), (0x68, "BINGET", M.op_binget, "u1"), (0x69, "INST", M.op_inst, "2lines"),
    (0x6a, "LONG_BINGET", M.op_long_binget, "u4"), (0x6c, "LIST", M.op_list, ""),
    (0x5d, "EMPTY_LIST", M.op_empty_list, ""), (0x6f, "OBJ", M.op_obj, ""), (0x70, "PUT", M.op_put, "line"),
    (0x71, "BINPUT", M.op_binput, "u1"), (0x72, "LONG_BINPUT", M.op_long_binput, "u4"),
    (0x73, "SETITEM", M.op_setitem, ""), (0x74, "TUPLE", M.op_tuple, ""),
    (0x29, "EMPTY_TUPLE", M.op_empty_tuple, ""), (0x75, "SETITEMS", M.op_setitems, ""),
    (0x47, "BINFLOAT", M.op_binfloat, "f8"), (0x80, "PROTO", M.op_proto, "u1"), (0x81, "NEWOBJ", M.op_newobj, ""),
    (0x82, "EXT1", M.op_ext1, "u1"), (0x83, "EXT2", M.op_ext2, "u2"), (0x84, "EXT4", M.op_ext4, "s4"),
    (0x85, "TUPLE1", M.op_tuple1, ""), (0x86, "TUPLE2", M.op_tuple2, ""), (0x87, "TUPLE3", M.op_tuple3, ""),
    (0x88, "NEWTRUE", M.op_newtrue, ""), (0x89, "NEWFALSE", M.op_newfalse, ""),
    (0x8a, "LONG1", M.op_long1, "n1"), (0x8b, "LONG4", M.op_long4, "s4n"),
    (0x42, "BINBYTES", M.op_binbytes, "n4"), (0x43, "SHORT_BINBYTES", M.op_short_binbytes, "n1"),
    (0x8c, "SHORT_BINUNICODE", M.op_short_binunicode, "n1"), (0x8d, "BINUNICODE8", M.op_binunicode8, "n8"),
    (0x8e, "BINBYTES8", M.op_binbytes8, "n8"), (0x8f, "EMPTY_SET", M.op_empty_set, ""),
    (0x90, "ADDITEMS", M.op_additems, ""), (0x91, "FROZENSET", M.op_frozenset, ""),
    (0x92, "NEWOBJ_EX", M.op_newobj_ex, ""), (0x93, "STACK_GLOBAL", M.op_stack_global, ""),
    (0x94, "MEMOIZE", M.op_memoize, ""), (0x95, "FRAME", M.op_frame, "u8"),
    (0x96, "BYTEARRAY8", M.op_bytearray8, "n8"), (0x97, "NEXT_BUFFER", M.op_next_buffer, ""),
    (0x98, "READONLY_BUFFER", M.op_readonly_buffer, ""),
)
OPCODE_NAMES: dict[int, str] = {code: name for code, name, _, _ in OPCODES}
OPCODE_ARGS: dict[int, str] = {code: shape for code, _, _, shape in OPCODES}
PickleMachine.DISPATCH = [None] * 256
for _code, _name, _handler, _ in OPCODES:
    PickleMachine.DISPATCH[_code] = (_name, _handler)
PickleMachine.STANDARD_DISPATCH = PickleMachine.DISPATCH
