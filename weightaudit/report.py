"""The report every command produces, and its JSON form (schema_version 1, schemas/report.v1.schema.json).

Ordering is deterministic: files and tensors by path then name, findings by path, rule, tensor.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator, Mapping

from weightaudit import __version__
from weightaudit.errors import ExitCode
from weightaudit.model import FileStatus, Finding, LoadedFile, Release, Role, Severity, TensorInfo, TensorStats

SCHEMA_VERSION = "1"


class Verdict(str, enum.Enum):
    """The one answer of a report. Exit code, last text line, JSON ``summary.verdict``, Markdown heading and SARIF
    invocation status are all read from it."""

    PASS = "pass"               # every file verified, nothing at or above --fail-on
    FAIL = "fail"               # findings at or above --fail-on
    INCOMPLETE = "incomplete"   # something could not be verified (and nothing failed)

    @property
    def exit_code(self) -> ExitCode:
        return _VERDICT_EXIT[self]


_VERDICT_EXIT = {Verdict.PASS: ExitCode.OK, Verdict.FAIL: ExitCode.FINDINGS, Verdict.INCOMPLETE: ExitCode.INCOMPLETE}
# What a failing finding means to a person, by rule range (WA1xx integrity ... WA6xx credentials).
_PROBLEM_WORDS = (("WA1", "BROKEN"), ("WA2", "BROKEN"), ("WA3", "DEFECTIVE"), ("WA4", "UNSAFE"),
                  ("WA5", "NOT OPEN"), ("WA6", "UNSAFE"))


@dataclass(frozen=True)
class Report:
    command: str
    release: Release
    files: tuple[LoadedFile, ...]
    findings: tuple[Finding, ...]
    stats: Mapping[tuple[str, str], TensorStats] = field(default_factory=dict)
    suppressed: tuple[Finding, ...] = ()
    fail_on: Severity | None = None
    scorecard: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()     # e.g. expired ignore entries, policy source
    policy: Mapping[str, Any] | None = None   # which policy applied: {path, source: cli|discovered|default}
    copies: tuple[Any, ...] = ()    # copies.CopyGroup: one model in several containers (summary counts it once)
    model: Mapping[str, Any] | None = None     # model_facts: what config.json says the model is
    adapter: Mapping[str, Any] | None = None   # model_facts: a PEFT adapter_config.json

    @property
    def target(self) -> str:
        return self.release.target

    @cached_property
    def tensors(self) -> list[TensorInfo]:
        """Every tensor by file then name (sorted once: the summary, the JSON and the text table all read it)."""
        return sorted((t for f in self.files for t in f.tensors), key=lambda t: (t.file, t.name))

    @property
    def weight_files(self) -> list[LoadedFile]:
        return [f for f in self.files if f.format != "unknown" or f.tensors]

    @property
    def verified(self) -> bool:
        """True only when every file was fully checked and there was at least one weight file."""
        return bool(self.files) and all(f.verified for f in self.files)

    def failing(self) -> list[Finding]:
        if self.fail_on is None:
            return []
        return [f for f in self.findings if f.severity >= self.fail_on]

    @cached_property
    def verdict(self) -> Verdict:
        """Computed here and only here."""
        if self.failing():
            return Verdict.FAIL
        if not self.verified:
            return Verdict.INCOMPLETE
        return Verdict.PASS

    @property
    def exit_code(self) -> ExitCode:
        return self.verdict.exit_code

    def to_dict(self) -> dict[str, Any]:
        """The JSON report, exactly as ``--format json`` writes it (module function ``to_dict``)."""
        return to_dict(self)


def problem_word(rule_id: str) -> str:
    return next((word for prefix, word in _PROBLEM_WORDS if rule_id.startswith(prefix)), "FAIL")


def headline(report: Report) -> str:
    """The verdict in words, first line of the summary box: ``BROKEN: model.safetensors: ...``."""
    if report.verdict is Verdict.FAIL:
        failing = sorted(report.failing(), key=lambda f: (-f.severity, f.sort_key()))
        worst = failing[0]
        more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
        return f"{problem_word(worst.rule_id)}: {worst.path}: {worst.message}{more}"
    if report.verdict is Verdict.INCOMPLETE:
        unverified = [f for f in report.files if not f.verified]
        if not unverified:
            return f"INCOMPLETE: no weight files found in {report.target}"
        more = f" (+{len(unverified) - 1} more)" if len(unverified) > 1 else ""
        first = unverified[0]
        return f"INCOMPLETE: {first.path}: {first.reason or first.status.value}{more}"
    checked = f"{len(report.files)} file(s) verified"
    return f"OK: {checked}" + (f", nothing at or above {report.fail_on.label}" if report.fail_on else "")


def verdict_line(report: Report) -> str:
    """The last line of text output; agrees with the exit code because both come from ``report.verdict``."""
    code = int(report.exit_code)
    threshold = report.fail_on.label if report.fail_on is not None else None
    if report.verdict is Verdict.FAIL:
        return f"FAIL (exit {code}): {len(report.failing())} finding(s) at or above {threshold}"
    if report.verdict is Verdict.INCOMPLETE:
        unverified = sum(1 for f in report.files if not f.verified)
        what = f"{unverified} file(s) could not be verified" if unverified else "no weight files found"
        return f"INCOMPLETE (exit {code}): {what}"
    return f"PASS (exit {code}): " + (f"nothing at or above {threshold}" if threshold else "every file verified")


def release_rows(report: Report) -> list[tuple[str, str]]:
    """Summary rows about what the release is (text and Markdown): the cache repository and revision."""
    rows: list[tuple[str, str]] = []
    hub = report.release.hub
    if hub is not None:
        rows.append(("Repository", f"{hub.repository} @ {hub.ref} ({hub.revision})" if hub.ref
                     else f"{hub.repository} @ {hub.revision}"))
    if report.model or report.adapter:
        from weightaudit.model_facts import adapter_line, facts_line

        if report.model:
            rows.append(("Model", facts_line(report.model)))
        if report.adapter:
            rows.append(("Adapter", adapter_line(report.adapter)))
    for group in report.copies:
        listed = "; ".join(f"{_file_list(m.files)} ({m.format}{', counted' if m.primary else ''})"
                           for m in group.members)
        rows.append(("Copies", f"{len(group.members)} copies of one model: {listed}"))
    return rows


def _file_list(files: tuple[str, ...]) -> str:
    """Up to two names; 30 shards read ``first, second … (30 files)``."""
    return ", ".join(files) if len(files) <= 2 else f"{files[0]}, {files[1]} … ({len(files)} files)"


def combined_verdict(reports: "list[Report] | tuple[Report, ...]") -> Verdict:
    """Several releases: any fail fails; else any incomplete is incomplete."""
    verdicts = {r.verdict for r in reports}
    for verdict in (Verdict.FAIL, Verdict.INCOMPLETE):
        if verdict in verdicts:
            return verdict
    return Verdict.PASS


def parameter_count_by_dtype(tensors: list[TensorInfo]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for tensor in tensors:
        counts[tensor.dtype] += tensor.parameter_count
    return dict(sorted(counts.items()))


def total_bytes(tensors: list[TensorInfo]) -> int:
    return sum(t.nbytes or 0 for t in tensors)


def counted_tensors(report: Report) -> list[TensorInfo]:
    """The tensors the summary counts: a model shipped in several containers counts once (its primary copy)."""
    if not report.copies:
        return report.tensors
    from weightaudit.copies import secondary_files

    skip = secondary_files(report.copies)
    return [t for t in report.tensors if t.file not in skip]


def _parameter_counts(tensors: list[TensorInfo]) -> tuple[int, dict[str, int], int]:
    """Parameters in all, by dtype (sorted), and in optimizer state: one pass over the tensors."""
    by_dtype: Counter[str] = Counter()
    optimizer = 0
    for tensor in tensors:
        count = tensor.parameter_count
        by_dtype[tensor.dtype] += count
        if tensor.role is Role.OPTIMIZER:
            optimizer += count
    return sum(by_dtype.values()), dict(sorted(by_dtype.items())), optimizer


def summary(report: Report) -> dict[str, Any]:
    tensors = counted_tensors(report)
    by_severity = Counter(f.severity.label for f in report.findings)
    parameters, by_dtype, optimizer = _parameter_counts(tensors)
    out = {
        "files": len(report.files),
        "formats": sorted({f.format for f in report.files if f.status is FileStatus.OK}),
        "tensor_count": len(tensors),
        "parameter_count": parameters,
        "parameter_count_by_dtype": by_dtype,
        "optimizer_parameter_count": optimizer,
        "total_bytes": total_bytes(tensors),
        "findings_by_severity": {s.label: by_severity.get(s.label, 0) for s in reversed(Severity)},
        "suppressed_findings": len(report.suppressed),
        "verified": report.verified,
        "verdict": report.verdict.value,
    }
    if report.copies:
        out["copies"] = [m.to_dict(i) for i, group in enumerate(report.copies) for m in group.members]
    if report.model:
        out["model"] = dict(report.model)
    if report.adapter:
        out["adapter"] = dict(report.adapter)
    return out


def _finite(value: float | None) -> float | str | None:
    """JSON has no NaN/Infinity: encode them as strings so the output stays strict JSON."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def stats_dict(stats: TensorStats) -> dict[str, Any]:
    low, high, mean, std, max_abs = stats.min, stats.max, stats.mean, stats.std, stats.max_abs
    try:   # one test for the usual case (a report of 100,000 tensors): every value finite
        plain = math.isfinite(low + high + mean + std + max_abs)  # type: ignore[operator]
    except (TypeError, OverflowError):   # None among them
        plain = False
    if not plain:
        low, high, mean, std, max_abs = map(_finite, (low, high, mean, std, max_abs))
    return {
        "count": stats.count, "min": low, "max": high, "mean": mean,
        "std": std, "zeros": stats.zeros, "nan": stats.nan, "inf": stats.pos_inf + stats.neg_inf,
        "pos_inf": stats.pos_inf, "neg_inf": stats.neg_inf, "fp16_overflow": stats.fp16_overflow,
        "max_abs": max_abs, "max_abs_index": stats.max_abs_index,
        "fingerprint": stats.fingerprint, "histogram": list(stats.histogram),
    }


_ROLE_VALUES = {role: role.value for role in Role}   # (an enum's .value is a descriptor call: 20,000 of them show)


def tensor_dict(tensor: TensorInfo, stats: TensorStats | None) -> dict[str, Any]:
    offsets = tensor.data_offsets
    out: dict[str, Any] = {
        "name": tensor.name, "file": tensor.file, "dtype": tensor.dtype, "shape": list(tensor.shape),
        "parameter_count": tensor.parameter_count,
        "data_offsets": list(offsets) if offsets else None,
        "role": _ROLE_VALUES[tensor.role],
    }
    if tensor.storage is not None:
        out["storage"] = tensor.storage
    if tensor.strides is not None:
        out["strides"] = list(tensor.strides)
    if stats is not None:
        out["stats"] = stats_dict(stats)
    return out


def iter_tensor_dicts(report: Report) -> Iterator[dict[str, Any]]:
    """The report's "tensors" entries one at a time (the JSON renderer writes them without holding them all)."""
    stats = report.stats
    return (tensor_dict(t, stats.get((t.file, t.name))) for t in report.tensors)


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "rule_id": finding.rule_id, "severity": finding.severity.label, "path": finding.path,
        "tensor": finding.tensor, "message": finding.message, "where": finding.where,
        "fingerprint": finding.fingerprint,
    }


def file_dict(loaded: LoadedFile) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": loaded.path, "format": loaded.format, "size_bytes": loaded.size_bytes,
        "tensor_count": len(loaded.tensors), "parameter_count": loaded.parameter_count,
        "status": loaded.status.value, "reason": loaded.reason, "verified": loaded.verified,
    }
    metadata = loaded.facts.get("metadata") if loaded.facts else None
    if metadata:
        out["metadata"] = dict(metadata)
    torch_load = torch_load_verdict(loaded)
    if torch_load is not None:
        out["torch_load"] = torch_load
    return out


def torch_load_verdict(loaded: LoadedFile) -> dict[str, Any] | None:
    """For pickle-based files: would torch's weights-only loader accept it; would a full unpickle run code?"""
    facts = loaded.facts or {}
    if "weights_only_accepts" not in facts:
        return None
    calls = [c for c in facts.get("pickle_calls", ()) if not str(c).startswith("import ")]
    return {
        "weights_only_accepts": bool(facts["weights_only_accepts"]),
        "weights_only_reasons": list(facts.get("weights_only_reasons", ())),
        "unsafe_load_executes_code": bool(facts.get("executes_code")),
        "calls": [str(c) for c in calls],
    }


def torch_load_sentence(verdict: Mapping[str, Any]) -> str:
    """One line for humans: what each torch.load mode would do with the file."""
    safe = ("torch.load(weights_only=True) accepts it" if verdict["weights_only_accepts"] else  # noqa: WA-safe (text)
            "torch.load(weights_only=True) refuses it ("  # noqa: WA-safe (text only, nothing is loaded)
            + "; ".join(verdict["weights_only_reasons"]) + ")")
    if verdict["unsafe_load_executes_code"]:
        shown = ", ".join(verdict["calls"][:3]) + (" …" if len(verdict["calls"]) > 3 else "")
        unsafe = f"weights_only=False would EXECUTE code: {shown}" if shown else \
            "weights_only=False would import and run code"
    else:
        unsafe = "weights_only=False would run no code"
    return f"{safe}; {unsafe}"


def tool_block(report: Report) -> dict[str, Any]:
    """Name and version; with statistics, which kernel computed them ("c-avx512", "c-avx2", "numpy" ...: it
    depends on the machine, so it appears only when statistics ran and the JSON goldens, run without, stay put)."""
    tool: dict[str, Any] = {"name": "weightaudit", "version": __version__}
    if report.stats:
        from weightaudit.stats_kernels import kernel_name   # numpy is loaded already when there are statistics

        tool["statistics_kernel"] = kernel_name()
    return tool


def to_dict(report: Report, *, tensors: bool = True) -> dict[str, Any]:
    """The JSON report. Keys per DESIGN.md; additions are backwards compatible. ``tensors=False`` leaves the
    "tensors" entry None (in its place) for a writer that streams them from ``iter_tensor_dicts``."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": tool_block(report),
        "command": report.command,
        "target": report.target,
        "summary": summary(report),
        "files": [file_dict(f) for f in report.files],
        "tensors": list(iter_tensor_dicts(report)) if tensors else None,
        "findings": [finding_dict(f) for f in report.findings],
        "suppressed": [finding_dict(f) for f in report.suppressed],
        "side_files": {k: list(v) for k, v in report.release.side_files.items()},
        "notes": list(report.notes),
    }
    if report.release.hub is not None:
        out["release"] = report.release.hub.to_dict()
    if report.fail_on is not None:
        out["fail_on"] = report.fail_on.label
    if report.policy is not None:
        out["policy"] = dict(report.policy)
    if report.scorecard is not None:
        out["scorecard"] = report.scorecard
    return out
