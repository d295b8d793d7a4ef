"""``weightaudit batch``: every release's row is what `audit` and `scorecard` give it alone; re-runs skip what is
unchanged and re-audit what changed; failures are recorded and retried on request; the exit code follows the
contract over the whole fleet."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fleet.fleet_fixtures import KINDS, make_fleet, write_release
from weightaudit import api
from weightaudit.cli import cli

FLEET = 200


def batch(*args: str) -> "object":
    result = CliRunner().invoke(cli, ["batch", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def rows(db: Path) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    found = conn.execute("SELECT r.path, a.* FROM audits a JOIN releases r ON r.id = a.release_id "
                         "ORDER BY a.id").fetchall()
    conn.close()
    return {row["path"]: row for row in found}


def count(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    root = tmp_path_factory.mktemp("fleet")
    make_fleet(root, FLEET)
    db = root.parent / "fleet.db"
    result = batch(str(root), "--db", str(db), "--jobs", "2")
    return root, db, result.exit_code


def test_every_row_equals_the_single_release_audit_and_scorecard(fleet) -> None:
    root, db, exit_code = fleet
    assert exit_code == 1                   # malicious pickles, NaN tensors and malformed files fail at high
    found = rows(db)
    assert len(found) == FLEET and {r["status"] for r in found.values()} == {"ok"}
    for folder in sorted(root.iterdir()):
        row = found[str(folder)]
        alone = api.audit(str(folder))
        assert json.loads(row["audit_json"]) == alone.to_dict(), folder.name
        assert json.loads(row["scorecard_json"]) == api.scorecard(str(folder)).to_dict(), folder.name
        assert (row["exit_code"], row["verdict"]) == (int(alone.exit_code), alone.verdict.value)
    kinds = {kind: {row["exit_code"] for path, row in found.items() if path.endswith(kind)} for kind in KINDS}
    assert kinds == {"clean": {0}, "pickle": {1}, "nan": {1}, "nolicence": {0}, "malformed": {1}}


def test_normalised_tables_match_the_reports(fleet) -> None:
    _root, db, _ = fleet
    per_audit = dict(count(db, "SELECT audit_id, COUNT(*) FROM findings GROUP BY audit_id"))
    for audit_id, audit_json in count(db, "SELECT id, audit_json FROM audits"):
        assert per_audit.get(audit_id, 0) == len(json.loads(audit_json)["findings"])
    assert count(db, "SELECT COUNT(*) FROM scorecards") == [(FLEET,)]
    nan_tensors = count(db, "SELECT COUNT(DISTINCT audit_id) FROM tensor_summaries WHERE nan > 0")
    assert nan_tensors == [(FLEET // len(KINDS),)]
    assert count(db, "PRAGMA user_version") == [(1,)]
    assert count(db, "PRAGMA journal_mode") == [("wal",)]


def test_rerun_skips_everything_then_reaudits_only_the_changed_release(fleet) -> None:
    # Runs after the row comparison above (it changes one release of the shared fleet).
    root, db, _ = fleet
    second = batch(str(root), "--db", str(db), "--jobs", "2")
    assert second.exit_code == 1 and "0 audited, 200 unchanged" in second.stderr
    assert count(db, "SELECT COUNT(*) FROM audits") == [(FLEET,)]
    changed = root / "r010-clean"
    write_release(changed, "nan", 10)
    third = batch(str(root), "--db", str(db), "--jobs", "2")
    assert "1 audited, 199 unchanged" in third.stderr
    latest_run = count(db, "SELECT MAX(id) FROM runs")[0][0]
    assert count(db, f"SELECT r.path, a.exit_code FROM audits a JOIN releases r ON r.id = a.release_id "
                     f"WHERE a.run_id = {latest_run}") == [(str(changed), 1)]
    forced = batch(str(changed), "--db", str(db), "--force", "-q")
    assert forced.exit_code == 1 and "1 audited, 0 unchanged" in forced.stderr


def test_failures_are_recorded_skipped_and_retried_on_request(tmp_path: Path) -> None:
    make_fleet(tmp_path / "fleet", 2)
    db = tmp_path / "f.db"
    first = batch(str(tmp_path / "fleet"), "--db", str(db), "--jobs", "1", "--timeout", "0.001")
    assert first.exit_code == 3 and "2 failed" in first.stderr
    reasons = [r["reason"] for r in rows(db).values()]
    assert all(r.startswith("timeout:") for r in reasons), reasons
    assert "0 audited, 2 unchanged" in batch(str(tmp_path / "fleet"), "--db", str(db)).stderr
    retried = batch(str(tmp_path / "fleet"), "--db", str(db), "--retry-failed", "--jobs", "1")
    assert retried.exit_code == 1 and "2 audited" in retried.stderr
    assert {r["status"] for r in rows(db).values()} == {"ok"}


def test_out_of_memory_is_a_recorded_failure(tmp_path: Path) -> None:
    make_fleet(tmp_path / "fleet", 1)
    db = tmp_path / "f.db"
    result = batch(str(tmp_path / "fleet"), "--db", str(db), "--jobs", "1", "--max-memory", "1K")
    assert result.exit_code == 3
    (row,) = rows(db).values()
    assert row["status"] == "failed" and row["reason"].startswith(("out-of-memory", "worker died")), row["reason"]


def test_sources_cache_root_list_file_and_release_folder(tmp_path: Path) -> None:
    from tests.fleet.fleet_fixtures import cache_repo
    from weightaudit.fleet.sources import expand

    plain = write_release(tmp_path / "plain", "clean", 1)
    cache = tmp_path / "hub"
    cache_repo(plain, cache, "org/one", ("a" * 40, "b" * 40), main="b" * 40)
    cache_repo(plain, cache, "org/two", ("c" * 40,), main=None)
    main_only = expand([str(cache)])
    assert [(r.repository, r.revision) for r in main_only] == [("org/one", "b" * 40), ("org/two", "c" * 40)]
    every = expand([str(cache)], all_revisions=True)
    assert [r.revision for r in every] == ["a" * 40, "b" * 40, "c" * 40]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# releases\n{plain}\n\n{plain}\n")
    assert [r.path for r in expand([], str(listing))] == [str(plain)]
    assert [r.path for r in expand([str(plain)])] == [str(plain)]
    db = tmp_path / "hub.db"
    result = batch(str(cache), "--db", str(db), "--jobs", "1")
    assert result.exit_code == 0
    assert sorted(count(db, "SELECT repository, revision FROM releases")) == [("org/one", "b" * 40),
                                                                              ("org/two", "c" * 40)]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert batch(str(tmp_path), "--scheduler", "tcp://127.0.0.1:1").exit_code == 2
    assert batch(str(tmp_path / "missing"), "--db", str(tmp_path / "x.db")).exit_code == 2
    assert batch("--db", str(tmp_path / "x.db")).exit_code == 2
    assert batch(str(tmp_path), "--max-memory", "lots", "--db", str(tmp_path / "x.db")).exit_code == 2
    assert batch(str(tmp_path), "--split-above", "lots", "--db", str(tmp_path / "x.db")).exit_code == 2


def test_relative_sources_are_stored_as_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fleet(tmp_path / "fleet", 1)
    monkeypatch.chdir(tmp_path)
    assert batch("fleet", "--db", "f.db", "-q").exit_code == 0
    assert count(tmp_path / "f.db", "SELECT path FROM releases") == [(str(tmp_path / "fleet" / "r000-clean"),)]


def test_progress_is_quiet_off_a_terminal_and_the_summary_always_written(tmp_path: Path) -> None:
    from weightaudit.fleet.progress import BatchProgress

    make_fleet(tmp_path / "fleet", 3)
    result = batch(str(tmp_path / "fleet"), "--db", str(tmp_path / "f.db"), "-j", "1")
    assert result.stderr.splitlines()[-1].startswith("weightaudit batch: done: 3 audited, 0 unchanged (skipped), "
                                                     "0 failed, in ")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    bar = BatchProgress(total=4, total_bytes=4_000_000_000, live=False)
    bar.advance(2_000_000_000, ok=True)
    bar.advance(0, ok=False)
    line = bar.line()
    assert line.startswith("weightaudit batch: 2/4 releases") and line.endswith(" s  1 failed")
    assert " GB/s  ETA " in line and " releases/s  " in line


def test_a_second_batch_on_the_same_database_is_refused(tmp_path: Path) -> None:
    from weightaudit.fleet.runner import _lock

    make_fleet(tmp_path / "fleet", 1)
    db = tmp_path / "f.db"
    held = _lock(str(db))
    try:
        result = batch(str(tmp_path / "fleet"), "--db", str(db))
        assert result.exit_code == 2 and "another weightaudit batch" in result.stderr
    finally:
        held.close()
    assert batch(str(tmp_path / "fleet"), "--db", str(db), "-q").exit_code == 0


def test_policy_and_fail_on_decide_the_rows_as_for_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fleet(tmp_path / "fleet", 3)                     # clean, malicious pickle, NaN
    (tmp_path / "weightaudit.yaml").write_text("version: 1\nfail_on: critical\n")
    monkeypatch.chdir(tmp_path)
    result = batch("fleet", "--db", "f.db", "-j", "1")
    assert result.exit_code == 1 and f"using policy {tmp_path / 'weightaudit.yaml'}" in result.stderr
    codes = {Path(p).name: r["exit_code"] for p, r in rows(tmp_path / "f.db").items()}
    assert codes == {"r000-clean": 0, "r001-pickle": 1, "r002-nan": 0}     # NaN is high: below critical
    for path, row in rows(tmp_path / "f.db").items():
        assert json.loads(row["audit_json"]) == api.audit(path).to_dict()
    never = batch("fleet", "--db", "g.db", "--fail-on", "never", "-q")
    assert never.exit_code == 0


def test_an_error_of_the_batch_itself_marks_the_run_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weightaudit.fleet import runner

    def broken_engine(name, config):
        raise RuntimeError("engine exploded")

    make_fleet(tmp_path / "fleet", 1)
    monkeypatch.setattr(runner, "make_engine", broken_engine)
    result = batch(str(tmp_path / "fleet"), "--db", str(tmp_path / "f.db"))
    assert result.exit_code == 3 and "internal error: RuntimeError: engine exploded" in result.stderr
    assert count(tmp_path / "f.db", "SELECT status, exit_code FROM runs") == [("failed", None)]
