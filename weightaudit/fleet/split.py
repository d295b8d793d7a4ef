"""Large releases split per file, merged before writing.

A release whose weight files hold more than ``--split-above`` bytes (default ``SPLIT_ABOVE_BYTES``) is audited
as separate tasks over consecutive parts of its weight files (each part at least a quarter of the threshold),
in three stages, so several workers share one big release:

1. ``LoadPart``: each part's files loaded (loaders and their per-file checks);
2. ``MeasurePart``: each part's tensor statistics, planned for the whole release's tensor bytes (so every tensor
   is cut into the same pieces and its mean/std have the same bits as in one pass over the release);
3. ``MergeParts``: statistics fingerprints confirmed across all files, then everything release-level (shards,
   index, copies and duplicates across files, openness, scorecard) on the merged whole, through the same
   functions as ``pipeline.run``.

The stored report is therefore the one ``weightaudit audit RELEASE`` (``api.audit``) gives. Each stage is run by
the engine like a release: ``--timeout`` and ``--max-memory`` apply to each stage, and a failed stage fails the
release (``SplitJob`` in this module tracks a release's stages in the writer process).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightaudit.fleet.task import AuditOptions, Outcome, Task, audited, peak_rss_bytes

SPLIT_ABOVE_BYTES = 4 << 30      # default --split-above: releases with more weight-file bytes are split
PART_FRACTION = 4                # a part holds consecutive files of at least SPLIT_ABOVE / PART_FRACTION bytes


class ReleaseChanged(Exception):
    """A split release's files changed between its stages."""


@dataclass(frozen=True)
class StageResult:
    index: int
    part: int
    value: Any
    duration_s: float
    peak_memory_bytes: int


def run_options(path: str, options: AuditOptions) -> tuple[tuple[str, ...], Any]:
    """The one release group of ``path`` and the pipeline options ``api.audit`` runs it with (as run_task does)."""
    from weightaudit import api

    plan = api.audit_plan(path, policy=options.policy, fail_on=options.fail_on, select=options.select,
                          ignore=options.ignore, stats=options.stats, workers=1)
    (group,) = api.release_groups(path)
    return group, plan(group)


def _open(path: str, options: AuditOptions) -> tuple[Any, Any, Any]:
    from weightaudit import pipeline

    group, run = run_options(path, options)
    release, load_options = pipeline.open_release(group, run)
    return release, load_options, run


def _result(stage: Any, value: Any, started: float) -> StageResult:
    return StageResult(stage.index, stage.part, value, time.monotonic() - started, peak_rss_bytes())


@dataclass(frozen=True)
class LoadPart:
    index: int
    path: str
    options: AuditOptions
    part: int
    rels: tuple[str, ...]

    def run(self, started: float) -> StageResult:
        from weightaudit import pipeline

        release, load_options, _ = _open(self.path, self.options)
        refs = {ref.rel: ref for ref in release.weight_files}
        if not set(self.rels) <= set(refs):
            raise ReleaseChanged(f"weight files changed during the audit: {sorted(set(self.rels) - set(refs))}")
        return _result(self, pipeline.load_files([refs[rel] for rel in self.rels], load_options), started)


@dataclass(frozen=True)
class MeasurePart:
    index: int
    path: str
    options: AuditOptions
    part: int
    root: str
    files: tuple[Any, ...]          # this part's LoadedFile objects (ONNX external data already taken out)
    total_bytes: int                # tensor bytes of the whole release

    def run(self, started: float) -> StageResult:
        from weightaudit.stats import measure_files

        return _result(self, measure_files(Path(self.root), self.files, self.total_bytes), started)


@dataclass(frozen=True)
class MergeParts:
    index: int
    path: str
    options: AuditOptions
    files: tuple[Any, ...]          # every weight file's LoadedFile, in the release's order
    measured: dict[Any, Any]

    def run(self, started: float) -> Outcome:
        from weightaudit import api, pipeline
        from weightaudit.formats.onnx_release import absorb_external_data
        from weightaudit.stats import finish_measured

        release, load_options, run = _open(self.path, self.options)
        if tuple(ref.rel for ref in release.weight_files) != tuple(f.path for f in self.files):
            raise ReleaseChanged("weight files changed during the audit")
        loaded, release = absorb_external_data(self.files, release)
        stats = finish_measured(Path(release.root), loaded, self.measured) if run.stats else {}
        report = pipeline.finish_run(release, loaded, stats, load_options, run)
        return audited(self.index, report, api.scorecard(self.path, knowledge=self.options.knowledge), started)


def plan_split(task: Task, above_bytes: int | None) -> "SplitJob | None":
    """A SplitJob when ``task``'s release is one release group of 2+ weight files holding more than
    ``above_bytes``; None (audit it whole) otherwise, and whenever the release cannot be read here (the
    whole-release task then reports why, exactly as ``audit`` does)."""
    if above_bytes is None:
        return None
    try:
        release, _, _ = _open(task.path, task.options)
    except Exception:  # noqa: BLE001 - whatever discovery refuses, the whole audit reports
        return None
    refs = release.weight_files
    if len(refs) < 2 or sum(ref.size_bytes for ref in refs) <= above_bytes:
        return None
    parts: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for ref in refs:
        current.append(ref.rel)
        size += ref.size_bytes
        if size >= above_bytes // PART_FRACTION:
            parts.append(tuple(current))
            current, size = [], 0
    if current:
        parts.append(tuple(current))
    return SplitJob(task, release, tuple(parts)) if len(parts) > 1 else None


@dataclass
class SplitJob:
    """One split release in the writer process: which stages are back, what to run next."""

    task: Task
    release: Any                        # discovered here, for the ONNX external-data filter before measuring
    parts: tuple[tuple[str, ...], ...]
    loaded: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    measured: dict[int, dict[Any, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    peak_memory_bytes: int = 0

    def start(self) -> list[Any]:
        t = self.task
        return [LoadPart(t.index, t.path, t.options, number, rels) for number, rels in enumerate(self.parts)]

    def accept(self, stage: Any, result: StageResult) -> list[Any]:
        """Take a stage's result; the next stages once all parts of this one are back."""
        self.duration_s += result.duration_s
        self.peak_memory_bytes = max(self.peak_memory_bytes, result.peak_memory_bytes)
        done = self.loaded if isinstance(stage, LoadPart) else self.measured
        done[stage.part] = result.value
        if len(done) < len(self.parts):
            return []
        if isinstance(stage, LoadPart) and self.task.options.stats:
            return self._measure()
        measured = {key: value for number in range(len(self.parts))
                    for key, value in self.measured.get(number, {}).items()}
        t = self.task
        return [MergeParts(t.index, t.path, t.options, self._all_files(), measured)]

    def _all_files(self) -> tuple[Any, ...]:
        return tuple(f for number in range(len(self.parts)) for f in self.loaded[number])

    def _measure(self) -> list[Any]:
        from weightaudit.formats.onnx_release import absorb_external_data

        kept, _ = absorb_external_data(self._all_files(), self.release)
        keep = {f.path for f in kept}
        total = sum(t.nbytes or 0 for f in kept for t in f.tensors)
        t = self.task
        return [MeasurePart(t.index, t.path, t.options, number, str(self.release.root),
                            tuple(f for f in self.loaded[number] if f.path in keep), total)
                for number in range(len(self.parts))]

    def finish(self, outcome: Outcome) -> Outcome:
        """The release's outcome: the merge's (or a failed stage's), with every stage's time and peak memory."""
        peak = max(self.peak_memory_bytes, outcome.peak_memory_bytes or 0) or None
        return dataclasses.replace(outcome, duration_s=self.duration_s + outcome.duration_s, peak_memory_bytes=peak,
                                   extra={**outcome.extra, "split_parts": len(self.parts)})

