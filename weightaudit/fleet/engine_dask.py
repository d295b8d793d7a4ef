"""Dask engine (``pip install 'weightaudit[dask]'``): one task per release on a ``distributed`` cluster — a
``LocalCluster`` started here (processes, one thread each, no dashboard) or an existing scheduler
(``--scheduler tcp://host:8786``; its workers must see the same paths). At most ``2 x jobs`` tasks are in
flight; results stream back to this process, the single database writer. A task lost with its worker is retried
by Dask (``RETRIES``), then recorded as failed. ``--timeout`` is measured from submission; a late task is
cancelled and recorded as timed out. ``--max-memory`` becomes the local cluster's per-worker memory limit (its
nanny restarts a worker above it; the task is then lost, retried, and recorded as failed)."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

from weightaudit.errors import UsageError
from weightaudit.fleet.engine import EngineConfig
from weightaudit.fleet.task import Outcome, Task, failed

RETRIES = 2
IN_FLIGHT_PER_WORKER = 2    # tasks in flight per worker (bounded: results stream back as they finish)
WAIT_S = 1.0        # how often a waiting loop checks deadlines


def _imports() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise UsageError("--engine dask needs dask's distributed scheduler: pip install 'weightaudit[dask]'") from exc
    return distributed


def _wait_some(distributed: Any, futures: list[Any], timeout_s: float) -> set[Any]:
    """The futures done within ``timeout_s`` (at least one unless the wait timed out)."""
    try:
        done, _ = distributed.wait(futures, timeout=timeout_s, return_when="FIRST_COMPLETED")
    except distributed.TimeoutError:
        return set()
    return set(done)


class DaskEngine:
    name = "dask"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def _client(self) -> tuple[Any, Any]:
        distributed = _imports()
        if self.config.scheduler:
            return distributed.Client(self.config.scheduler, timeout="30s"), None
        cluster = distributed.LocalCluster(n_workers=max(1, self.config.jobs), threads_per_worker=1, processes=True,
                                           dashboard_address=None, memory_limit=self.config.max_memory_bytes or 0,
                                           silence_logs=50)
        return distributed.Client(cluster), cluster

    def run(self, tasks: Iterable[Task], on_outcome: Callable[[Outcome], None]) -> None:
        from weightaudit.fleet.task import run_task

        distributed = _imports()
        client, cluster = self._client()
        pending: Iterator[Task] = iter(tasks)
        in_flight: dict[Any, tuple[Task, float]] = {}
        window = max(1, self.config.jobs) * IN_FLIGHT_PER_WORKER
        try:
            while True:
                while len(in_flight) < window:
                    task = next(pending, None)
                    if task is None:
                        break
                    future = client.submit(run_task, task, retries=RETRIES, pure=False,
                                           key=f"weightaudit-release-{task.index}-{time.time_ns()}")
                    in_flight[future] = (task, time.monotonic())
                if not in_flight:
                    return
                done = _wait_some(distributed, list(in_flight), self._wait_s(in_flight))
                for future in done:
                    task, _started = in_flight.pop(future)
                    on_outcome(self._outcome(future, task))
                self._expire(in_flight, on_outcome)
        finally:
            for future in in_flight:
                future.cancel()
            client.close()
            if cluster is not None:
                cluster.close()

    def _wait_s(self, in_flight: dict[Any, tuple[Task, float]]) -> float:
        """Until the nearest deadline (so a late task is caught on time), at most WAIT_S."""
        if not self.config.timeout_s:
            return WAIT_S
        nearest = min(started for _, started in in_flight.values()) + self.config.timeout_s
        return min(WAIT_S, max(0.0, nearest - time.monotonic()))

    def _outcome(self, future: Any, task: Task) -> Outcome:
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - a lost or failed task is that release's failure
            return failed(task.index, f"worker lost: {type(exc).__name__}: {exc}")

    def _expire(self, in_flight: dict[Any, tuple[Task, float]], on_outcome: Callable[[Outcome], None]) -> None:
        if not self.config.timeout_s:
            return
        now = time.monotonic()
        for future, (task, started) in list(in_flight.items()):
            if now - started >= self.config.timeout_s:
                future.cancel()
                del in_flight[future]
                on_outcome(failed(task.index, f"timeout: not finished {self.config.timeout_s:g} s after submission",
                                  now - started))
