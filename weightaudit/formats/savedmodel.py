"""TensorFlow SavedModel folders and bare TF checkpoints, read without TensorFlow.

Two loaders:

- ``tf-savedmodel`` claims a folder holding ``saved_model.pb`` (or, as TensorFlow's loader falls back to it,
  ``saved_model.pbtxt`` in text format). Its graphs and function libraries are walked with bounded work by
  ``savedmodel_graph.py`` (text format parsed by ``pbtext.py``); variables come from
  ``variables/variables.index`` (a TensorBundle, see ``tensorbundle.py``). A chunked ``saved_model.cpb`` is
  not read (WA177); hitting a walk limit is finding WA132 (limit-reached) and an unverified folder.
- ``tf-checkpoint`` claims a bare checkpoint index (``ckpt-1.index``), sniffed by the SSTable magic in its
  last 8 bytes.

Listing touches only the index and the graph file (memory-mapped); data shards are only ``stat``-ed, and
read only when ``LoadOptions.verify_checksums`` asks for CRC32C checks.

``LoadedFile.facts`` keys:

- ``ops``: tuple of ``savedmodel_graph.OpSite`` (op, meta-graph, function or None, first node, count): one per
  op and function, never one per node.
- ``op_counts``: ``{op: count}``; ``functions``: names of the library functions.
- ``tf_attr_values``: ``AttrSite`` records of string attributes that can name files (``debug_urls`` ...).
- ``tf_saver_callers``: ``{saver function: ((caller description, trusted), ...)}``.
- ``tf_untrusted_checkpoint_nodes``: ``(op, meta-graph, node, why)`` of top-level checkpoint ops outside the
  TF1 saver scope its SaverDef names.
- ``saved_model``: ``{"tags", "tensorflow_version", "meta_graphs", "nodes", "object_graph_variables",
  "graph_file", "limit"}``.
- ``keras_metadata``: list of Keras layer config dicts found in ``keras_metadata.pb`` (TF-Keras 2 models).
- ``bundle``: ``{"index": rel, "num_shards": n, "producer": n, "endianness": str, "slice_keys": n,
  "object_graph_bytes": n, "checksums_verified": bool}`` (absent when there is no variables index).
"""

from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from weightaudit.formats.base import LoadOptions, Probe, folder_size, unreadable
from weightaudit.formats.pbtext import TextFormatError, TextMessage, parse_text
from weightaudit.formats.savedmodel_graph import (
    Budget,
    GraphLimits,
    GraphRecorder,
    WalkLimit,
    WireMessage,
    walk_saved_model,
)
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
from weightaudit.rules.tf_op_tables import op_tables
from weightaudit.limits import DEFAULT_LIMITS, Limits, describe
from weightaudit.safe_read import json_depth_exceeds, load_json

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
        bundle = read_bundle(index_path, options.limits)
    except (BundleError, OSError) as exc:
        kind = exc.kind if isinstance(exc, BundleError) else None
        rule = {"unsupported": "WA165", "limit": "WA132"}.get(kind or "", "WA160")
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


# ---------------------------------------------------------------- saved_model.pb / .pbtxt -> ops

GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")     # the order TensorFlow's loader tries them
CHUNKED_GRAPH = "saved_model.cpb"                            # proto-splitter output: not read


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def walk_graph_file(path: Path, limits: GraphLimits) -> GraphRecorder:
    """Walk ``saved_model.pb`` (wire format) or ``saved_model.pbtxt`` (text format).
    Raises BundleError / TextFormatError when the file is not a SavedModel message."""
    tables = op_tables()
    checkpoint_ops = frozenset(op for op, category in tables.category.items() if category.rule == "WA442")
    recorder = GraphRecorder(limits, tables.watched_attrs, checkpoint_ops=checkpoint_ops)
    budget = Budget(limits)
    if path.name.endswith(".pbtxt"):
        _walk_text(path, limits, budget, recorder)
        return recorder
    mapped, view = _mapped(path)
    try:
        walk_saved_model(WireMessage(view, "SavedModel", budget), recorder)
    finally:
        _unmap(mapped, view)
    return recorder


def _unmap(mapped: mmap.mmap | None, view: memoryview) -> None:
    """Release a mapping; when an exception's frames still pin slices of it, the GC closes it later."""
    view.release()
    if mapped is not None:
        try:
            mapped.close()
        except BufferError:
            pass


def _walk_text(path: Path, limits: GraphLimits, budget: Budget, recorder: GraphRecorder) -> None:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limits.max_text_bytes:
            recorder.limit = WalkLimit("max_text_bytes", limits.max_text_bytes)
            return
        data = handle.read(limits.max_text_bytes + 1)
    try:
        tree = parse_text(data, budget)
    except WalkLimit as hit:
        recorder.limit = hit
        return
    walk_saved_model(TextMessage(tree, "SavedModel", budget), recorder)


def graph_facts(recorder: GraphRecorder, graph_name: str) -> dict[str, Any]:
    """``LoadedFile.facts`` entries describing the walked graph (see the module docstring)."""
    return {
        "ops": recorder.op_sites(),
        "op_counts": dict(recorder.op_counts),
        "functions": tuple(recorder.functions),
        "tf_attr_values": tuple(recorder.attr_values),
        "tf_saver_callers": {name: tuple(callers) for name, callers in recorder.saver_callers.items()},
        "tf_untrusted_checkpoint_nodes": tuple(recorder.untrusted_checkpoint_nodes),
        "saved_model": {"tags": recorder.tags, "tensorflow_version": recorder.tensorflow_version,
                        "meta_graphs": recorder.meta_graphs, "nodes": recorder.nodes,
                        "object_graph_variables": recorder.object_graph_variables, "graph_file": graph_name,
                        "limit": str(recorder.limit) if recorder.limit else None},
    }


def _mapped(path: Path) -> tuple[mmap.mmap | None, memoryview]:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_GRAPH_BYTES:
            raise BundleError(f"{path.name} is {size} bytes, over protobuf's 2 GiB limit", "graph")
        if size == 0:
            return None, memoryview(b"")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return mapped, memoryview(mapped)


@dataclass
class _MetadataWalk:
    """State of one keras_metadata.pb walk: fields still allowed, configs found, what could not be checked."""

    fields_left: int = DEFAULT_LIMITS.keras_metadata_fields    # the user's policy: limits.keras_metadata_fields
    configs: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _walk_json_strings(view: Any, walk: _MetadataWalk, limits: Limits, depth: int = 0) -> None:
    """JSON objects stored as strings anywhere in a protobuf message (keras_metadata.pb ``metadata`` fields)."""
    if depth > 6 or walk.problems:
        return
    fields = []
    try:
        for item in iter_fields(view):
            walk.fields_left -= 1
            if walk.fields_left < 0:
                walk.problems.append(f"more than {describe('keras_metadata_fields', limits)} protobuf fields")
                return
            fields.append(item)
    except BundleError:
        return
    for _number, wire, payload in fields:
        if wire != 2:
            continue
        if bytes(payload[:1]) == b"{":
            text = str(payload, "utf-8", "replace")
            if json_depth_exceeds(text, limits.nesting_depth):
                walk.problems.append(f"a layer config nested deeper than {describe('nesting_depth', limits)}")
                return
            try:
                walk.configs.append(load_json(text, limits))
                continue
            except ValueError:
                pass
        _walk_json_strings(payload, walk, limits, depth + 1)


def read_keras_metadata(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[list[Any], list[str]]:
    """Keras configs stored in a TF-Keras 2 ``keras_metadata.pb`` (none when absent), and what could not be
    checked (a limit hit: the caller reports it and marks the folder unverified)."""
    if not _regular_file(path):
        return [], []
    mapped, view = _mapped(path)
    walk = _MetadataWalk(fields_left=limits.keras_metadata_fields)
    try:
        _walk_json_strings(view, walk, limits)
    finally:
        _unmap(mapped, view)
    return walk.configs, walk.problems


# ---------------------------------------------------------------- loaders

class SavedModelLoader:
    """A SavedModel folder: graph ops from ``saved_model.pb``, variables from ``variables/variables.index``."""

    name = "tf-savedmodel"

    def sniff(self, probe: Probe) -> bool:
        return probe.is_dir and any(name in probe.entries for name in (*GRAPH_FILES, CHUNKED_GRAPH))

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        try:
            return self._load(path, rel, options)
        except (OSError, BundleError, ValueError) as exc:
            finding = get_rule("WA166").finding(rel, f"SavedModel cannot be read: {exc}")
            return unreadable(rel, self.name, 0, f"{rel}: SavedModel cannot be read: {exc}", [finding])

    def _load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        size = folder_size(path)
        graph_path = next((path / name for name in GRAPH_FILES if _regular_file(path / name)), None)
        if graph_path is None:
            return self._no_graph(path, rel, size)
        graph_rel = _join(rel, graph_path.name)
        try:
            recorder = walk_graph_file(graph_path, GraphLimits.from_options(options.limits, options.extra))
        except (BundleError, TextFormatError) as exc:
            reason = f"{graph_rel}: not a valid SavedModel protobuf ({exc})"
            return unreadable(rel, self.name, size, reason, [get_rule("WA166").finding(graph_rel, reason)])
        if recorder.meta_graphs == 0 and recorder.limit is None:
            reason = f"{graph_rel}: no MetaGraphDef in the SavedModel"
            return unreadable(rel, self.name, size, reason, [get_rule("WA166").finding(graph_rel, reason)])
        facts = graph_facts(recorder, graph_path.name)
        facts["keras_metadata"], problems = read_keras_metadata(path / "keras_metadata.pb", options.limits)
        findings = self._graph_findings(path, rel, graph_rel, recorder)
        findings += [get_rule("WA132").finding(_join(rel, "keras_metadata.pb"), f"{problem}: the Keras configs were "
                                               "not all checked") for problem in problems]
        verified = recorder.limit is None and not problems and not any(f.rule_id == "WA177" for f in findings)
        return self._with_variables(path, rel, size, options, facts, findings, verified)

    def _no_graph(self, path: Path, rel: str, size: int) -> LoadedFile:
        if (path / CHUNKED_GRAPH).exists():
            reason = f"{rel}: only a chunked {CHUNKED_GRAPH} graph, which weightaudit does not read"
            return unreadable(rel, self.name, size, reason, [get_rule("WA177").finding(rel, reason)])
        reason = f"{rel}: saved_model.pb / saved_model.pbtxt is not a regular file"
        return unreadable(rel, self.name, size, reason, [get_rule("WA166").finding(rel, reason)])

    def _graph_findings(self, path: Path, rel: str, graph_rel: str, recorder: GraphRecorder) -> list[Finding]:
        findings: list[Finding] = []
        if recorder.limit is not None:
            findings.append(get_rule("WA132").finding(
                graph_rel, f"SavedModel graph not walked whole: {recorder.limit} (after {recorder.meta_graphs} "
                f"meta-graphs, {recorder.nodes:,} nodes)"))
        if (path / CHUNKED_GRAPH).exists():
            findings.append(get_rule("WA177").finding(
                _join(rel, CHUNKED_GRAPH), f"{CHUNKED_GRAPH} sits beside {graph_rel.rpartition('/')[2]} and was "
                "not read: TensorFlow versions that merge chunked graphs would run ops no one checked"))
        return findings

    def _with_variables(self, path: Path, rel: str, size: int, options: LoadOptions, facts: dict[str, Any],
                        findings: list[Finding], verified: bool) -> LoadedFile:
        index_path = path / "variables" / "variables.index"
        if not index_path.is_file():
            declared = facts["saved_model"]["object_graph_variables"]
            if declared:
                findings.append(get_rule("WA167").finding(
                    rel, f"the object graph declares {declared} variables but variables/variables.index is missing"))
                return LoadedFile(rel, self.name, size, (), tuple(findings), facts, FileStatus.ERROR,
                                  f"{rel}: variables/variables.index is missing", False)
            return LoadedFile(rel, self.name, size, (), tuple(findings), facts, FileStatus.OK, None, verified)
        bundle = read_bundle_inventory(index_path, _join(rel, "variables/variables.index"), options)
        facts.update(bundle.facts)
        findings.extend(bundle.findings)
        status = FileStatus.ERROR if bundle.error else FileStatus.OK
        reason = f"{rel}: {bundle.error}" if bundle.error else None
        return LoadedFile(rel, self.name, size, tuple(bundle.tensors), tuple(findings), facts, status, reason,
                          bundle.verified and verified)


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
