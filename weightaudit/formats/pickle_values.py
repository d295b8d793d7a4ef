"""The inert values the symbolic pickle machine pushes and records, and :func:`render` to show them as text.

Nothing here imports or calls anything a pickle names: :class:`Global` is a ``module.name`` reference,
:class:`Call` a call the unpickler *would* make, :class:`PersistentId` what ``persistent_load`` would receive, and
so on. :class:`Anomaly`, :class:`GlobalUse` and :class:`Mutation` are the records a run reports;
:class:`PickleError`/:class:`LimitExceeded` are how a run ends on malformed or oversized input. The machine itself
lives in :mod:`weightaudit.formats.pickle_vm`; loaders and rules read these types.
"""

from __future__ import annotations

import _compat_pickle
import functools

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Global", "DynamicGlobal", "ExtRef", "PersistentId", "BytesRef", "OutOfBandBuffer", "Call", "Mutation", "Anomaly",
    "GlobalUse", "PickleError", "LimitExceeded", "render",
]


# --------------------------------------------------------------------------------------------------------------
# Symbolic values and the records of a run
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Global:
    """An inert reference to ``module.name`` (never imported). ``raw_*`` keep the names as written."""

    module: str
    name: str
    raw_module: str = ""
    raw_name: str = ""

    @functools.cached_property
    def qualname(self) -> str:
        """``module.name``, made once per reference (a torch pickle asks 100,000 times for the same one)."""
        return f"{self.module}.{self.name}"


def find_class_global(module: str, name: str, proto: int) -> Global:
    """The reference ``Unpickler.find_class`` would resolve: protocol < 3 names go through ``_compat_pickle``'s
    Python 2 renaming (as CPython does); the names as written are kept in ``raw_*``."""
    raw_module, raw_name = module, name
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return Global(module, name, raw_module, raw_name)


@dataclass(eq=False, repr=False)
class DynamicGlobal:
    """A ``STACK_GLOBAL`` whose module or name is computed at load time (not a constant string)."""

    module: Any
    name: Any
    pos: int


@dataclass(eq=False)
class ExtRef:
    """An ``EXT1/2/4`` code that the default copyreg registry cannot resolve."""

    code: int
    pos: int


@dataclass(eq=False, repr=False, slots=True)
class PersistentId:
    """What ``PERSID``/``BINPERSID`` handed to ``persistent_load`` (torch: a storage tuple)."""

    pid: Any
    pos: int


@dataclass(eq=False)
class OutOfBandBuffer:
    """What ``NEXT_BUFFER`` takes from the loader's ``buffers`` argument (any object the loading code passes)."""

    index: int
    pos: int


@dataclass(frozen=True)
class BytesRef:
    """A long byte string left in place: ``length`` bytes at ``offset`` of the pickle buffer."""

    offset: int
    length: int
    kind: str = "bytes"   # bytes | bytearray | str


@dataclass(eq=False, repr=False, slots=True)
class Call:
    """A call the unpickler would make: ``func(*args, **kwargs)``, plus what was done to the result later.

    ``opcode`` is REDUCE, NEWOBJ, NEWOBJ_EX, OBJ or INST; ``pos`` the opcode's byte offset in the buffer.
    """

    func: Any
    args: Any
    kwargs: Any
    opcode: str
    pos: int
    # BUILD states, SETITEM(S) pairs and APPEND(S) items, in order: an empty tuple until the first one (a torch
    # pickle has 200,000 calls and almost none of these; three empty lists each were 30 MB)
    state: list[Any] | tuple[()] = ()
    setitems: list[tuple[Any, Any]] | tuple[()] = ()
    appends: list[Any] | tuple[()] = ()
    value: Any = None                                      # what a loader decided this call evaluates to
    from_scan: bool = False                                # seen by the linear recovery scan, arguments unknown


def _bounded_repr(self: Any) -> str:
    return f"<{type(self).__name__} {render(self)}>"


# repr() of a 200,000-deep chain of calls must not recurse (error messages, logs, debuggers)
DynamicGlobal.__repr__ = PersistentId.__repr__ = Call.__repr__ = _bounded_repr    # type: ignore[method-assign]


@dataclass(frozen=True)
class Mutation:
    """BUILD / SETITEM / APPEND / ADDITEMS applied to something that is not our own plain container."""

    opcode: str
    target: Any
    pos: int


@dataclass(frozen=True)
class Anomaly:
    """Something a loader or rule must report. ``kind``: limit, differential, ext, dynamic-global,
    global-mutation, persistent-id, out-of-band, allocation, recovered (the run stopped early and a linear
    scan read the rest)."""

    kind: str
    pos: int
    message: str


@dataclass(frozen=True, slots=True)
class GlobalUse:
    """One place a global was imported: the reference, the opcode, its byte offset."""

    ref: Global
    opcode: str
    pos: int
    from_scan: bool = False     # seen by the linear recovery scan after the symbolic run had stopped


# --------------------------------------------------------------------------------------------------------------
# How a run ends on malformed or oversized input
# --------------------------------------------------------------------------------------------------------------


class PickleError(Exception):
    """The pickle is malformed where CPython would raise too."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


class LimitExceeded(PickleError):
    """A resource bound of :class:`~weightaudit.formats.pickle_vm.Limits` was hit."""


# --------------------------------------------------------------------------------------------------------------
# Rendering symbolic values as Python-like text (bounded)
# --------------------------------------------------------------------------------------------------------------


def render(value: Any, depth: int = 3, width: int = 160) -> str:
    """A short, Python-like rendering of a symbolic value, e.g. ``os.system('touch x')``."""
    text = _render(value, depth)
    return text if len(text) <= width else text[:width - 3] + "..."


def _render(value: Any, depth: int) -> str:
    """Every nested call passes ``depth - 1``; below -2 only leaves are rendered, so chains of calls of calls
    (``f()()()...``, 200,000 deep) cost a few frames, never a RecursionError."""
    if isinstance(value, Global):
        return value.qualname
    if depth < -2 and isinstance(value, (Call, DynamicGlobal, PersistentId, tuple, list, dict, set, frozenset)):
        return "..."
    if isinstance(value, Call):
        if depth <= 0 or value.from_scan:
            return f"{_render(value.func, depth - 1)}(...)"
        args = value.args if isinstance(value.args, tuple) else (value.args,)
        parts = [_render(a, depth - 1) for a in args[:8]]
        if len(args) > 8:
            parts.append("...")
        if isinstance(value.kwargs, dict):
            parts.extend(f"{k}={_render(v, depth - 1)}" for k, v in list(value.kwargs.items())[:8])
        return f"{_render(value.func, depth - 1)}({', '.join(parts)})"
    if isinstance(value, DynamicGlobal):
        return f"<import {_render(value.module, depth - 1)}.{_render(value.name, depth - 1)}>"
    if isinstance(value, ExtRef):
        return f"<extension code {value.code}>"
    if isinstance(value, PersistentId):
        return f"persistent_load({_render(value.pid, depth - 1)})"
    if isinstance(value, BytesRef):
        return f"<{value.length} {value.kind} bytes>"
    if isinstance(value, OutOfBandBuffer):
        return f"<out-of-band buffer {value.index}>"
    if isinstance(value, (str, bytes, bytearray)):
        return repr(value[:120]) + ("..." if len(value) > 120 else "")
    if isinstance(value, (int, float, bool, complex, type(None))):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if depth <= 0:
        return "..."
    if isinstance(value, tuple):
        inner = ", ".join(_render(v, depth - 1) for v in value[:8]) + (", ..." if len(value) > 8 else "")
        return f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v, depth - 1) for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(_render(v, depth - 1) for v in list(value)[:8]) + "}"
    if isinstance(value, dict):
        items = list(value.items())[:8]
        body = ", ".join(f"{_render(k, depth - 1)}: {_render(v, depth - 1)}" for k, v in items)
        return "{" + body + (", ...}" if len(value) > 8 else "}")
    return f"<{type(value).__name__}>"
