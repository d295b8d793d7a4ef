"""Local engine: ``jobs`` forked worker processes, one unit of work each at a time (a release, or a stage of a
split one; so at most ``jobs`` in flight). A worker past ``--timeout`` is killed and replaced (the release is
recorded as timed out); a worker that dies (a signal, the kernel's OOM killer) is replaced and its release
recorded as failed. Each worker limits its own
address space (RLIMIT_AS) to what it had at start plus ``--max-memory``; the audit inside hits MemoryError."""

from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from weightaudit.fleet.engine import EngineConfig
from weightaudit.fleet.task import Outcome, failed, limit_memory, run_unit
from weightaudit.fleet.work import Work


def _worker_main(conn: Connection, max_memory: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # the parent decides what a Ctrl-C stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    limit_memory(max_memory)
    while True:
        try:
            unit = conn.recv()
        except (EOFError, OSError):
            return
        if unit is None:
            return
        conn.send(run_unit(unit))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: Any = None            # the unit it is running (a Task or a split release's stage)
    started: float = 0.0


class LocalEngine:
    name = "local"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._context = multiprocessing.get_context("fork")
        self._workers: list[_Worker] = []

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_worker_main, args=(child, self.config.max_memory_bytes),
                                        name="weightaudit-batch", daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, work: Work) -> None:
        try:
            self._workers = [self._spawn() for _ in range(max(1, self.config.jobs))]
            while True:
                self._feed(work)
                busy = [w for w in self._workers if w.task is not None]
                if not busy:
                    if work.finished:
                        return
                    raise work.stalled()
                ready = wait([w.conn for w in busy], timeout=self._wait_s(busy))
                for worker in busy:
                    unit = worker.task
                    if worker.conn in ready:
                        work.deliver(unit, self._collect(worker))
                    elif self._expired(worker):
                        late = f"timeout: still running after {self.config.timeout_s:g} s"
                        work.deliver(unit, self._kill(worker, late))
        finally:
            self._stop()

    def _feed(self, work: Work) -> None:
        """Give every idle worker a unit, while any is ready."""
        for worker in self._workers:
            if worker.task is None:
                unit = work.take()
                if unit is None:
                    return
                worker.task, worker.started = unit, time.monotonic()
                worker.conn.send(unit)

    def _wait_s(self, busy: list[_Worker]) -> float | None:
        if not self.config.timeout_s:
            return None
        nearest = min(w.started for w in busy) + self.config.timeout_s
        return max(0.0, nearest - time.monotonic())

    def _expired(self, worker: _Worker) -> bool:
        return bool(self.config.timeout_s) and time.monotonic() - worker.started >= self.config.timeout_s

    def _collect(self, worker: _Worker) -> Any:
        task = worker.task
        assert task is not None
        try:
            outcome = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(1)
            code = worker.process.exitcode
            why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            hint = " (out of memory?)" if code == -signal.SIGKILL else ""
            return self._replace(worker, failed(task.index, f"worker died: {why}{hint}",
                                                time.monotonic() - worker.started))
        worker.task = None
        return outcome

    def _kill(self, worker: _Worker, reason: str) -> Outcome:
        task = worker.task
        assert task is not None
        worker.process.kill()
        worker.process.join(5)
        return self._replace(worker, failed(task.index, reason, time.monotonic() - worker.started))

    def _replace(self, worker: _Worker, outcome: Outcome) -> Outcome:
        worker.conn.close()
        index = self._workers.index(worker)
        self._workers[index] = self._spawn()
        return outcome

    def _stop(self) -> None:
        for worker in self._workers:
            try:
                if worker.task is None:
                    worker.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            if worker.task is not None:
                worker.process.terminate()
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
            worker.conn.close()
        self._workers = []
