"""TensorFlow SavedModel folders and bare TF checkpoints, read without TensorFlow.

Two loaders:

- ``tf-savedmodel`` claims a folder holding ``saved_model.pb``. It lists every op of the graph and of the
  function library (with the function each sits in) by decoding the protobuf wire format, and the variables
  from ``variables/variables.index`` (a TensorBundle, see ``tensorbundle.py``).
- ``tf-checkpoint`` claims a bare checkpoint index (``ckpt-1.index``), sniffed by the SSTable magic in its
  last 8 bytes.

Listing touches only the index and ``saved_model.pb`` (memory-mapped); data shards are only ``stat``-ed, and
read only when ``LoadOptions.verify_checksums`` asks for CRC32C checks.

``LoadedFile.facts`` keys:

- ``ops``: tuple of ``(op, node_name, function_name_or_None)`` for every node of every meta graph
  (top-level graph nodes have function None).
- ``op_counts``: ``{op: count}``; ``functions``: names of the library functions.
- ``saved_model``: ``{"tags": [...], "tensorflow_version": str, "meta_graphs": n, "object_graph_variables": n}``.
- ``keras_metadata``: list of Keras layer config dicts found in ``keras_metadata.pb`` (TF-Keras 2 models).
- ``bundle``: ``{"index": rel, "num_shards": n, "producer": n, "endianness": str, "slice_keys": n,
  "object_graph_bytes": n, "checksums_verified": bool}`` (absent when there is no variables index).
"""

from __future__ import annotations

import json
import mmap
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from weightaudit.formats.base import LoadOptions, Probe, folder_size, unreadable
from weightaudit.formats.tensorbundle import (
    CHECKPOINT_GRAPH_KEY,
    BundleEntry,
    BundleError,
    data_file_name,
    entry_crc,
    has_table_magic,
    iter_fields,
    read_bundle,
)
from weightaudit.model import DTYPE_BITS, Finding, FileStatus, LoadedFile, Role, TensorInfo, dtype_nbytes
from weightaudit.rules import get_rule

MAX_GRAPH_BYTES = 2**31          # protobuf's own 2 GiB message limit
NON_POD_DTYPES = frozenset({"STRING", "OBJECT"})


@dataclass
class BundleResult:
    """What reading one TensorBundle produced."""

    tensors: list[TensorInfo] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    verified: bool = True
    error: str | None = None


# ---------------------------------------------------------------- bundle -> inventory

def _role(key: str) -> Role:
    if "/.OPTIMIZER_SLOT/" in key or key.startswith("optimizer/"):
        return Role.OPTIMIZER
    return Role.PARAMETER


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def read_bundle_inventory(index_path: Path, index_rel: str, options: LoadOptions) -> BundleResult:
    """Inventory and integrity findings of the bundle whose index is ``index_path`` (``rel`` for reports)."""
    result = BundleResult()
    try:
        bundle = read_bundle(index_path)
    except (BundleError, OSError) as exc:
        rule = "WA165" if isinstance(exc, BundleError) and exc.kind == "unsupported" else "WA160"
        result.error = f"variables index unreadable: {exc}"
        result.findings.append(get_rule(rule).finding(index_rel, f"TensorBundle index cannot be read: {exc}"))
        result.verified = False
        return result
    prefix = index_path.name[: -len(".index")] if index_path.name.endswith(".index") else index_path.name
    rel_dir = index_rel.rpartition("/")[0]
    header = bundle.header
    shards = _shard_sizes(index_path.parent, prefix, header.num_shards)
    result.facts["bundle"] = {
        "index": index_rel, "num_shards": header.num_shards, "producer": header.producer,
        "endianness": header.endianness, "slice_keys": bundle.slice_keys, "object_graph_bytes": 0,
        "checksums_verified": bool(options.verify_checksums),
    }
    if header.endianness != "little":
        result.findings.append(get_rule("WA165").finding(index_rel, "big-endian TensorBundle: values not checked"))
        result.verified = False
    if bundle.slice_keys:
        result.findings.append(get_rule("WA165").finding(
            index_rel, f"{bundle.slice_keys} partitioned-variable slice entries are not inventoried"))
        result.verified = False
    for shard, size in enumerate(shards):
        if size is None:
            name = data_file_name(prefix, shard, header.num_shards)
            result.findings.append(get_rule("WA161").finding(_join(rel_dir, name), f"data shard {name} is missing"))
            result.verified = False
    for entry in bundle.entries:
        if entry.key == CHECKPOINT_GRAPH_KEY:
            result.facts["bundle"]["object_graph_bytes"] = entry.size
        _check_entry(entry, prefix, rel_dir, header.num_shards, shards, index_path.parent, options, result)
    return result


def _shard_sizes(folder: Path, prefix: str, num_shards: int) -> list[int | None]:
    sizes: list[int | None] = []
    for shard in range(max(num_shards, 0)):
        try:
            sizes.append(os.stat(folder / data_file_name(prefix, shard, num_shards)).st_size)
        except OSError:
            sizes.append(None)
    return sizes


def _check_entry(entry: BundleEntry, prefix: str, rel_dir: str, num_shards: int, shards: list[int | None],
                 folder: Path, options: LoadOptions, result: BundleResult) -> None:
    """Validate one entry against its shard and, unless it is the object graph, add it to the inventory."""
    shard_name = data_file_name(prefix, entry.shard_id, num_shards)
    shard_rel = _join(rel_dir, shard_name)
    index_rel = result.facts["bundle"]["index"]
    if not 0 <= entry.shard_id < num_shards:
        result.findings.append(get_rule("WA162").finding(index_rel, f"entry names shard {entry.shard_id} of {num_shards}",
                                                         tensor=entry.key))
        result.verified = False
        return
    if entry.dtype not in DTYPE_BITS or entry.unknown_rank:
        result.findings.append(get_rule("WA165").finding(
            index_rel, f"unsupported dtype {entry.dtype} or unknown rank; bytes not checked", tensor=entry.key))
        result.verified = False
    shard_size = shards[entry.shard_id]
    if shard_size is not None and (entry.offset < 0 or entry.size < 0 or entry.offset + entry.size > shard_size):
        result.findings.append(get_rule("WA162").finding(
            shard_rel, f"entry bytes [{entry.offset}, {entry.offset + entry.size}) lie past the end of the "
            f"{shard_size}-byte shard", tensor=entry.key))
        result.verified = False
        shard_size = None
    expected = dtype_nbytes(entry.dtype, _count(entry.shape))
    pod = entry.dtype not in NON_POD_DTYPES and expected is not None
    if pod and expected != entry.size:
        result.findings.append(get_rule("WA164").finding(
            shard_rel, f"entry holds {entry.size} bytes but {entry.dtype}{list(entry.shape)} needs {expected}",
            tensor=entry.key))
        result.verified = False
        pod = False
    if options.verify_checksums and shard_size is not None and entry.crc32c is not None:
        actual = entry_crc(folder / shard_name, entry)
        if actual != entry.crc32c:
            result.findings.append(get_rule("WA163").finding(
                shard_rel, f"masked CRC32C {actual:#010x} != stored {entry.crc32c:#010x}", tensor=entry.key))
            result.verified = False
    if entry.key == CHECKPOINT_GRAPH_KEY:
        return
    offsets = (entry.offset, entry.offset + entry.size) if pod and shard_size is not None else None
    result.tensors.append(TensorInfo(name=entry.key, dtype=entry.dtype, shape=entry.shape, file=shard_rel,
                                     data_offsets=offsets, role=_role(entry.key)))


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= max(dim, 0)
    return total


# ---------------------------------------------------------------- saved_model.pb -> ops

@dataclass
class GraphListing:
    ops: list[tuple[str, str, str | None]] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    tensorflow_version: str = ""
    meta_graphs: int = 0
    object_graph_variables: int = 0


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8", "replace")


def _node(value: Any) -> tuple[str, str]:
    name = op = ""
    for number, wire, payload in iter_fields(value):
        if number == 1 and wire == 2:
            name = _text(payload)
        elif number == 2 and wire == 2:
            op = _text(payload)
    return name, op


def _walk_library(value: Any, listing: GraphListing) -> None:
    for number, wire, function in iter_fields(value):
        if number != 1 or wire != 2:
            continue
        name = ""
        nodes: list[tuple[str, str]] = []
        for sub, sub_wire, payload in iter_fields(function):
            if sub == 1 and sub_wire == 2:
                name = next((_text(v) for n, w, v in iter_fields(payload) if n == 1 and w == 2), "")
            elif sub == 3 and sub_wire == 2:
                nodes.append(_node(payload))
        listing.functions.append(name)
        listing.ops.extend((op, node, name) for node, op in nodes)


def _walk_graph(value: Any, listing: GraphListing) -> None:
    for number, wire, payload in iter_fields(value):
        if number == 1 and wire == 2:
            node, op = _node(payload)
            listing.ops.append((op, node, None))
        elif number == 2 and wire == 2:
            _walk_library(payload, listing)


def _walk_meta_info(value: Any, listing: GraphListing) -> None:
    for number, wire, payload in iter_fields(value):
        if number == 4 and wire == 2:
            listing.tags.append(_text(payload))
        elif number == 5 and wire == 2:
            listing.tensorflow_version = _text(payload)


def _count_object_variables(value: Any) -> int:
    total = 0
    for number, wire, saved_object in iter_fields(value):
        if number == 1 and wire == 2:
            total += any(n == 7 and w == 2 for n, w, _ in iter_fields(saved_object))
    return total


def list_graph(view: memoryview) -> GraphListing:
    """Every op of every meta graph of a serialized ``SavedModel``. Raises BundleError on bad protobuf."""
    listing = GraphListing()
    for number, wire, meta_graph in iter_fields(view):
        if number != 2 or wire != 2:
            continue
        listing.meta_graphs += 1
        for sub, sub_wire, payload in iter_fields(meta_graph):
            if sub == 1 and sub_wire == 2:
                _walk_meta_info(payload, listing)
            elif sub == 2 and sub_wire == 2:
                _walk_graph(payload, listing)
            elif sub == 7 and sub_wire == 2:
                listing.object_graph_variables += _count_object_variables(payload)
    return listing


def _mapped(path: Path) -> tuple[mmap.mmap | None, memoryview]:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_GRAPH_BYTES:
            raise BundleError(f"{path.name} is {size} bytes, over protobuf's 2 GiB limit", "graph")
        if size == 0:
            return None, memoryview(b"")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return mapped, memoryview(mapped)


def _iter_json_strings(view: Any, depth: int = 0) -> Iterator[Any]:
    """JSON objects stored as strings anywhere in a protobuf message (keras_metadata.pb ``metadata`` fields)."""
    if depth > 6:
        return
    try:
        fields = list(iter_fields(view))
    except BundleError:
        return
    for _number, wire, payload in fields:
        if wire != 2:
            continue
        if bytes(payload[:1]) == b"{":
            try:
                yield json.loads(bytes(payload))
                continue
            except ValueError:
                pass
        yield from _iter_json_strings(payload, depth + 1)


def read_keras_metadata(path: Path) -> list[Any]:
    """Keras configs stored in a TF-Keras 2 ``keras_metadata.pb`` (empty when absent or unreadable)."""
    if not path.is_file():
        return []
    mapped, view = _mapped(path)
    try:
        return list(_iter_json_strings(view))
    finally:
        view.release()
        if mapped is not None:
            mapped.close()


# ---------------------------------------------------------------- loaders

class SavedModelLoader:
    """A SavedModel folder: graph ops from ``saved_model.pb``, variables from ``variables/variables.index``."""

    name = "tf-savedmodel"

    def sniff(self, probe: Probe) -> bool:
        return probe.is_dir and ("saved_model.pb" in probe.entries or "saved_model.pbtxt" in probe.entries)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        try:
            return self._load(path, rel, options)
        except (OSError, BundleError, ValueError) as exc:
            finding = get_rule("WA166").finding(rel, f"SavedModel cannot be read: {exc}")
            return unreadable(rel, self.name, 0, f"{rel}: SavedModel cannot be read: {exc}", [finding])

    def _load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        size = folder_size(path)
        graph_path = path / "saved_model.pb"
        graph_rel = _join(rel, "saved_model.pb")
        if not graph_path.is_file():
            reason = f"{rel}: text-format saved_model.pbtxt is not supported"
            return unreadable(rel, self.name, size, reason, [get_rule("WA166").finding(rel, reason)])
        mapped, view = _mapped(graph_path)
        try:
            listing = list_graph(view)
        except BundleError as exc:
            reason = f"{graph_rel}: not a valid SavedModel protobuf ({exc})"
            return unreadable(rel, self.name, size, reason, [get_rule("WA166").finding(graph_rel, reason)])
        finally:
            view.release()
            if mapped is not None:
                mapped.close()
        facts: dict[str, Any] = {
            "ops": tuple(listing.ops),
            "op_counts": dict(Counter(op for op, _node, _fn in listing.ops)),
            "functions": tuple(listing.functions),
            "saved_model": {"tags": listing.tags, "tensorflow_version": listing.tensorflow_version,
                            "meta_graphs": listing.meta_graphs,
                            "object_graph_variables": listing.object_graph_variables},
            "keras_metadata": read_keras_metadata(path / "keras_metadata.pb"),
        }
        findings: list[Finding] = []
        if listing.meta_graphs == 0:
            reason = f"{graph_rel}: no MetaGraphDef in the SavedModel"
            return unreadable(rel, self.name, size, reason, [get_rule("WA166").finding(graph_rel, reason)])
        index_path = path / "variables" / "variables.index"
        if not index_path.is_file():
            if listing.object_graph_variables:
                findings.append(get_rule("WA167").finding(
                    rel, f"the object graph declares {listing.object_graph_variables} variables but "
                    "variables/variables.index is missing"))
                return LoadedFile(rel, self.name, size, (), tuple(findings), facts, FileStatus.ERROR,
                                  f"{rel}: variables/variables.index is missing", False)
            return LoadedFile(rel, self.name, size, (), tuple(findings), facts)
        bundle = read_bundle_inventory(index_path, _join(rel, "variables/variables.index"), options)
        facts.update(bundle.facts)
        findings.extend(bundle.findings)
        status = FileStatus.ERROR if bundle.error else FileStatus.OK
        reason = f"{rel}: {bundle.error}" if bundle.error else None
        return LoadedFile(rel, self.name, size, tuple(bundle.tensors), tuple(findings), facts, status, reason,
                          bundle.verified)


class CheckpointLoader:
    """A bare TF checkpoint given by its index file (``ckpt-1.index``); data shards sit next to it."""

    name = "tf-checkpoint"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and has_table_magic(probe.tail)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            return unreadable(rel, self.name, 0, f"{rel}: cannot stat: {exc}", [])
        bundle = read_bundle_inventory(path, rel, options)
        if bundle.error:
            return unreadable(rel, self.name, size, f"{rel}: {bundle.error}", bundle.findings)
        return LoadedFile(rel, self.name, size, tuple(bundle.tensors), tuple(bundle.findings), bundle.facts,
                          FileStatus.OK, None, bundle.verified)


SAVEDMODEL_LOADER = SavedModelLoader()
CHECKPOINT_LOADER = CheckpointLoader()
LOADER = SAVEDMODEL_LOADER
