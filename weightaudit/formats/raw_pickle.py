"""The ``pickle`` loader: any pickle stream that no other loader claimed (the last resort of the registry).

Every stacked pickle is scanned, each read as ``joblib.load`` would read it (:mod:`joblib_format`: array bytes
after a ``NumpyArrayWrapper`` BUILD are skipped and become tensors, object arrays' pickles are scanned) — for a
plain pickle that reading is exactly ``pickle.load``'s. When joblib arrays were skipped, the plain
``pickle.load`` reading of the same bytes is run too and its calls are reported when it reaches a clean STOP
(a file that is a joblib file for joblib and a payload for pickle.load). Distributed-checkpoint ``.metadata``
pickles get their tensor names and shapes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

from weightaudit.formats.base import LoadOptions, Probe
from weightaudit.formats.joblib_format import ARRAY_WRAPPERS, NUMPY_ARRAY_CLASSES, JoblibRun, array_tensors, scan_joblib_pickle
from weightaudit.formats.mapped_file import FileProblem
from weightaudit.formats.object_names import dotted_names
from weightaudit.formats.pickle_scan import FileScan, PickleFamilyLoader, limits_for, report_trailing_data, safe_load
from weightaudit.formats.pickle_values import Call, Global
from weightaudit.formats.pickle_vm import Limits, PickleResult, run_pickle, scan_pickle
from weightaudit.formats.torch_tensors import TENSOR_LAYOUTS, TORCH_DTYPES, as_int_tuple
from weightaudit.limits import DEFAULT_LIMITS
from weightaudit.model import LoadedFile, TensorInfo
from weightaudit.rules import get_rule
from weightaudit.rules import pickle_rules as R
from weightaudit.rules.pickle_allowlist import builtin_allowlist, danger_table
from weightaudit.rules.container_rules import CONTAINER_LAYOUT, JOBLIB_SUBCLASS

__all__ = ["RawPickleLoader", "LOADER", "PICKLE_SUFFIXES", "looks_like_pickle", "load_pickle_stream"]

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".dat", ".data",
                             ".metadata", ".tar", ".npy", ".pck", ".model"})
MAX_STACKED_PICKLES = DEFAULT_LIMITS.stacked_pickles   # the user's policy sets limits.stacked_pickles
_OPCODE_BYTES = frozenset(b"(.012FIJKLMNPQRSTUVabcd}eghijl]opqrst)uGBC") | frozenset(range(0x80, 0x99))


def looks_like_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and head[1] <= 5


def load_pickle_stream(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str,
                       label: str = "pickle", start: int = 0) -> list[PickleResult]:
    """Scan every stacked pickle of ``view`` from ``start`` into ``scan`` (joblib arrays become tensors)."""
    limits = limits_for(options)
    budget = [limits.max_opcodes]
    results: list[PickleResult] = []
    pos = start
    max_stacked = options.limits.stacked_pickles
    while pos < len(view) and len(results) < max_stacked:
        result, run = scan_joblib_pickle(view, pos, limits, budget)
        results.append(result)
        where = label if pos == start and result.end >= len(view) else f"{label} #{len(results)}"
        scan.add_pickle(where, 0, result, view)
        if run.arrays or run.compat_files:
            _joblib_findings(scan, view, result, run, where, limits, path_key)
        if not result.ok or result.end <= pos:
            break
        pos = result.end
    if not results:
        raise FileProblem("empty file")
    if pos < len(view) and len(results) >= max_stacked and results[-1].ok:
        scan.findings.append(get_rule("WA132").finding(scan.rel, f"more than limits.stacked_pickles = {max_stacked:,} "
                                                                 f"stacked pickles: the {len(view) - pos:,} bytes from "
                                                                 f"byte {pos} on were not read", where=label))
        scan.verified = False
    first = results[0]
    if not first.ok:
        scan.error = f"not a valid pickle: {first.error} at byte {first.error_pos}"
    elif len(results) > 1 and not results[-1].ok:
        last = results[-1]
        if last.error_pos == last.start:
            report_trailing_data(scan, results, last.start, len(view), "file" if label == "pickle" else label)
        else:
            scan.error = f"stacked pickle at byte {last.start} is broken: {last.error} at byte {last.error_pos}"
    scan.facts["pickle_count"] = sum(1 for r in results if r.ok)
    return results


def _joblib_findings(scan: FileScan, view: memoryview, result: PickleResult, run: JoblibRun, where: str,
                     limits: Limits, path_key: str) -> None:
    scan.facts["joblib"] = True
    scan.facts["joblib_arrays"] = scan.facts.get("joblib_arrays", 0) + len(run.arrays)
    names = _array_names(result.value) if result.ok else {}
    tensors = array_tensors(run, scan.rel, names)
    scan.tensors.extend(tensors)
    if "#" not in path_key:          # contiguous ranges of this file: iter_chunks reads them without a reload
        for tensor in tensors:
            TENSOR_LAYOUTS[(path_key, tensor.name)] = None
    for array in run.arrays:
        if array.pickle is not None:
            scan.findings.append(R.OBJECT_ARRAY.finding(scan.rel, f"joblib array {array.index} has dtype object",
                                                        where=f"{where} byte {array.begin}"))
            scan.add_pickle(f"{where} object array {array.index}", 0, array.pickle, view)
        if array.subclass not in NUMPY_ARRAY_CLASSES:
            scan.findings.append(JOBLIB_SUBCLASS.finding(scan.rel, f"joblib array {array.index} is rebuilt as "
                                                                   f"{array.subclass}", where=f"{where} byte {array.begin}"))
    for pos, filename in run.compat_files:
        if not (isinstance(filename, str) and filename and "/" not in filename and "\\" not in filename
                and filename not in (".", "..")):
            scan.findings.append(CONTAINER_LAYOUT.finding(scan.rel, f"old joblib wrapper reads the file {filename!r}, "
                                                                    "not a sibling file", where=f"{where} byte {pos}"))
    if run.arrays:
        _plain_reading(scan, view, result, where, limits)


def _plain_reading(scan: FileScan, view: memoryview, joblib_result: PickleResult, where: str, limits: Limits) -> None:
    """What ``pickle.load`` (which does not skip joblib's array bytes) would run on the same bytes."""
    plain = scan_pickle(view, joblib_result.start, limits)
    if not plain.ok:
        return
    plain = _until_failed_import(plain)
    if set(R.executing_calls([plain])) - set(R.executing_calls([joblib_result])):
        scan.add_pickle(f"{where} as pickle.load reads it", 0, plain, view)


def _until_failed_import(plain: PickleResult) -> PickleResult:
    """The plain reading up to its first import of a top-level module no Python could import here.

    Object arrays' inner pickles share the outer memo under ``pickle.load``: their GETs fetch the outer strings
    and build names like ``NumpyArrayWrapper.dtype``. ``find_class`` raises there, so nothing after it runs.
    """
    failing = [use.pos for use in plain.globals if not _importable(use.ref.module)]
    if not failing:
        return plain
    stop = min(failing)
    return dataclasses.replace(plain, end=stop, globals=[u for u in plain.globals if u.pos < stop],
                               calls=[c for c in plain.calls if c.pos < stop])


@functools.cache
def _importable(module: str) -> bool:
    """Whether ``import module``'s top level could succeed: stdlib, a module the pickle tables name, or installed."""
    top = module.split(".")[0]
    if not top.isidentifier() or top in sys.stdlib_module_names or top == "__main__" or top in _known_tops():
        return True
    try:
        return importlib.util.find_spec(top) is not None     # a top-level lookup runs no package code
    except (ImportError, ValueError):
        return False


@functools.cache
def _known_tops() -> frozenset[str]:
    danger = danger_table()
    names = [*builtin_allowlist().entries, *(p for c in danger.categories for p in c.prefixes), *danger.module_aliases]
    return frozenset(name.split(".")[0] for name in names)


def _array_names(root: Any) -> dict[int, str]:
    """Dotted names of joblib array wrappers in the unpickled object (dict keys, attributes, list indexes)."""
    def is_wrapper(value: Any) -> bool:
        return isinstance(value, Call) and isinstance(value.func, Global) and value.func.qualname in ARRAY_WRAPPERS

    return {id(value): name or "array" for name, value in dotted_names(root, is_wrapper)}


def _load_raw(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    results = load_pickle_stream(scan, view, options, path_key)
    scan.torch_refusals.append("a raw pickle is not a torch checkpoint (torch.load fails on the magic number)")
    if results[0].ok and _is_dcp_metadata(results[0]):
        scan.facts["distributed_checkpoint"] = True
        _dcp_inventory(scan, results[0])


def _is_dcp_metadata(result: PickleResult) -> bool:
    return isinstance(result.value, Call) and isinstance(result.value.func, Global) and \
        result.value.func.qualname == "torch.distributed.checkpoint.metadata.Metadata"


def _dcp_inventory(scan: FileScan, result: PickleResult) -> None:
    """Tensor names, dtypes and shapes from a distributed checkpoint's ``.metadata`` (bytes live in .distcp files)."""
    meta = result.value
    state = {}
    for part in meta.state:
        if isinstance(part, dict):
            state.update(part)
    entries = state.get("state_dict_metadata")
    if not isinstance(entries, dict):
        return
    for name, entry in entries.items():
        if not (isinstance(entry, Call) and isinstance(entry.args, tuple) and len(entry.args) >= 2):
            continue
        props, size = entry.args[0], as_int_tuple(entry.args[1])
        dtype = "U8"
        if isinstance(props, Call) and isinstance(props.args, tuple) and props.args \
                and isinstance(props.args[0], Global) and props.args[0].name in TORCH_DTYPES:
            dtype = TORCH_DTYPES[props.args[0].name]
        if size is not None and isinstance(name, str):
            scan.tensors.append(TensorInfo(name=name, dtype=dtype, shape=size, file=scan.rel))
    scan.verified = False
    scan.facts["dcp_note"] = "tensor bytes live in the .distcp files and were not checked"


def _pickle_prefix(head: bytes, size: int) -> tuple[bool, int]:
    """(the first bytes run as a pickle — to STOP, or to the end of a cut-short probe; bytes parsed before an error)."""
    result = run_pickle(head, 0, Limits(max_opcodes=2_000))
    if result.ok:
        return True, result.end
    parses = len(head) < size and result.error is not None and "truncated" in result.error
    return parses, result.error_pos or 0


class RawPickleLoader(PickleFamilyLoader):
    """Any pickle stream. Claims protocol 2–5 headers, and protocol 0/1 content that parses as a pickle or
    sits in a file with a pickle-like extension (so broken pickles get a clear error, not silence)."""

    name = "pickle"

    def sniff(self, probe: Probe) -> bool:
        if probe.is_dir or not probe.head:
            return False
        if looks_like_pickle(probe.head):
            return True
        if probe.head[0] not in _OPCODE_BYTES:
            return False
        parses, progress = _pickle_prefix(probe.head, probe.size)
        if parses:
            return _plausible_pickle(probe)
        # Broken pickles under a pickle-like name still get a clear error here (binary content, or text that runs
        # as several opcodes before failing); plain text is left to discovery.
        return probe.suffix in PICKLE_SUFFIXES and (progress >= 8 or not _is_text(probe.head))

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return safe_load(self.name, path, rel, options, _load_raw)


def _plausible_pickle(probe: Probe) -> bool:
    """Protocol 0/1 opcodes are printable, so prose can parse as a pickle ('Copyright (c) ...' does). Under a
    name that is not a pickle's, text is claimed only when what parses imports or calls something (a payload
    hidden in an odd file) or is the whole file."""
    if probe.suffix in PICKLE_SUFFIXES or not _is_text(probe.head):
        return True
    result = run_pickle(probe.head, 0, Limits(max_opcodes=2_000))
    if result.globals or result.calls:
        return True
    whole_file = probe.size == len(probe.head) and not probe.head[result.end:].strip()
    return result.ok and whole_file


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


load_raw_body = _load_raw
LOADER = RawPickleLoader()
