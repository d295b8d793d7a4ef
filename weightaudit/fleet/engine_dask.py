"""Dask engine (``pip install 'weightaudit[dask]'``): one task per release (or per stage of a split release) on a
``distributed`` cluster — a ``LocalCluster`` started here (processes, one thread each, no dashboard) or an
existing scheduler (``--scheduler tcp://host:8786``; its workers must see the same paths). At most ``2 x jobs``
tasks are in flight; results stream back to this process, the single database writer.

A task lost with its worker (killed, out of memory) is rescheduled by Dask's scheduler on another worker (up to
its ``allowed-failures``), then recorded as failed. ``--timeout`` counts from when the task starts running on a
worker, not from submission (a task queued behind a slow one has not started): each task announces its start
on a per-batch event topic, and this process times it from that announcement (a result that comes back
having run longer, by its own clock, is a timeout too). A late task is cancelled and recorded as timed out; on
a cluster started here its worker is also restarted (a thread cannot be stopped, a process can), so a hung
release does not hold a worker. ``--max-memory`` becomes the local cluster's per-worker
memory limit (its nanny restarts a worker above it; the task is then lost, retried, and recorded as failed)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from weightaudit.errors import UsageError
from weightaudit.fleet.engine import EngineConfig
from weightaudit.fleet.task import failed
from weightaudit.fleet.work import Work

RETRIES = 2                 # re-runs of a task that raised (ours never raise; lost tasks are the scheduler's)
IN_FLIGHT_PER_WORKER = 2    # tasks in flight per worker (bounded: results stream back as they finish)
WAIT_S = 1.0                # how often a waiting loop checks deadlines


def _imports() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise UsageError("--engine dask needs dask's distributed scheduler: pip install 'weightaudit[dask]'") from exc
    return distributed


def run_on_worker(unit: Any, topic: str, token: str) -> Any:
    """The function Dask runs: announce the start (``--timeout`` counts from here), then run the unit."""
    from weightaudit.fleet.task import run_unit

    try:
        import distributed

        worker = distributed.get_worker()
        worker.log_event(topic, {"token": token, "worker": worker.address})
    except (ImportError, ValueError):
        pass                                    # not inside a Dask worker (a direct call)
    return run_unit(unit)


def _wait_some(distributed: Any, futures: list[Any], timeout_s: float) -> set[Any]:
    """The futures done within ``timeout_s`` (at least one unless the wait timed out)."""
    try:
        done, _ = distributed.wait(futures, timeout=timeout_s, return_when="FIRST_COMPLETED")
    except distributed.TimeoutError:
        return set()
    return set(done)


class _Starts:
    """When (this process's monotonic clock) and where each task last started, from the workers' events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, str]] = {}

    def record(self, event: Any) -> None:       # called on the client's event-loop thread
        _timestamp, message = event
        with self._lock:
            self._seen[message["token"]] = (time.monotonic(), message["worker"])

    def get(self, token: str) -> tuple[float, str] | None:
        with self._lock:
            return self._seen.get(token)


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

    def run(self, work: Work) -> None:
        distributed = _imports()
        client, cluster = self._client()
        topic = f"weightaudit-started-{uuid.uuid4().hex}"
        starts = _Starts()
        client.subscribe_topic(topic, starts.record)
        in_flight: dict[Any, Any] = {}       # future -> unit
        window = max(1, self.config.jobs) * IN_FLIGHT_PER_WORKER
        try:
            while True:
                while len(in_flight) < window:
                    unit = work.take()
                    if unit is None:
                        break
                    token = f"weightaudit-{unit.index}-{type(unit).__name__}-{time.time_ns()}"
                    future = client.submit(run_on_worker, unit, topic, token, retries=RETRIES, pure=False, key=token)
                    in_flight[future] = unit
                if not in_flight:
                    if work.finished:
                        return
                    raise work.stalled()
                for future in _wait_some(distributed, list(in_flight), self._wait_s(in_flight, starts)):
                    unit = in_flight.pop(future)
                    work.deliver(unit, self._outcome(future, unit))
                self._expire(client, cluster, in_flight, starts, work)
        finally:
            for future in in_flight:
                future.cancel()
            client.close()
            if cluster is not None:
                cluster.close()

    def _wait_s(self, in_flight: dict[Any, Any], starts: _Starts) -> float:
        """Until the nearest deadline of a started task (so a late one is caught on time), at most WAIT_S."""
        if not self.config.timeout_s:
            return WAIT_S
        began = [seen[0] for seen in (starts.get(f.key) for f in in_flight) if seen is not None]
        if not began:
            return WAIT_S
        return min(WAIT_S, max(0.0, min(began) + self.config.timeout_s - time.monotonic()))

    def _outcome(self, future: Any, unit: Any) -> Any:
        """The task's result; a lost task's failure; a timeout when it ran past --timeout but came back before
        this process saw it late (its own measured run time decides: no clock skew, no event latency)."""
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost or failed task is that release's failure
            return failed(unit.index, f"worker lost: {type(exc).__name__}: {exc}")
        ran = getattr(result, "duration_s", 0.0)
        if self.config.timeout_s and ran >= self.config.timeout_s and getattr(result, "status", "ok") == "ok":
            return failed(unit.index, f"timeout: ran {ran:.3g} s, past {self.config.timeout_s:g} s", ran)
        return result

    def _expire(self, client: Any, cluster: Any, in_flight: dict[Any, Any], starts: _Starts, work: Work) -> None:
        if not self.config.timeout_s:
            return
        now = time.monotonic()
        for future, unit in list(in_flight.items()):
            seen = starts.get(future.key)
            if seen is None or now - seen[0] < self.config.timeout_s:
                continue
            future.cancel()
            del in_flight[future]
            if cluster is not None:         # our own cluster: free the worker still running the late task
                client.restart_workers([seen[1]], raise_for_error=False)
            work.deliver(unit, failed(unit.index, f"timeout: still running {self.config.timeout_s:g} s after it "
                                                  "started", now - seen[0]))
