"""fleet.work hands out a split release's stages as their inputs come back, ahead of new releases, and reports
each release exactly once: the first failed stage fails it, later results of its other stages are dropped."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from weightaudit.fleet import work as work_module
from weightaudit.fleet.split import LoadPart, MeasurePart, MergeParts, SplitJob, StageResult
from weightaudit.fleet.task import AuditOptions, Outcome, Task, failed
from weightaudit.fleet.work import Work
from weightaudit.model import LoadedFile


def _work(monkeypatch: pytest.MonkeyPatch, outcomes: list[Outcome]) -> tuple[Work, Task]:
    big, small = Task(0, "/fleet/big", AuditOptions()), Task(1, "/fleet/small", AuditOptions())
    job = SplitJob(big, SimpleNamespace(root="/fleet/big"), (("a.safetensors",), ("b.safetensors",)))
    monkeypatch.setattr(work_module, "plan_split", lambda task, above: job if task is big else None)
    return Work([big, small], outcomes.append, split_above_bytes=100, sizes={0: 1000, 1: 10}), small


def _loaded(name: str) -> tuple[LoadedFile, ...]:
    return (LoadedFile(name, "safetensors", 8),)


def test_stages_follow_their_inputs_ahead_of_new_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[Outcome] = []
    work, small = _work(monkeypatch, outcomes)
    load_a, load_b = work.take(), work.take()
    assert isinstance(load_a, LoadPart) and isinstance(load_b, LoadPart) and (load_a.part, load_b.part) == (0, 1)
    work.deliver(load_b, StageResult(0, 1, _loaded("b.safetensors"), 0.5, 100))
    assert work.take() is small                           # nothing of the big release is ready yet
    assert work.take() is None and not work.finished
    work.deliver(load_a, StageResult(0, 0, _loaded("a.safetensors"), 0.25, 300))
    measures = [work.take(), work.take()]
    assert all(isinstance(m, MeasurePart) for m in measures)
    assert [m.files[0].path for m in measures] == ["a.safetensors", "b.safetensors"]
    for measure in measures:
        work.deliver(measure, StageResult(0, measure.part, {(measure.files[0].path, "w"): "stats"}, 1.0, 200))
    merge = work.take()
    assert isinstance(merge, MergeParts) and [f.path for f in merge.files] == ["a.safetensors", "b.safetensors"]
    assert merge.measured == {("a.safetensors", "w"): "stats", ("b.safetensors", "w"): "stats"}
    work.deliver(small, Outcome(1, "ok", exit_code=0))
    work.deliver(merge, Outcome(0, "ok", exit_code=1, duration_s=0.25, peak_memory_bytes=50))
    assert work.take() is None and work.finished
    assert [(o.index, o.status) for o in outcomes] == [(1, "ok"), (0, "ok")]
    assert (outcomes[1].duration_s, outcomes[1].peak_memory_bytes) == (3.0, 300)    # every stage counted


def test_the_first_failed_stage_fails_the_release_once(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[Outcome] = []
    work, small = _work(monkeypatch, outcomes)
    load_a, load_b = work.take(), work.take()
    work.deliver(load_a, failed(0, "worker died: signal SIGKILL"))
    work.deliver(load_b, StageResult(0, 1, _loaded("b.safetensors"), 0.5, 100))     # too late: dropped
    work.deliver(load_b, failed(0, "timeout: still running after 1 s"))
    assert work.take() is small
    work.deliver(small, Outcome(1, "ok", exit_code=0))
    assert work.take() is None and work.finished
    assert [(o.index, o.status, o.reason) for o in outcomes] == [(0, "failed", "worker died: signal SIGKILL"),
                                                                 (1, "ok", None)]


def test_releases_at_or_below_the_threshold_are_not_even_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    planned: list[int] = []
    monkeypatch.setattr(work_module, "plan_split", lambda task, above: planned.append(task.index))
    tasks = [Task(i, f"/fleet/{i}", AuditOptions()) for i in range(3)]
    work = Work(tasks, lambda outcome: None, split_above_bytes=100, sizes={0: 100, 1: 101})
    assert [work.take() for _ in range(3)] == tasks and planned == [1, 2]      # 2: size unknown
    never = Work(tasks, lambda outcome: None, split_above_bytes=None, sizes={0: 10**12})
    assert never.take() is tasks[0] and planned == [1, 2]
