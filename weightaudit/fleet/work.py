"""What an engine runs, handed out as the batch goes: whole releases (``Task``) and the stages of split ones
(weightaudit/fleet/split.py), a stage as soon as its inputs are back (before any new release, so a split
release finishes early and its partial results do not pile up). Every result comes back through ``deliver``, in
the writer process; each release's outcome reaches ``on_outcome`` exactly once."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable, Iterator, Mapping

from weightaudit.fleet.split import SplitJob, plan_split
from weightaudit.fleet.task import Outcome, Task


class Work:
    def __init__(self, tasks: Iterable[Task], on_outcome: Callable[[Outcome], None],
                 split_above_bytes: int | None = None, sizes: Mapping[int, int] | None = None) -> None:
        """``sizes``: each release's bytes on disk by task index, when known (smaller releases are never split,
        so only the large ones are discovered here to be planned)."""
        self._pending: Iterator[Task] = iter(tasks)
        self._on_outcome = on_outcome
        self._split_above = split_above_bytes
        self._sizes = sizes or {}
        self._ready: deque[Any] = deque()
        self._jobs: dict[int, SplitJob] = {}      # release index -> its split job, until its outcome is out
        self._exhausted = False

    @property
    def finished(self) -> bool:
        """Nothing more will be handed out (what is in flight is the engine's to collect)."""
        return self._exhausted and not self._ready and not self._jobs

    def take(self) -> Any | None:
        """The next unit to run, or None when none is ready now."""
        if self._ready:
            return self._ready.popleft()
        while not self._exhausted:
            task = next(self._pending, None)
            if task is None:
                self._exhausted = True
                break
            job = self._plan(task)
            if job is None:
                return task
            self._jobs[task.index] = job
            self._ready.extend(job.start())
            return self._ready.popleft()
        return None

    def _plan(self, task: Task) -> SplitJob | None:
        size = self._sizes.get(task.index)
        if self._split_above is None or (size is not None and size <= self._split_above):
            return None
        return plan_split(task, self._split_above)

    def deliver(self, unit: Any, result: Any) -> None:
        """A unit's result: a release's Outcome, a stage's result, or the failed Outcome the engine made for it."""
        if isinstance(unit, Task):
            self._on_outcome(result)
            return
        job = self._jobs.get(unit.index)
        if job is None:
            return                            # its release already failed in another stage
        if isinstance(result, Outcome):       # the merge, or a failed stage: the release is done
            del self._jobs[unit.index]
            self._on_outcome(job.finish(result))
            return
        self._ready.extend(job.accept(unit, result))

    def stalled(self) -> RuntimeError:
        return RuntimeError("batch scheduling: nothing running and nothing ready, yet releases remain")
