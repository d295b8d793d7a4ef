"""Dask's fault handling, forced by the test hooks of weightaudit/fleet/fault_hooks.py: a task lost with a
killed worker is rescheduled and recorded once; ``--timeout`` counts from when a task starts running, so tasks
queued behind a slow one are not timed out."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fleet.fleet_fixtures import make_fleet
from tests.fleet.test_batch_interrupt_dask import ROOT, _rows
from weightaudit.cli import cli


def _slow_env(monkeypatch: pytest.MonkeyPatch, text: str, seconds: float) -> None:
    from weightaudit.fleet import fault_hooks

    monkeypatch.setenv(fault_hooks.SLOW, f"{text}={seconds:g}")


def test_dask_timeout_counts_from_the_start_not_from_submission(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker; the first release holds it for 6 s, past --timeout 3; the three queued behind it (submitted
    at once, 6+ s before they run) are not timed out. The late one's worker is restarted, not left running it."""
    pytest.importorskip("distributed")
    make_fleet(tmp_path / "fleet", 4)
    _slow_env(monkeypatch, "r000-clean", 6)
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "fleet"), "--db", str(tmp_path / "d.db"),
                                      "--engine", "dask", "-j", "1", "--timeout", "3", "-q"])
    assert result.exit_code == 1, result.stderr
    reasons = {Path(path).name: (status, reason) for path, (status, reason) in _path_reasons(tmp_path / "d.db")}
    assert reasons["r000-clean"][0] == "failed"
    assert reasons["r000-clean"][1].startswith("timeout: still running 3 s after it started")
    assert {name: status for name, (status, _) in reasons.items() if name != "r000-clean"} == {
        "r001-pickle": "ok", "r002-nan": "ok", "r003-nolicence": "ok"}


def test_dask_task_lost_with_a_killed_worker_is_retried_and_recorded_once(tmp_path: Path) -> None:
    """The first task to start writes its worker's pid and waits; the test SIGKILLs that worker process. Dask
    reschedules the lost task on another worker; every release ends in the database exactly once, each row
    what the local engine gives."""
    pytest.importorskip("distributed")
    from weightaudit.fleet import fault_hooks

    total = 8
    make_fleet(tmp_path / "fleet", total)
    marker = tmp_path / "held.pid"
    db = tmp_path / "d.db"
    env = {**os.environ, "CI": "1", fault_hooks.HOLD_ONCE: str(marker)}
    command = [sys.executable, "-m", "weightaudit", "batch", str(tmp_path / "fleet"), "--db", str(db),
               "--engine", "dask", "-j", "2"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), process.communicate(timeout=30)[1]
    worker_pid = int(marker.read_text())
    assert worker_pid != process.pid
    os.kill(worker_pid, signal.SIGKILL)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert once(db) == total
    local = CliRunner().invoke(cli, ["batch", str(tmp_path / "fleet"), "--db", str(tmp_path / "l.db"), "-j", "2"])
    assert local.exit_code == 1
    assert _rows(db) == _rows(tmp_path / "l.db")


def once(db: Path) -> int:
    """How many releases have exactly one audit row, all ok (asserting none has more)."""
    conn = sqlite3.connect(db)
    try:
        counts = conn.execute("SELECT release_id, COUNT(*), MIN(status) FROM audits GROUP BY release_id").fetchall()
    finally:
        conn.close()
    assert {(n, status) for _, n, status in counts} == {(1, "ok")}, counts
    return len(counts)


def _path_reasons(db: Path) -> list[tuple[str, tuple[str, str]]]:
    conn = sqlite3.connect(db)
    try:
        return [(p, (s, r)) for p, s, r in conn.execute(
            "SELECT r.path, a.status, a.reason FROM audits a JOIN releases r ON r.id = a.release_id")]
    finally:
        conn.close()
