"""ONNX models (``.onnx``), read with our own protobuf wire reader — the onnx package is never imported.

Sniffed by structure: a ModelProto starts with ``ir_version`` (field 1, a varint) and its first fields are
ModelProto fields of the right wire types; the file is claimed when it is named ``*.onnx`` or when the
graph / opset_import fields show up in the first 4 KiB.

Inventory (``TensorInfo``), every TensorProto data type (``onnx_proto.ONNX_TYPES``):
- graph initializers under their own names; sparse initializers by the name of their ``values`` tensor with
  the values' shape (the dense shape is in ``facts["sparse_initializers"]``);
- tensors of subgraphs (If/Loop/Scan bodies, training graphs) and of node attributes (Constant values) as
  ``<node>/<attribute>/<name>`` paths, where ``<node>`` is the node's name or ``<op_type>@<index>``;
  function bodies start with ``<function domain>:<function name>/``.
Values: raw_data (``data_offsets`` = its absolute range in the model file), packed typed fields (streamed;
varints decoded in bounded chunks), external data (resolved inside the model's folder only: WA191/WA192).
Statistics stream through ``iter_chunks``; strings, unpacked typed fields and 6-bit floats get none.

Operator domains: nodes outside the standard domains need code on the loading side (WA448, medium; WA449,
low, for ONNX Runtime's built-in domains); see ``weightaudit/data/onnx_domains.yaml``.

Facts: ``ir_version``, ``producer_name``, ``producer_version``, ``model_domain``, ``model_version``,
``opset_imports`` ({domain: version}), ``op_domains`` ({domain: nodes}), ``metadata`` (metadata_props, str ->
str; the report's files[].metadata), ``license`` (the ``license``/``licence`` metadata prop, when present),
``producer`` ("name version"), ``sparse_initializers``, ``external_data_files`` (paths relative to the model's
folder), ``no_statistics`` ({tensor: why}), ``nodes``, ``functions``.
Bounded by ``limits.graph_protobuf_fields``, ``graph_nodes``, ``tensors_per_file`` and ``onnx_graph_depth``
(WA132, unverified); files over protobuf's 2 GiB limit are refused like onnx.load refuses them (WA190).
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from weightaudit.formats.base import LoadOptions, Probe, unreadable
from weightaudit.formats.onnx_domains import domain_findings
from weightaudit.formats.onnx_proto import (
    LEN, VARINT, VARINT_CHUNK, FieldBudgetExceeded, WireError, fields, iter_varint_values, read_varint, text,
)
from weightaudit.formats.onnx_tensors import Location, parse_tensor, read_dims, resolve
from weightaudit.limits import DEFAULT_LIMITS, Limits, describe
from weightaudit.model import FileStatus, Finding, LoadedFile, TensorInfo
from weightaudit.rules import integrity as R
from weightaudit.rules import onnx_rules as O
from weightaudit.safe_read import open_regular

MAX_PROTO_BYTES = 2**31 - 1        # protobuf refuses bigger messages; onnx then needs external data
MAX_METADATA = 1_000               # metadata_props kept
MAX_NOTES = 1_000                  # no-statistics notes kept
# ModelProto field -> wire type, for sniffing.
MODEL_WIRES = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN, 14: LEN, 20: LEN, 25: LEN}


class _Limit(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass
class _Walk:
    """Everything the walk over one model records."""

    buf: Any
    size: int
    rel: str
    folder: Path
    limits: Limits = DEFAULT_LIMITS
    tensors: list[TensorInfo] = field(default_factory=list)
    locations: dict[str, Location] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    ops: dict[tuple[str, str], list[Any]] = field(default_factory=dict)   # (domain, op) -> [count, first node]
    functions: set[tuple[str, str]] = field(default_factory=set)
    opsets: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    sparse: dict[str, list[int]] = field(default_factory=dict)
    external_files: set[str] = field(default_factory=set)
    budget: list[int] = field(default_factory=list)   # protobuf fields left (limits.graph_protobuf_fields)
    nodes: int = 0
    verified: bool = True

    def __post_init__(self) -> None:
        self.budget = [self.limits.graph_protobuf_fields]

    def fields(self, begin: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        return fields(self.buf, begin, end, self.budget)

    def walk_fields(self, buf: Any, begin: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        return fields(buf, begin, end, self.budget)

    def add(self, rule: Any, message: str, tensor: str | None = None, where: str | None = None) -> None:
        self.findings.append(rule.finding(self.rel, message, tensor=tensor, where=where))


# ------------------------------------------------------------------ the walk

def _model(walk: _Walk) -> None:
    graphs: list[tuple[int, int]] = []
    model = walk.facts
    for number, wire, a, b in walk.fields(0, walk.size):
        if wire == VARINT and number in (1, 5):
            model["ir_version" if number == 1 else "model_version"] = a
        elif wire != LEN:
            continue
        elif number in (2, 3, 4):
            model[{2: "producer_name", 3: "producer_version", 4: "model_domain"}[number]] = text(walk.buf, a, b)
        elif number == 7:
            graphs.append((a, b))
        elif number == 8:
            _opset(walk, a, b)
        elif number == 14:
            _metadata_prop(walk, a, b)
        elif number == 20:
            _training_info(walk, a, b)
        elif number == 25:
            _function(walk, a, b)
    if not graphs:
        raise WireError("the model has no graph")
    _graph(walk, graphs, "", 0)   # repeated occurrences of a message field merge (protobuf semantics)


def _opset(walk: _Walk, begin: int, end: int, keep: bool = True) -> None:
    domain, version = "", 0
    for number, wire, a, b in walk.fields(begin, end):
        if number == 1 and wire == LEN:
            domain = text(walk.buf, a, b)
        elif number == 2 and wire == VARINT:
            version = a
    if keep:
        walk.opsets[domain] = version


def _metadata_prop(walk: _Walk, begin: int, end: int) -> None:
    key = value = ""
    for number, wire, a, b in walk.fields(begin, end):
        if wire == LEN and number in (1, 2):
            if number == 1:
                key = text(walk.buf, a, b)
            else:
                value = text(walk.buf, a, b)
    if len(walk.metadata) < MAX_METADATA or key in walk.metadata:
        walk.metadata[key] = value


def _training_info(walk: _Walk, begin: int, end: int) -> None:
    for number, wire, a, b in walk.fields(begin, end):
        if wire == LEN and number in (1, 2):
            _graph(walk, [(a, b)], f"training/{'initialization' if number == 1 else 'algorithm'}/", 1)


def _function(walk: _Walk, begin: int, end: int) -> None:
    name = domain = ""
    nodes: list[tuple[int, int]] = []
    defaults: list[tuple[int, int]] = []
    for number, wire, a, b in walk.fields(begin, end):
        if wire != LEN:
            continue
        if number == 1:
            name = text(walk.buf, a, b)
        elif number == 10:
            domain = text(walk.buf, a, b)
        elif number == 7:
            nodes.append((a, b))
        elif number == 11:
            defaults.append((a, b))
        elif number == 9:
            _opset(walk, a, b, keep=False)
    walk.functions.add((domain, name))
    scope = f"{domain}:{name}/"
    for index, (a, b) in enumerate(nodes):
        _node(walk, a, b, scope, index, 1)
    for a, b in defaults:
        _attribute(walk, a, b, scope + "default", 1)


def _graph(walk: _Walk, ranges: list[tuple[int, int]], scope: str, depth: int) -> None:
    if depth > walk.limits.onnx_graph_depth:
        raise _Limit("onnx_graph_depth")
    names: set[str] = set()
    index = 0
    for begin, end in ranges:
        for number, wire, a, b in walk.fields(begin, end):
            if wire != LEN:
                continue
            if number == 1:
                _node(walk, a, b, scope, index, depth)
                index += 1
            elif number == 5:
                _tensor(walk, a, b, scope, names, None)
            elif number == 15:
                _sparse(walk, a, b, scope, names)


def _node(walk: _Walk, begin: int, end: int, scope: str, index: int, depth: int) -> None:
    walk.nodes += 1
    if walk.nodes > walk.limits.graph_nodes:
        raise _Limit("graph_nodes")
    buf = walk.buf
    name = (0, 0)
    op = domain = b""
    attributes: list[tuple[int, int]] = []
    for number, wire, a, b in walk.fields(begin, end):
        if wire != LEN:
            continue
        if number == 3:
            name = (a, b)               # decoded only when a label is needed (hot path of big graphs)
        elif number == 4:
            op = buf[a:b]
        elif number == 7:
            domain = buf[a:b]
        elif number == 5:
            attributes.append((a, b))
    key = (_decode(domain), _decode(op))
    seen = walk.ops.get(key)
    if seen is None or attributes:
        label = scope + (text(buf, *name) if name[1] > name[0] else f"{key[1] or 'node'}@{index}")
        seen = walk.ops.setdefault(key, [0, label])
        for a, b in attributes:
            _attribute(walk, a, b, label, depth)
    seen[0] += 1


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")[:4096] if raw else ""


def _attribute(walk: _Walk, begin: int, end: int, owner: str, depth: int) -> None:
    name = ""
    parts: list[tuple[int, int, int]] = []
    for number, wire, a, b in walk.fields(begin, end):
        if wire != LEN:
            continue
        if number == 1:
            name = text(walk.buf, a, b)
        elif number in (5, 6, 10, 11, 22, 23):
            parts.append((number, a, b))
    scope = f"{owner}/{name}"
    lists = sum(1 for number, _, _ in parts if number in (10, 11, 23)) > 1
    for index, (number, a, b) in enumerate(parts):
        where = f"{scope}[{index}]" if lists else scope
        if number in (6, 11):
            _graph(walk, [(a, b)], where + "/", depth + 1)
        elif number in (5, 10):
            _tensor(walk, a, b, "", set(), where)
        else:
            _sparse(walk, a, b, "", set(), where)


def _sparse(walk: _Walk, begin: int, end: int, scope: str, names: set[str], fixed: str | None = None) -> None:
    dims: list[int] = []
    values: tuple[int, int] | None = None
    for number, wire, a, b in walk.fields(begin, end):
        if number == 1 and wire == LEN:
            values = (a, b)
        elif number == 3:
            read_dims(walk.buf, wire, a, b, dims)
    if values is None:
        walk.add(O.DATA_MISMATCH, f"a sparse tensor in {scope or 'the main graph'} has no values", where=scope)
        walk.verified = False
        return
    name = _tensor(walk, values[0], values[1], scope, names, fixed)
    if name is not None and len(walk.sparse) < MAX_NOTES:
        walk.sparse[name] = dims


def _tensor(walk: _Walk, begin: int, end: int, scope: str, names: set[str], fixed: str | None) -> str | None:
    """Inventory one TensorProto; returns the name it got (None when it was left out)."""
    if len(walk.tensors) >= walk.limits.tensors_per_file:
        raise _Limit("tensors_per_file")
    record = parse_tensor(walk.buf, begin, end, walk.walk_fields)
    name = fixed or scope + record.name
    if fixed is None and record.name in names:
        walk.add(O.DUPLICATE_NAME, f"initializer {name!r} appears more than once in its graph", tensor=name)
        walk.verified = False
        return None
    names.add(record.name)
    resolved = resolve(walk.buf, record, walk.folder)
    if resolved is None:
        walk.add(O.DATA_MISMATCH, f"tensor {name!r} has unknown data type {record.data_type}", tensor=name)
        walk.verified = False
        return None
    for rule, message in resolved.problems:
        walk.add(rule, f"tensor {name!r} {message}" if rule is O.DATA_MISMATCH else f"tensor {name!r}: {message}",
                 tensor=name)
        walk.verified = False
    if resolved.location.source is not None:
        walk.external_files.add(os.path.relpath(resolved.location.source, os.path.realpath(walk.folder)))
    if resolved.note and len(walk.notes) < MAX_NOTES:
        walk.notes[name] = resolved.note
    walk.locations[name] = resolved.location
    walk.tensors.append(TensorInfo(name=name, dtype=resolved.dtype, shape=resolved.shape, file=walk.rel,
                                   data_offsets=resolved.data_offsets))
    return name


# ------------------------------------------------------------------ facts and the loader

def _facts(walk: _Walk) -> dict[str, Any]:
    facts = dict(walk.facts)
    facts.update(opset_imports=dict(walk.opsets), metadata=dict(walk.metadata), nodes=walk.nodes,
                 op_domains=_domain_counts(walk), functions=sorted(f"{d}:{n}" for d, n in walk.functions),
                 sparse_initializers=dict(walk.sparse), external_data_files=sorted(walk.external_files),
                 no_statistics=dict(walk.notes))
    licence = next((v for k, v in walk.metadata.items() if k.lower() in ("license", "licence")), None)
    if licence:
        facts["license"] = licence
    if walk.facts.get("producer_name"):
        facts["producer"] = f"{walk.facts['producer_name']} {walk.facts.get('producer_version', '')}".strip()
    return facts


def _domain_counts(walk: _Walk) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (domain, _op), (count, _first) in walk.ops.items():
        counts[domain] = counts.get(domain, 0) + count
    return counts


def _walk_file(path: Path, rel: str, limits: Limits) -> tuple[_Walk, str | None]:
    """Walk the model; returns the walk and the fatal problem, if any (the walk keeps what was read)."""
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0 or size > MAX_PROTO_BYTES:
            walk = _Walk(b"", 0, rel, path.parent, limits)
            return walk, "empty file" if size == 0 else f"{size:,} bytes, over protobuf's 2 GiB message limit"
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            walk = _Walk(mapped, size, rel, path.parent, limits)
            try:
                _model(walk)
                return walk, None
            except WireError as exc:
                return walk, str(exc)
            except FieldBudgetExceeded:
                raise _Limit("graph_protobuf_fields") from None
            finally:
                walk.buf = b""


def parse(path: Path, rel: str, options: LoadOptions | None = None) -> LoadedFile:
    options = options or LoadOptions()
    try:
        walk, fatal = _walk_file(path, rel, options.limits)
    except _Limit as hit:
        finding = R.LIMIT_REACHED.finding(rel, f"ONNX model goes past {describe(hit.name, options.limits)}; "
                                          "the rest was not read")
        return unreadable(rel, LOADER.name, path.stat().st_size, f"limit {hit.name} reached", (finding,))
    except OSError as exc:
        return unreadable(rel, LOADER.name, 0, f"cannot read file: {exc}")
    if fatal is not None:
        walk.add(O.MALFORMED, f"not a readable ONNX ModelProto: {fatal}")
        return unreadable(rel, LOADER.name, walk.size, fatal, walk.findings)
    walk.findings.extend(domain_findings(rel, walk.ops, walk.functions))
    _remember(path, walk.locations)
    reason = None if walk.verified else "some tensors could not be checked (see findings)"
    return LoadedFile(rel, LOADER.name, walk.size, tensors=tuple(walk.tensors), findings=tuple(walk.findings),
                      facts=_facts(walk), status=FileStatus.OK, reason=reason, verified=walk.verified)


# ------------------------------------------------------------------ streaming values

_REMEMBERED: "OrderedDict[tuple[str, int, int], dict[str, Location]]" = OrderedDict()


def _file_key(path: Path) -> tuple[str, int, int]:
    info = os.stat(path)
    return os.path.realpath(path), info.st_size, info.st_mtime_ns


def _remember(path: Path, locations: dict[str, Location]) -> None:
    _REMEMBERED[_file_key(path)] = locations
    while len(_REMEMBERED) > 8:
        _REMEMBERED.popitem(last=False)


def _location_of(path: Path, name: str) -> Location:
    key = _file_key(path)
    if key not in _REMEMBERED:
        parse(path, path.name)      # another process loaded it: walk it again (locations only)
    location = _REMEMBERED.get(key, {}).get(name)
    if location is None or location.kind == "none":
        raise ValueError(f"{path.name}: tensor {name!r} has no readable values")
    return location


def _byte_chunks(source: Path, ranges: tuple[tuple[int, int], ...], chunk_bytes: int) -> Iterator[memoryview]:
    with open_regular(source) as handle:
        for begin, end in ranges:
            for start in range(begin, end, chunk_bytes):
                data = os.pread(handle.fileno(), min(chunk_bytes, end - start), start)
                if not data:
                    raise OSError(f"{source}: file ended at byte {start:,}")
                yield memoryview(data)


def _varint_chunks(path: Path, location: Location, chunk_bytes: int) -> Iterator[memoryview]:
    element = np.dtype(location.element)
    with open_regular(path) as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        for begin, end in location.ranges:
            for values in iter_varint_values(mapped, begin, end, min(chunk_bytes, VARINT_CHUNK)):
                yield memoryview(values.astype(element).tobytes())


class OnnxLoader:
    """Claims ONNX ModelProto files (structure of the first fields; ``.onnx`` name or graph fields)."""

    name = "onnx"

    def sniff(self, probe: Probe) -> bool:
        if probe.is_dir or len(probe.head) < 2 or probe.head[0] != 0x08:
            return False
        return sniff_model(probe.head, probe.suffix == ".onnx", complete=probe.size == len(probe.head))

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return parse(path, rel, options)

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
        location = _location_of(path, tensor.name)
        if location.kind == "varint":
            return _varint_chunks(path, location, chunk_bytes)
        return _byte_chunks(Path(location.source) if location.source else path, location.ranges, chunk_bytes)


def sniff_model(head: bytes, named_onnx: bool, complete: bool = False) -> bool:
    """True when the head reads as the start of a ModelProto (a field cut off by the head's end is fine
    unless the head is the whole file)."""
    pos, first, strong = 0, True, False
    end = len(head)
    try:
        while pos < (end if complete else end - 10):
            key, pos = read_varint(head, pos, end)
            number, wire = key >> 3, key & 7
            if MODEL_WIRES.get(number) != wire or (first and number != 1):
                return False
            value, pos = read_varint(head, pos, end)
            if first and not 1 <= value <= 100:
                return False
            strong = strong or number in (7, 8)
            first = False
            if wire == LEN:
                if complete and pos + value > end:
                    return False
                if number in (2, 3, 4) and pos + value <= end:
                    head[pos:pos + value].decode("utf-8")
                pos += value
    except (WireError, UnicodeDecodeError):
        return False
    return not first and (named_onnx or strong)


LOADER = OnnxLoader()
