"""The fleet database's schema versioning: a new database reaches the current user_version, an older one is
migrated forward in one transaction per step (a failing step leaves the older version intact), a newer one is
refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from weightaudit.errors import UsageError
from weightaudit.fleet import db


def test_new_database_is_created_at_the_current_version_in_wal_mode(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "f.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= {"runs", "releases", "audits", "findings", "files", "tensor_summaries", "scorecards"}
    conn.close()


def test_an_older_database_is_migrated_forward_and_a_failed_step_rolls_back(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    db.connect(tmp_path / "f.db").close()

    def add_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN host TEXT")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT")
        raise RuntimeError("step fails half-way")

    monkeypatch.setattr(db, "MIGRATIONS", db.MIGRATIONS + (add_column, broken))
    monkeypatch.setattr(db, "SCHEMA_VERSION", 3)
    with pytest.raises(RuntimeError):
        db.connect(tmp_path / "f.db")
    conn = sqlite3.connect(tmp_path / "f.db")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2 and "host" in columns and "note" not in columns
    conn.close()


def test_a_newer_database_is_refused_and_report_never_migrates(tmp_path: Path) -> None:
    db.connect(tmp_path / "f.db").close()
    conn = sqlite3.connect(tmp_path / "f.db")
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    with pytest.raises(UsageError, match="older"):
        db.connect(tmp_path / "f.db", readonly=True)
    conn = sqlite3.connect(tmp_path / "f.db")
    conn.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UsageError, match="newer"):
        db.connect(tmp_path / "f.db")
