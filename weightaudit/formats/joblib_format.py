"""joblib's own pickle layout, read as ``joblib.load`` reads it (``joblib/numpy_pickle.py``).

``joblib.dump`` pickles each numpy array as a ``NumpyArrayWrapper`` (NEWOBJ + BUILD of a dict with ``subclass``,
``shape``, ``order``, ``dtype``, ``allow_mmap`` and, since joblib 1.2, ``numpy_array_alignment_bytes``) and writes
the array's bytes straight into the file right after that BUILD: one padding-length byte and that many padding
bytes (when the alignment attribute is not None), then ``prod(shape) * itemsize`` raw bytes, or, for object
dtypes, a whole second pickle (``pickle.load`` on the same file). joblib's unpickler reads them as soon as the
BUILD leaves a wrapper on the stack and then carries on with the next opcode.

:class:`JoblibMachine` is the symbolic pickle machine with that one step added (its BUILD handler wrapped), so a
joblib file is one pickle stream with holes: the arrays become tensors (zero-copy byte ranges), object arrays'
pickles are scanned, and a wrapper that cannot be read the way joblib reads it stops the run (not verified).
Old joblib (< 0.10) ``NDArrayWrapper``/``ZNDArrayWrapper`` name a sibling file instead; a name that is not a
plain file name in the same folder is WA159.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightaudit.formats.numpy_header import describe_dtype
from weightaudit.formats.pickle_values import Call, Global, PickleError
from weightaudit.formats.pickle_recover import recover
from weightaudit.formats.pickle_vm import Limits, PickleMachine, PickleResult, scan_pickle
from weightaudit.model import TensorInfo

__all__ = ["ARRAY_WRAPPERS", "COMPAT_WRAPPERS", "JoblibArray", "JoblibMachine", "scan_joblib_pickle"]

_PREFIXES = ("joblib.numpy_pickle", "sklearn.externals.joblib.numpy_pickle")
ARRAY_WRAPPERS = frozenset(f"{p}.NumpyArrayWrapper" for p in _PREFIXES)
COMPAT_WRAPPERS = frozenset(f"{p}{c}.{n}" for p in _PREFIXES for c in ("", "_compat")
                            for n in ("NDArrayWrapper", "ZNDArrayWrapper"))
NUMPY_ARRAY_CLASSES = frozenset({"numpy.ndarray", "numpy.matrix", "numpy.memmap", "numpy.core.memmap.memmap",
                                 "numpy._core.memmap.memmap", "numpy.matrixlib.defmatrix.matrix"})
_WRAPPER_FIELDS = ("subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes")


@dataclass(frozen=True)
class JoblibArray:
    """One array joblib would read: where its bytes are, what they hold, the wrapper's own problems."""

    index: int
    wrapper: Call
    begin: int
    end: int
    dtype: str | None
    shape: tuple[int, ...]
    byte_order: str
    subclass: str
    pickle: PickleResult | None = None     # object arrays: the pickle joblib unpickles in place


@dataclass
class JoblibRun:
    """Everything :func:`scan_joblib_pickle` found besides the pickle result itself."""

    arrays: list[JoblibArray] = field(default_factory=list)
    compat_files: list[tuple[int, str]] = field(default_factory=list)   # (pos, file name) of old wrappers


class JoblibMachine(PickleMachine):
    """The pickle machine plus joblib's read-the-array-after-BUILD step (its own opcode table, BUILD wrapped)."""

    def __init__(self, *args: Any, run: JoblibRun, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.joblib = run

    def after_build(self, target: Any) -> None:
        if not (isinstance(target, Call) and isinstance(target.func, Global)):
            return
        name = target.func.qualname
        if name in ARRAY_WRAPPERS:
            self._read_array(target)
        elif name in COMPAT_WRAPPERS:
            attrs = _wrapper_attrs(target, ("filename", "subclass", "allow_mmap"))
            self.joblib.compat_files.append((self.op_pos, attrs.get("filename")))

    def _read_array(self, wrapper: Call) -> None:
        attrs = _wrapper_attrs(wrapper, _WRAPPER_FIELDS)
        shape, dtype = attrs.get("shape"), _dtype_of(attrs.get("dtype"))
        if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
            raise PickleError(f"joblib array wrapper has an unreadable shape {shape!r}", self.op_pos)
        if dtype is None:
            raise PickleError("joblib array wrapper has a dtype joblib's reader cannot be followed through",
                              self.op_pos)
        reader = self.reader
        if reader.file_mode and reader.pos < reader.frame_end:
            raise PickleError("joblib array wrapper built inside a pickle frame (joblib reads the array from "
                              "after the frame)", self.op_pos)
        subclass = attrs.get("subclass")
        label = subclass.qualname if isinstance(subclass, Global) else repr(subclass)[:80]
        kind, itemsize, has_object, order = dtype
        if has_object:
            self._read_object_array(wrapper, shape, label)
            return
        if attrs.get("numpy_array_alignment_bytes", None) is not None:
            padding = self.read(1)[0]
            self.read(padding)
        count = 1
        for dim in shape:
            count *= dim
        begin = reader.pos
        self.read(count * itemsize)
        self.joblib.arrays.append(JoblibArray(len(self.joblib.arrays), wrapper, begin, reader.pos, kind, shape,
                                              order, label))

    def _read_object_array(self, wrapper: Call, shape: tuple[int, ...], label: str) -> None:
        inner = scan_pickle(self.data, self.reader.pos, self.limits, self.budget)
        if not inner.ok:
            raise PickleError(f"joblib object array pickle: {inner.error}", inner.error_pos or self.op_pos)
        begin = self.reader.pos
        self.reader.pos = inner.end
        self.joblib.arrays.append(JoblibArray(len(self.joblib.arrays), wrapper, begin, inner.end, None, shape,
                                              "little", label, inner))


_BUILD = 0x62
_PLAIN_BUILD = PickleMachine.DISPATCH[_BUILD]


def _build_then_read(machine: JoblibMachine) -> None:
    """BUILD as the plain machine does it, then joblib's read of the array the wrapper describes."""
    target = machine.stack[-2] if len(machine.stack) - machine.fence >= 2 else None
    _PLAIN_BUILD[1](machine)
    machine.after_build(target)


JoblibMachine.DISPATCH = list(PickleMachine.DISPATCH)
JoblibMachine.DISPATCH[_BUILD] = ("BUILD", _build_then_read)


def _wrapper_attrs(wrapper: Call, positional: tuple[str, ...]) -> dict[str, Any]:
    """The wrapper's attributes as joblib would see them: constructor arguments, then every BUILD state dict."""
    attrs: dict[str, Any] = {}
    if isinstance(wrapper.args, tuple):
        attrs.update(zip(positional, wrapper.args))
    if isinstance(wrapper.kwargs, dict):
        attrs.update({k: v for k, v in wrapper.kwargs.items() if isinstance(k, str)})
    for state in wrapper.state:
        if isinstance(state, dict):
            attrs.update({k: v for k, v in state.items() if isinstance(k, str)})
        elif isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            attrs.update({k: v for k, v in state[1].items() if isinstance(k, str)})
    return attrs


def _dtype_of(value: Any) -> tuple[str | None, int, bool, str] | None:
    """(our dtype name or None, item size, holds objects, byte order) of a pickled ``numpy.dtype(...)``."""
    if not (isinstance(value, Call) and isinstance(value.func, Global) and value.func.name == "dtype"
            and value.func.module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")):
        return None
    args = value.args if isinstance(value.args, tuple) else ()
    if not args or not isinstance(args[0], str):
        return None
    state = value.state[-1] if value.state and isinstance(value.state[-1], tuple) else ()
    flags = state[7] if len(state) > 7 and type(state[7]) is int else 0
    order = "big" if len(state) > 1 and state[1] == ">" else "little"
    code = args[0]
    info = describe_dtype(code)
    has_object = info.has_object or bool(flags & 1)
    if has_object:
        return None, 8, True, order
    size = _itemsize(code, state)
    if size is None:
        return None
    return info.dtype, size, False, order


def _itemsize(code: str, state: tuple) -> int | None:
    """Bytes per element: the state's elsize for flexible/structured types, else the digits of the code."""
    if len(state) > 5 and type(state[5]) is int and state[5] > 0:
        return state[5]
    digits = code.lstrip("<>|=")[1:]
    if digits.isdigit() and code.lstrip("<>|=")[:1] in "biufcSVMm?" and 0 < int(digits) <= 1 << 20:
        return int(digits) * (4 if code.lstrip("<>|=")[:1] == "U" else 1)
    return None


def scan_joblib_pickle(data: memoryview, start: int, limits: Limits, budget: list[int]) -> tuple[PickleResult, JoblibRun]:
    """Run one pickle as joblib's unpickler does (array bytes skipped where joblib reads them)."""
    run = JoblibRun()
    machine = JoblibMachine(data, start, limits, True, budget, run=run)
    result = machine.run()
    if result.error is not None:      # as run_pickle does: what the rest of the buffer imports and calls
        at = result.error_pos if result.error_pos is not None else result.end
        recover(data, max(at, start), limits, result, machine.memo, machine.proto)
    straddles = any(a.kind == "differential" and "straddles" in a.message for a in result.anomalies)
    if straddles and not run.arrays:
        return scan_pickle(data, start, limits, budget), run    # both readings of a straddling frame, merged
    return result, run


def array_tensors(run: JoblibRun, rel: str, names: dict[int, str]) -> list[TensorInfo]:
    """Tensors of the numeric arrays (their bytes lie contiguously in the file)."""
    tensors = []
    for array in run.arrays:
        if array.dtype is None or array.pickle is not None:
            continue
        name = names.get(id(array.wrapper), f"array{array.index}")
        tensors.append(TensorInfo(name=name, dtype=array.dtype, shape=array.shape, file=rel,
                                  data_offsets=(array.begin, array.end), byte_order=array.byte_order))
    return tensors
