"""Tensors of a PyTorch pickle: find them in the symbolic object graph and locate their bytes.

- :class:`TensorCollector` walks the value a pickle builds and names every tensor rebuild call with a dotted path
  (``model.layer.weight``; optimizer state gets :attr:`Role.OPTIMIZER`).
- :func:`storage_from_pid` turns torch's ``('storage', type, key, location, numel[, view])`` persistent id into a
  :class:`Storage`, through a ``lookup`` the loader provides (zip record or legacy storage list).
- :func:`build_tensors` checks each :class:`TensorSpec` against its storage (WA145/WA146), makes the
  :class:`~weightaudit.model.TensorInfo` records and remembers each tensor's :class:`TensorLayout`, from which
  :func:`iter_layout_chunks` streams strided, compressed or big-endian tensors (both in ``torch_layout``,
  re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightaudit.formats.pickle_values import BytesRef, Call, Global, PersistentId, render
from weightaudit.formats.torch_layout import (TENSOR_LAYOUTS, TensorLayout, contiguous_strides, is_contiguous,
                                              iter_layout_chunks)
from weightaudit.formats.zipread import ZipEntry
from weightaudit.model import DTYPE_BITS, Finding, Role, Severity, TensorInfo, element_count
from weightaudit.rules import pickle_rules as R

__all__ = [
    "STORAGE_DTYPES", "TORCH_DTYPES", "itemsize", "Storage", "TensorSpec", "Inventory", "TensorCollector",
    "storage_from_pid", "as_int_tuple", "TensorLayout", "TENSOR_LAYOUTS", "is_contiguous", "contiguous_strides", "build_tensors",
    "iter_layout_chunks",
]

# storage class name -> dtype code
STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
    "BoolStorage": "BOOL", "ComplexFloatStorage": "C64", "ComplexDoubleStorage": "C128",
    "QInt8Storage": "QI8", "QUInt8Storage": "QU8", "QInt32Storage": "QI32", "UntypedStorage": "U8",
}
# torch dtype global name -> dtype code
TORCH_DTYPES: dict[str, str] = {
    "float32": "F32", "float": "F32", "float64": "F64", "double": "F64", "float16": "F16", "half": "F16",
    "bfloat16": "BF16", "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16",
    "short": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
    "bool": "BOOL", "complex32": "C32", "chalf": "C32", "complex64": "C64", "cfloat": "C64",
    "complex128": "C128", "cdouble": "C128", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
    "qint8": "QI8", "quint8": "QU8", "qint32": "QI32",
}
_TENSOR_REBUILDERS = frozenset({"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
                                "torch._utils._rebuild_tensor_v3"})
_PARAMETER_REBUILDERS = frozenset({"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
                                   "torch.nn.parameter.Parameter"})
_UNSUPPORTED_REBUILDERS = frozenset({"torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_wrapper_subclass",
                                     "torch._utils._rebuild_device_tensor_from_numpy",
                                     "torch._utils._rebuild_device_tensor_from_cpu_tensor"})
# torch/_utils.py _rebuild_sparse_tensor: the component tensors of each layout, in the order torch saves them
_SPARSE_COMPONENTS: dict[str, tuple[str, ...]] = {
    "sparse_coo": ("indices", "values"),
    "sparse_csr": ("crow_indices", "col_indices", "values"), "sparse_bsr": ("crow_indices", "col_indices", "values"),
    "sparse_csc": ("ccol_indices", "row_indices", "values"), "sparse_bsc": ("ccol_indices", "row_indices", "values"),
}
_PER_CHANNEL_QSCHEMES = frozenset({"per_channel_affine", "per_channel_symmetric", "per_channel_affine_float_qparams"})
_MODULE_SEGMENTS = frozenset({"_parameters", "_buffers", "_modules"})
_DICT_TYPES = frozenset({"collections.OrderedDict", "builtins.dict", "collections.defaultdict"})


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def itemsize(dtype: str) -> int:
    return max(DTYPE_BITS.get(dtype, 8) // 8, 1)


# ==============================================================================================================
# Storages and tensors from the symbolic graph
# ==============================================================================================================


@dataclass(frozen=True)
class Storage:
    """A storage record as the pickle declares it and as the file holds it."""

    key: str
    dtype: str                 # dtype of the storage's elements (U8 for untyped storages)
    numel: int                 # declared element count
    location: str
    data_offset: int | None    # absolute offset of the record's bytes (None: compressed / missing)
    available: int | None      # bytes present in the record (None: record missing)
    record: str                # member name (zip) or "storage <key>" (legacy)
    entry: ZipEntry | None = None
    view_offset: int = 0       # legacy view_metadata: element offset into the root storage


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as torch would rebuild it."""

    name: str
    storage: Storage
    dtype: str
    offset: int                # in elements of ``dtype``
    size: tuple[int, ...]
    stride: tuple[int, ...]
    role: Role


@dataclass
class Inventory:
    tensors: list[TensorSpec] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)   # (name, rebuild function)
    problems: list[str] = field(default_factory=list)
    truncated: bool = False


def as_int_tuple(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, Call) and isinstance(value.func, Global) and value.func.qualname == "torch.Size" \
            and isinstance(value.args, tuple) and value.args:
        value = value.args[0]
    if not isinstance(value, (tuple, list)):
        return None
    for item in value:
        if type(item) is not int and not (isinstance(item, int) and not isinstance(item, bool)):
            return None
    return tuple(value)


def _key_text(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, (str, int, float, bool)) or key is None:
        return str(key)
    return render(key, depth=1, width=60)


_MAX_WRAPPERS = 32     # Parameter(Parameter(...)) / subclass wrappers, and tensors inside tensors
MAX_NAME = 512          # characters of a dotted tensor name; deeper paths are shortened, not copied per level


def _join(prefix: str, key: str, serial: int = 0) -> str:
    """``prefix.key``; past MAX_NAME characters a bounded ``head...key#serial`` (unique, constant size), so a
    pickle nested 200,000 deep costs linear time and memory instead of copying ever longer prefixes."""
    if len(prefix) + len(key) < MAX_NAME:
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix[:MAX_NAME // 2]}...{key[:64]}#{serial}"


def _named_children(pairs: Any, optimizer: bool) -> list[tuple[str | None, Any, bool]]:
    """(key text, value, optimizer state?) of a mapping's items; each key rendered once."""
    out: list[tuple[str | None, Any, bool]] = []
    for key, value in pairs:
        text = _key_text(key)
        out.append((text, value, optimizer or "optim" in text.lower()))
    return out


def _is_optimizer_dict(value: dict) -> bool:
    return "state" in value and "param_groups" in value


class TensorCollector:
    """Walks the object graph iteratively, naming tensors with dotted paths (bounded work, cycle-safe)."""

    def __init__(self, resolve: Any, max_visits: int = 20_000_000) -> None:
        self.resolve = resolve      # PersistentId -> Storage | str (problem)
        self.inventory = Inventory()
        self.visits_left = max_visits
        self.nesting = 0            # sparse/quantized component tensors inside tensors, bounded

    def collect(self, root: Any) -> Inventory:
        """Each container is expanded once (a memo graph with 2**60 paths costs its size, not its paths); a tensor
        reached through several containers (tied weights) is named once per reference."""
        stack: list[tuple[str, Any, bool]] = [("", root, False)]
        expanded: set[int] = set()
        serial = 0
        while stack:
            name, value, optimizer = stack.pop()
            self.visits_left -= 1
            if self.visits_left < 0:
                self.inventory.truncated = True
                self.inventory.problems.append("object graph too large to walk completely")
                break
            if isinstance(value, (str, bytes, int, float, bool, type(None), BytesRef, Global)):
                continue
            if id(value) in expanded:
                continue
            if isinstance(value, Call) and self._tensor(name, value, optimizer):
                continue
            children = self._children(value, optimizer)
            expanded.add(id(value))
            for key, child, child_opt in reversed(children):
                serial += 1
                stack.append((_join(name, key, serial) if key is not None else name, child, child_opt))
        return self.inventory

    def _children(self, value: Any, optimizer: bool) -> list[tuple[str | None, Any, bool]]:
        if isinstance(value, dict):
            opt = optimizer or _is_optimizer_dict(value)
            return _named_children(value.items(), opt)
        if isinstance(value, (list, tuple)):
            return [(str(i), v, optimizer) for i, v in enumerate(value)]
        if isinstance(value, Call):
            setitems = list(value.setitems)
            if isinstance(value.func, Global) and value.func.qualname in _DICT_TYPES and isinstance(value.args, tuple) \
                    and value.args and isinstance(value.args[0], (list, tuple)):
                setitems = [tuple(p) for p in value.args[0] if isinstance(p, (list, tuple)) and len(p) == 2] + setitems
            pairs = dict((k, v) for k, v in setitems if _hashable(k))
            children: list[tuple[str | None, Any, bool]] = []
            opt = optimizer or _is_optimizer_dict(pairs)
            children += _named_children(setitems, opt)
            children += [(str(i), v, optimizer) for i, v in enumerate(value.appends)]
            for state in value.state:
                parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
                for part in parts:
                    if isinstance(part, dict):
                        for k, v in part.items():
                            key = _key_text(k)
                            children.append((None if key in _MODULE_SEGMENTS else key, v,
                                             optimizer or "optim" in key.lower()))
            return children
        return []

    def _tensor(self, name: str, call: Call, optimizer: bool) -> bool:
        """Emit the tensor when ``call`` rebuilds one; True when the call was a tensor (handled)."""
        for _ in range(_MAX_WRAPPERS):        # subclass/parameter wrappers, unwrapped in a loop (no recursion)
            func = call.func.qualname if isinstance(call.func, Global) else ""
            args = call.args if isinstance(call.args, tuple) else ()
            if func == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[2], tuple):
                call = Call(args[0], args[2], None, call.opcode, call.pos)
            elif func in _PARAMETER_REBUILDERS and args and isinstance(args[0], Call):
                call = args[0]
            else:
                break
        else:
            self.inventory.problems.append(f"{name}: tensor wrapped more than {_MAX_WRAPPERS} times")
            return True
        self.nesting += 1
        try:
            if self.nesting > _MAX_WRAPPERS:
                self.inventory.problems.append(f"{name}: tensors nested more than {_MAX_WRAPPERS} deep")
                return True
            return self._rebuilt(name, func, args, optimizer)
        finally:
            self.nesting -= 1

    def _rebuilt(self, name: str, func: str, args: tuple, optimizer: bool) -> bool:
        if func in _UNSUPPORTED_REBUILDERS or func == "torch._utils._rebuild_meta_tensor_no_storage":
            self.inventory.unsupported.append((name, func))
            return True
        if func == "torch._utils._rebuild_sparse_tensor":
            return self._sparse(name, args, optimizer)
        if func == "torch._utils._rebuild_qtensor" and len(args) >= 5:
            self._quantizer_tensors(name, args[4], optimizer)
        elif func not in _TENSOR_REBUILDERS:
            return False
        return self._strided(name, func, args, optimizer)

    def _sparse(self, name: str, args: tuple, optimizer: bool) -> bool:
        """``_rebuild_sparse_tensor(layout, data)``: each index/value tensor is inventoried as ``name.<part>``."""
        layout = args[0] if args else None
        if isinstance(layout, Call) and isinstance(layout.func, Global) \
                and layout.func.qualname == "torch.serialization._get_layout" and layout.args:
            layout_name = str(layout.args[0]).removeprefix("torch.")
        else:
            layout_name = layout.name if isinstance(layout, Global) and layout.module == "torch" else ""
        parts = _SPARSE_COMPONENTS.get(layout_name)
        data = args[1] if len(args) > 1 else None
        if parts is None or not isinstance(data, tuple) or len(data) < len(parts):
            self.inventory.unsupported.append((name, f"sparse layout {render(layout, depth=1)}"))
            return True
        for part, value in zip(parts, data):
            if not (isinstance(value, Call) and self._tensor(_join(name, part), value, optimizer)):
                self.inventory.problems.append(f"{name}: sparse {part} is not a tensor")
        return True

    def _quantizer_tensors(self, name: str, qparams: Any, optimizer: bool) -> None:
        """Per-channel quantized tensors carry their scales and zero points as tensors: inventory them too."""
        if not (isinstance(qparams, tuple) and len(qparams) >= 3 and isinstance(qparams[0], Global)
                and qparams[0].name in _PER_CHANNEL_QSCHEMES):
            return
        for part, value in (("q_scales", qparams[1]), ("q_zero_points", qparams[2])):
            if isinstance(value, Call):
                self._tensor(_join(name, part), value, optimizer)

    def _strided(self, name: str, func: str, args: tuple, optimizer: bool) -> bool:
        """A tensor that views ``size``/``stride`` of a storage (plain, parameter, or quantized codes)."""
        if len(args) < 4:
            self.inventory.problems.append(f"{name}: malformed {func} arguments")
            return True
        storage_ref, offset = args[0], args[1]
        size, stride = as_int_tuple(args[2]), as_int_tuple(args[3])
        if not isinstance(storage_ref, PersistentId) or not isinstance(offset, int) or size is None or stride is None \
                or len(size) != len(stride):
            self.inventory.problems.append(f"{name}: malformed {func} arguments")
            return True
        storage = self.resolve(storage_ref)
        if isinstance(storage, str):
            self.inventory.problems.append(f"{name}: {storage}")
            return True
        dtype = storage.dtype
        if func.endswith("_v3") and len(args) >= 7:
            dtype_ref = args[6]
            if isinstance(dtype_ref, Global) and dtype_ref.module == "torch" and dtype_ref.name in TORCH_DTYPES:
                dtype = TORCH_DTYPES[dtype_ref.name]
            else:
                self.inventory.unsupported.append((name, f"dtype {render(dtype_ref)}"))
                return True
        role = Role.OPTIMIZER if optimizer else Role.PARAMETER
        self.inventory.tensors.append(TensorSpec(name, storage, dtype, offset, size, stride, role))
        return True


def storage_from_pid(pid: Any, lookup: Any) -> Storage | str:
    """Turn a ``('storage', type, key, location, numel[, view])`` persistent id into a Storage, or a problem."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        return f"unexpected persistent id {render(pid, depth=2)}"
    storage_type, key, location, numel = pid[1], pid[2], pid[3], pid[4]
    if not isinstance(storage_type, Global) or storage_type.name not in STORAGE_DTYPES \
            or storage_type.module not in ("torch", "torch.storage", "torch.cuda"):
        return f"unknown storage type {render(storage_type)}"
    if not isinstance(key, str) or not isinstance(numel, int):
        return "malformed storage reference"
    view = pid[5] if len(pid) == 6 else None
    base = lookup(key, STORAGE_DTYPES[storage_type.name], numel, str(location))
    if isinstance(base, str) or view is None:
        return base
    if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[1], int) and isinstance(view[2], int)):
        return f"malformed storage view {render(view)}"
    root = lookup(str(view[0]), base.dtype, numel, str(location))
    if isinstance(root, str):
        return root
    return Storage(root.key, root.dtype, view[2], root.location, root.data_offset, root.available, root.record,
                   root.entry, view_offset=view[1])


# ==============================================================================================================
# Turning specs into TensorInfo + checks
# ==============================================================================================================


def build_tensors(specs: list[TensorSpec], path_key: str, rel: str, byte_order: str,
                  findings: list[Finding]) -> tuple[list[TensorInfo], dict[str, list[str]], bool]:
    """TensorInfo records plus shared-storage groups; appends WA145/WA146 findings. Returns verified flag."""
    verified = True
    users: dict[str, list[str]] = {}
    for spec in specs:
        users.setdefault(spec.storage.record, []).append(spec.name)
    checked_records: set[str] = set()
    infos = []
    sizes: dict[str, int] = {}          # itemsize per dtype, asked once
    little = byte_order == "little"
    for spec in specs:
        storage, dtype, shape, stride = spec.storage, spec.dtype, spec.size, spec.stride
        size_item = sizes.get(dtype) or sizes.setdefault(dtype, itemsize(dtype))
        storage_item = sizes.get(storage.dtype) or sizes.setdefault(storage.dtype, itemsize(storage.dtype))
        if storage.record not in checked_records:
            checked_records.add(storage.record)
            declared = storage.numel * storage_item
            if storage.available is not None and storage.available != declared and storage.view_offset == 0:
                findings.append(R.STORAGE_SIZE.finding(
                    rel, f"storage {storage.key} declares {storage.numel} elements ({declared} bytes) but its record "
                         f"holds {storage.available} bytes", where=storage.record))
        extent = _extent(shape, stride)
        begin = (spec.offset + storage.view_offset) * size_item
        nbytes = element_count(shape) * size_item
        limit = storage.available if storage.available is not None else 0
        in_bounds = spec.offset >= 0 and (not stride or min(stride) >= 0) and \
            (nbytes == 0 or begin + (extent + 1) * size_item <= min(limit, (storage.view_offset + storage.numel)
                                                                     * storage_item))
        shared = storage.record if len(users[storage.record]) > 1 else None
        offsets = None
        if not in_bounds:
            verified = False
            TENSOR_LAYOUTS[(path_key, spec.name)] = None
            findings.append(R.TENSOR_OUT_OF_BOUNDS.finding(
                rel, f"offset {spec.offset}, size {list(shape)}, stride {list(stride)} reach byte "
                     f"{begin + (extent + 1) * size_item} of a {limit}-byte storage", tensor=spec.name,
                where=storage.record))
        elif nbytes >= REPEAT_NOTABLE_BYTES and _repeat_bomb(spec, (extent + 1) * size_item, nbytes, rel, findings):
            verified = False          # not streamed: its statistics would read the same bytes billions of times
            TENSOR_LAYOUTS[(path_key, spec.name)] = None
        elif storage.data_offset is not None and little and is_contiguous(shape, stride) \
                and (storage.entry is None or begin + nbytes <= storage.entry.compressed_size):
            # the tensor's raw bytes lie in the file: data_offsets say where, no layout is kept (100,000
            # layouts were 30 MB; PickleFamilyLoader.iter_chunks reads data_offsets first)
            offsets = (storage.data_offset + begin, storage.data_offset + begin + nbytes)
        else:
            TENSOR_LAYOUTS[(path_key, spec.name)] = TensorLayout(storage, begin, shape,
                                                                 tuple([s * size_item for s in stride]), size_item,
                                                                 nbytes)
        infos.append(TensorInfo(name=spec.name, dtype=dtype, shape=shape, file=rel, data_offsets=offsets,
                                role=spec.role, storage=shared, strides=stride, byte_order=byte_order))
    shared_groups = {k: v for k, v in users.items() if len(v) > 1}
    return infos, shared_groups, verified


REPEAT_NOTABLE_BYTES = 1 << 24      # a view this much larger than the bytes it covers is reported (medium)
REPEAT_LIMIT_BYTES = 1 << 30        # ... and above this it is high and never streamed


def _repeat_bomb(spec: TensorSpec, span: int, nbytes: int, rel: str, findings: list[Finding]) -> bool:
    """WA419 for a view that repeats its storage bytes (stride 0, overlapping strides): ``torch.ones(1)`` saved as
    a 10**12-element expand() costs nothing to load and terabytes to materialise. True: do not stream it."""
    if nbytes < REPEAT_NOTABLE_BYTES or nbytes <= 2 * max(span, 0):
        return False
    huge = nbytes >= REPEAT_LIMIT_BYTES
    findings.append(R.ALLOCATION_BOMB.finding(
        rel, f"a view of {element_count(spec.size)} elements ({nbytes} bytes) over {span} bytes of storage: size "
             f"{list(spec.size)}, stride {list(spec.stride)} repeat the same bytes", tensor=spec.name,
        where=spec.storage.record, severity=Severity.HIGH if huge else Severity.MEDIUM))
    return huge


def _extent(size: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Elements between the first and the last one a view reaches; -1 when it has none."""
    if 0 in size:
        return -1
    total = 0
    for dim, step in zip(size, stride):
        total += (dim - 1) * step
    return total
