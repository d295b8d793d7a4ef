"""Batch orchestration: expand the sources, key every release, skip what is unchanged since its last audit
with the same tool version and options, run the rest on an engine, and write each outcome as it arrives
(one transaction per release: an interrupted batch keeps everything finished)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from weightaudit.errors import ExitCode
from weightaudit.fleet.content_key import ReleaseKey, release_key
from weightaudit.fleet.db import LastAudit, Writer, connect
from weightaudit.fleet.engine import EngineConfig, make_engine
from weightaudit.fleet.progress import BatchProgress
from weightaudit.fleet.sources import Release
from weightaudit.fleet.split import SPLIT_ABOVE_BYTES
from weightaudit.fleet.task import AuditOptions, Outcome, Task
from weightaudit.fleet.work import Work


@dataclass(frozen=True)
class BatchConfig:
    db_path: str
    options: AuditOptions
    engine: str = "local"
    engine_config: EngineConfig = EngineConfig(jobs=1)
    paranoid: bool = False
    force: bool = False
    retry_failed: bool = False
    split_above_bytes: int | None = SPLIT_ABOVE_BYTES    # releases with more weight bytes are split (None: never)


@dataclass
class _Planned:
    release: Release
    release_id: int
    key: ReleaseKey
    last: LastAudit | None


def options_key(options: AuditOptions) -> str:
    return hashlib.sha256(json.dumps(options.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _unchanged(plan: _Planned, version: str, opts_key: str, config: BatchConfig) -> bool:
    last = plan.last
    if config.force or last is None:
        return False
    if (last.content_key, last.tool_version, last.options_key) != (plan.key.key, version, opts_key):
        return False
    return last.status == "ok" or not config.retry_failed


def exit_code_of(codes: list[int]) -> int:
    """1 when any release fails at --fail-on; else 3 when any could not be audited; else 0."""
    if int(ExitCode.FINDINGS) in codes:
        return int(ExitCode.FINDINGS)
    return int(ExitCode.INCOMPLETE) if any(c != 0 for c in codes) else 0


def _lock(db_path: str) -> Any:
    """One batch writes a database at a time: an exclusive lock on ``DB.lock`` (released when the process ends)."""
    import fcntl

    from weightaudit.errors import UsageError

    handle = open(f"{db_path}.lock", "a+b")    # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise UsageError(f"{db_path}: another weightaudit batch is writing this database") from exc
    return handle


def run_batch(releases: list[Release], config: BatchConfig, quiet: bool = False,
              progress: bool | None = None) -> int:
    """Run the batch; returns its exit code. KeyboardInterrupt/Interrupted propagate after the run is closed."""
    from weightaudit import __version__

    lock = _lock(config.db_path)
    try:
        conn = connect(config.db_path)
    except BaseException:
        lock.close()
        raise
    writer = Writer(conn)
    opts_key = options_key(config.options)
    run_id = writer.start_run(__version__, {**config.options.to_dict(), "paranoid": config.paranoid},
                              opts_key, config.engine, len(releases))
    bar = BatchProgress.for_stderr(0, 0, quiet, progress)
    codes: dict[int, int] = {}
    status = "interrupted"
    try:
        _run(releases, config, writer, run_id, opts_key, bar, codes)
        status = "done"
    except Exception:
        status = "failed"       # an error of the batch itself (not of a release): the group reports it
        raise
    finally:
        code = exit_code_of(list(codes.values())) if status == "done" else None
        counts = {"audited": bar.done, "skipped": bar.skipped, "failed": bar.failed}
        writer.end_run(run_id, status, counts, code)
        conn.close()
        lock.close()
        if status != "failed":
            bar.finish(code if code is not None else 130, interrupted=status != "done")
    return code if code is not None else int(ExitCode.INCOMPLETE)


def _run(releases: list[Release], config: BatchConfig, writer: Writer, run_id: int, opts_key: str,
         bar: BatchProgress, codes: dict[int, int]) -> None:
    """Key every release, skip the unchanged (their last exit codes count), audit the rest on the engine."""
    from weightaudit import __version__

    plans = [_Planned(r, rid := writer.release_id(r.path, r.repository, r.revision, run_id),
                      release_key(r.path, config.paranoid), writer.last_audit(rid)) for r in releases]
    todo = [i for i, p in enumerate(plans) if not _unchanged(p, __version__, opts_key, config)]
    running = set(todo)
    codes.update({i: p.last.exit_code for i, p in enumerate(plans) if p.last is not None and i not in running})
    bar.total, bar.total_bytes = len(todo), sum(plans[i].key.total_bytes for i in todo)
    bar.skip(len(plans) - len(todo))
    tasks = [Task(i, plans[i].release.path, config.options) for i in todo]

    def on_outcome(outcome: Outcome) -> None:
        plan = plans[outcome.index]
        writer.record(run_id, plan.release_id, plan.key.key, plan.key.total_bytes, __version__, opts_key, outcome)
        codes[outcome.index] = outcome.exit_code if outcome.status == "ok" else int(ExitCode.INCOMPLETE)
        bar.advance(plan.key.total_bytes, outcome.status == "ok")

    sizes = {i: plans[i].key.total_bytes for i in todo}
    make_engine(config.engine, config.engine_config).run(Work(tasks, on_outcome, config.split_above_bytes, sizes))
