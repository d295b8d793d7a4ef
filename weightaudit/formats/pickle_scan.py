"""Shared plumbing of the pickle-family loaders (:mod:`torch_pickle`, :mod:`numpy_npy`).

:class:`FileScan` collects what one load finds (pickle runs, findings, facts, tensors) and turns it into a
:class:`~weightaudit.model.LoadedFile` (the ``facts`` keys are listed in :mod:`weightaudit.formats.torch_pickle`).
:func:`safe_load` maps the file, runs a format's body over it and turns any parse failure into a one-line reason,
so loaders never raise on bad input. :class:`PickleFamilyLoader` gives every such loader the same ``iter_chunks``.
"""

from __future__ import annotations

import functools

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from weightaudit.collector import lazy_collections_while_loading
from weightaudit.formats.base import DEFAULT_CHUNK, LoadOptions, iter_contiguous_chunks
from weightaudit.formats.mapped_file import FileLimit, FileProblem, close_map, open_map
from weightaudit.formats.pickle_vm import Limits, PickleResult
from weightaudit.formats.torch_tensors import TENSOR_LAYOUTS, iter_layout_chunks
from weightaudit.limits import DEFAULT_LIMITS
from weightaudit.model import FileStatus, Finding, LoadedFile, Role, TensorInfo
from weightaudit.rules import get_rule
from weightaudit.rules import pickle_rules as R

__all__ = ["FileScan", "limits_for", "safe_load", "report_trailing_data", "PickleFamilyLoader", "resolved_path"]


@dataclass
class FileScan:
    """Everything collected while reading one file."""

    rel: str
    size: int
    results: list[tuple[str, int, PickleResult]] = field(default_factory=list)   # (where, base offset, result)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    error: str | None = None
    verified: bool = True
    torch_refusals: list[str] = field(default_factory=list)
    pickle_allow: tuple[Any, ...] = ()     # the user's policy pickle.allow entries (LoadOptions.pickle_allow)
    nested_opcodes: int = DEFAULT_LIMITS.nested_pickle_opcodes   # per pickle hidden in a constant (policy limits)
    hidden_pickles: int = DEFAULT_LIMITS.hidden_pickles_per_file  # pickles hidden in constants, scanned per pickle

    def add_pickle(self, where: str, base: int, result: PickleResult, data: memoryview) -> None:
        self.results.append((where, base, result))
        found = R.pickle_findings(result, self.rel, where, base, data, allow=self.pickle_allow,
                                  nested_opcodes=self.nested_opcodes, hidden_pickles=self.hidden_pickles)
        self.findings.extend(found)
        if any(a.kind == "limit" for a in result.anomalies) or any(f.rule_id == "WA405" for f in found):
            self.verified = False
        if result.error is not None and result.error_pos != result.start:
            # A pickle that breaks after it started: what follows was only scanned linearly (its globals and
            # calls are reported, see pickle_recover), never run; bytes that are not a pickle at all after a clean
            # one are the trailing-data finding instead.
            self.verified = False

    def finish(self, fmt: str, path: Path) -> LoadedFile:
        pickles = [r for _, _, r in self.results]
        reasons = self.torch_refusals + R.weights_only_problems(pickles)
        if self.error:
            reasons.append(f"unreadable: {self.error}")
        calls = R.executing_calls(pickles, self.pickle_allow)
        self.facts.update({
            "pickle_globals": sorted({u.ref.qualname for r in pickles for u in r.globals}),
            "pickle_calls": calls[:200],
            "pickles": [{"member": w, "offset": b + r.start, "protocol": r.protocol, "opcodes": sum(r.opcodes.values()),
                         "error": r.error} for w, b, r in self.results[:1000]],
            "weights_only_accepts": not reasons,
            "weights_only_reasons": reasons[:20],
            "executes_code": bool(calls),
        })
        if reasons and pickles:
            self.findings.append(R.WEIGHTS_ONLY_REFUSED.finding(self.rel, "torch.load with weights_only=True would refuse "
                                                                          f"this file: {reasons[0]}"))
        self.facts["optimizer_parameter_count"] = sum(t.parameter_count for t in self.tensors
                                                      if t.role is Role.OPTIMIZER)
        status = FileStatus.ERROR if self.error else FileStatus.OK
        return LoadedFile(path=self.rel, format=fmt, size_bytes=self.size, tensors=tuple(self.tensors),
                          findings=tuple(self.findings), facts=self.facts, status=status,
                          reason=f"{self.rel}: {self.error}" if self.error else None,
                          verified=self.verified and not self.error)


def limits_for(options: LoadOptions) -> Limits:
    """The pickle machine's bounds for this load, from the user's policy limits (``LoadOptions.limits``)."""
    user = options.limits
    return Limits(max_opcodes=min(options.max_pickle_opcodes, user.pickle_opcodes), max_memo=user.pickle_memo,
                  max_stack=user.pickle_stack, max_marks=user.pickle_marks, max_tuple_depth=user.pickle_tuple_depth,
                  max_scan_steps=user.pickle_scan_steps)


def safe_load(fmt: str, path: Path, rel: str, options: LoadOptions, body: Any) -> LoadedFile:
    """Run ``body(scan, view)`` over the mapped file; never raises on bad input."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return LoadedFile(rel, fmt, 0, status=FileStatus.ERROR, reason=f"{rel}: cannot read ({exc.strerror})",
                          verified=False)
    scan = FileScan(rel, size, pickle_allow=tuple(getattr(options, "pickle_allow", ())),
                    nested_opcodes=options.limits.nested_pickle_opcodes,
                    hidden_pickles=options.limits.hidden_pickles_per_file)
    try:
        owner, view = open_map(path)
    except OSError as exc:
        return LoadedFile(rel, fmt, size, status=FileStatus.ERROR, reason=f"{rel}: cannot read ({exc.strerror})",
                          verified=False)
    try:
        with lazy_collections_while_loading():
            body(scan, view, options, str(path.resolve()))
    except FileLimit as exc:
        scan.findings.append(get_rule("WA132").finding(rel, str(exc)))
        scan.error = str(exc)
    except FileProblem as exc:
        scan.error = str(exc)
    except (struct.error, ValueError, IndexError, OverflowError, MemoryError, RecursionError) as exc:
        scan.error = f"cannot parse ({type(exc).__name__}: {exc})"
    finally:
        close_map(owner, view)
    return scan.finish(fmt, path)


def report_trailing_data(scan: FileScan, results: list[PickleResult], stopped: int, total: int, where: str) -> None:
    """WA4xx finding when bytes after the last clean pickle of a stream are not a pickle."""
    last = results[-1] if results else None
    if last is not None and not last.ok and len(results) > 1 and last.error_pos == last.start:
        scan.findings.append(R.TRAILING_PICKLE_DATA.finding(
            scan.rel, f"{total - last.start} bytes after the last pickle are not a pickle ({last.error})",
            where=f"{where} byte {last.start}"))


@functools.lru_cache(maxsize=1024)
def resolved_path(path: str) -> str:
    """The real path TENSOR_LAYOUTS is keyed by; resolving it once per file, not per tensor (100,000 realpath
    walks were 10% of a 100,000-tensor audit)."""
    return str(Path(path).resolve())


class PickleFamilyLoader:
    """Common ``iter_chunks`` for every pickle-family loader: strided, compressed or legacy tensors."""

    name = "pickle"

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int = DEFAULT_CHUNK) -> Iterator[memoryview]:
        if tensor.data_offsets is not None:  # the raw bytes in the file (stored torch records, .npy, .npz members)
            return iter_contiguous_chunks(Path(path), tensor.data_offsets[0], tensor.data_offsets[1], chunk_bytes)
        key = (resolved_path(str(path)), tensor.name)
        if key not in TENSOR_LAYOUTS:
            self.load(Path(path), tensor.file, LoadOptions())     # type: ignore[attr-defined]
        layout = TENSOR_LAYOUTS.get(key)
        if layout is not None:
            return iter_layout_chunks(Path(path), layout, chunk_bytes)
        raise ValueError(f"{tensor.file}: tensor {tensor.name!r} has no readable byte range")
