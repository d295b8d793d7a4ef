"""A batch stopped by SIGINT or SIGTERM half-way exits 130 or 143 and keeps every finished release; re-running
completes the rest, each release audited exactly once. The Dask engine (a LocalCluster the tool starts) gives the
same rows as local processes."""

from __future__ import annotations

import json
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
from weightaudit.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def audited(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT r.path, COUNT(*) FROM audits a JOIN releases r ON r.id = a.release_id "
                            "WHERE a.status = 'ok' GROUP BY r.path").fetchall()
    except sqlite3.OperationalError:      # tables not created yet
        return []
    finally:
        conn.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_half_way_then_rerun_audits_every_release_exactly_once(tmp_path: Path, signum: int) -> None:
    """Ctrl-C (130) and a service manager's SIGTERM (143) both stop the workers and keep what was finished."""
    total = 60
    make_fleet(tmp_path / "fleet", total)
    db = tmp_path / "f.db"
    command = [sys.executable, "-m", "weightaudit", "batch", str(tmp_path / "fleet"), "--db", str(db), "--jobs", "1"]
    env = {**os.environ, "CI": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(audited(db)) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the batch finished before it could be interrupted"
    os.kill(process.pid, signum)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    done_before = len(audited(db))
    assert 5 <= done_before < total
    assert b"interrupted" in err
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr
    assert f"{total - done_before} audited, {done_before} unchanged".encode() in rerun.stderr
    once = audited(db)
    assert len(once) == total and {n for _, n in once} == {1}
    conn = sqlite3.connect(db)
    assert [s for (s,) in conn.execute("SELECT status FROM runs ORDER BY id")] == ["interrupted", "done"]
    conn.close()


def _rows(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    out = {path: (status, code, verdict, json.loads(audit), json.loads(card))
           for path, status, code, verdict, audit, card in conn.execute(
               "SELECT r.path, a.status, a.exit_code, a.verdict, a.audit_json, a.scorecard_json "
               "FROM audits a JOIN releases r ON r.id = a.release_id")}
    conn.close()
    return out


def test_dask_engine_gives_the_same_rows_as_local_processes(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    make_fleet(tmp_path / "fleet", 20)
    runner = CliRunner()
    local = runner.invoke(cli, ["batch", str(tmp_path / "fleet"), "--db", str(tmp_path / "local.db"), "-j", "2"])
    dask = runner.invoke(cli, ["batch", str(tmp_path / "fleet"), "--db", str(tmp_path / "dask.db"), "-j", "2",
                               "--engine", "dask"])
    assert (local.exit_code, dask.exit_code) == (1, 1), dask.stderr
    assert _rows(tmp_path / "dask.db") == _rows(tmp_path / "local.db")
    assert len(_rows(tmp_path / "dask.db")) == 20


def test_dask_engine_uses_an_existing_scheduler(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    make_fleet(tmp_path / "fleet", 5)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster:
        result = CliRunner().invoke(cli, ["batch", str(tmp_path / "fleet"), "--db", str(tmp_path / "d.db"),
                                          "--engine", "dask", "--scheduler", cluster.scheduler_address, "-j", "1"])
        assert result.exit_code == 1, result.stderr
        assert len(cluster.scheduler.workers) == 1       # the tool used this cluster and left it running
        late = CliRunner().invoke(cli, ["batch", str(tmp_path / "fleet"), "--db", str(tmp_path / "late.db"),
                                        "--engine", "dask", "--scheduler", cluster.scheduler_address,
                                        "--timeout", "0.001", "-q"])
        assert late.exit_code == 3 and "5 failed" in late.stderr
        assert {r[0] for r in _reasons(tmp_path / "late.db")} == {"failed"}
        assert all(reason.startswith("timeout: ") for _, reason in _reasons(tmp_path / "late.db"))
    rows = _rows(tmp_path / "d.db")
    assert len(rows) == 5 and {status for status, *_ in rows.values()} == {"ok"}
    conn = sqlite3.connect(tmp_path / "d.db")
    assert conn.execute("SELECT engine FROM runs").fetchall() == [("dask",)]
    conn.close()


def _reasons(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT status, reason FROM audits").fetchall()
    finally:
        conn.close()
