"""What a worker does for one release: the audit and the scorecard, through the Python API, exactly as
``weightaudit audit`` and ``weightaudit scorecard`` would (statistics single-process: ``workers=1``)."""

from __future__ import annotations

import json
import resource
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from weightaudit.errors import ExitCode


@dataclass(frozen=True)
class AuditOptions:
    """The options that change an audit's result (part of the skip key, stored with each run)."""

    fail_on: str | None = None
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    stats: bool = True
    knowledge: str | None = None
    policy: Any = None          # a resolved weightaudit.policy.Policy (picklable)

    def to_dict(self) -> dict[str, Any]:
        policy = self.policy
        return {"fail_on": self.fail_on, "select": list(self.select), "ignore": list(self.ignore),
                "stats": self.stats, "knowledge": self.knowledge,
                "policy": None if policy is None else {"source": policy.source, "origin": policy.origin,
                                                       "digest": _policy_digest(policy)}}


def _policy_digest(policy: Any) -> str:
    import hashlib

    return hashlib.sha256(repr(policy).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    index: int          # position in the batch (results are matched back by it)
    path: str
    options: AuditOptions


@dataclass(frozen=True)
class Outcome:
    """What comes back for one release: ok with both reports, or failed with a reason."""

    index: int
    status: str                     # ok | failed
    reason: str | None = None
    exit_code: int = int(ExitCode.INCOMPLETE)
    verdict: str | None = None
    audit_json: str | None = None
    scorecard_json: str | None = None
    duration_s: float = 0.0
    peak_memory_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def failed(task_index: int, reason: str, duration_s: float = 0.0) -> Outcome:
    return Outcome(task_index, "failed", reason, duration_s=duration_s)


def run_task(task: Task) -> Outcome:
    """Audit and score one release; never raises (MemoryError -> out-of-memory, anything else -> internal error)."""
    return guarded(task.index, lambda started: _run(task, started))


def run_unit(unit: Any) -> Any:
    """What a worker runs: a whole release (a :class:`Task`, giving an :class:`Outcome`) or one stage of a split
    release (weightaudit/fleet/split.py); never raises."""
    from weightaudit.fleet import fault_hooks

    fault_hooks.at_start(unit.path)
    if isinstance(unit, Task):
        return run_task(unit)
    return guarded(unit.index, unit.run)


def guarded(index: int, body: Callable[[float], Any]) -> Any:
    """``body(started)``, or the release's failed Outcome when it raises."""
    started = time.monotonic()
    try:
        return body(started)
    except MemoryError:
        return failed(index, "out-of-memory: the release needed more than --max-memory", time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - recorded as this release's failure, the batch goes on
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
        code = getattr(exc, "exit_code", None)
        kind = "error" if code is not None else "internal error"
        return Outcome(index, "failed", f"{kind}: {type(exc).__name__}: {exc}{at}",
                       exit_code=int(code) if code is not None else int(ExitCode.INCOMPLETE),
                       duration_s=time.monotonic() - started)


def _run(task: Task, started: float) -> Outcome:
    from weightaudit import api

    opts = task.options
    report = api.audit(task.path, policy=opts.policy, fail_on=opts.fail_on, select=opts.select,
                       ignore=opts.ignore, stats=opts.stats, workers=1)
    return audited(task.index, report, api.scorecard(task.path, knowledge=opts.knowledge), started)


def audited(index: int, report: Any, card: Any, started: float) -> Outcome:
    """The ok Outcome of an audit report and a scorecard report (the JSON ``audit``/``scorecard`` print)."""
    return Outcome(index, "ok", None, int(report.exit_code), report.verdict.value,
                   json.dumps(report.to_dict(), ensure_ascii=False, sort_keys=True),
                   json.dumps(card.to_dict(), ensure_ascii=False, sort_keys=True),
                   time.monotonic() - started, peak_rss_bytes())


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def limit_memory(max_bytes: int | None) -> None:
    """RLIMIT_AS for this worker process: its address space now plus ``max_bytes`` for the release."""
    if not max_bytes:
        return
    current = _address_space_bytes()
    limit = current + max_bytes
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as handle:
            pages = int(handle.read().split()[0])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0
