"""The fleet database: SQLite (stdlib), WAL, one writer (the batch's parent process), schema versioned with
``PRAGMA user_version`` and migrated forward by the functions in ``MIGRATIONS`` (never edited once released:
add a new one). The full JSON of each audit and scorecard is kept; findings, files, tensor summaries and
scorecards are normalised beside it so they can be queried with SQL (README "Fleet database")."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from weightaudit.errors import UsageError

SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY, tool_version TEXT NOT NULL, options_json TEXT NOT NULL, options_key TEXT NOT NULL,
    engine TEXT, started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL DEFAULT 'running',
    releases_total INTEGER, audited INTEGER DEFAULT 0, skipped INTEGER DEFAULT 0, failed INTEGER DEFAULT 0,
    exit_code INTEGER);
CREATE TABLE releases (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, repository TEXT, revision TEXT, content_key TEXT,
    total_bytes INTEGER, first_run_id INTEGER REFERENCES runs(id));
CREATE TABLE audits (
    id INTEGER PRIMARY KEY, release_id INTEGER NOT NULL REFERENCES releases(id),
    run_id INTEGER NOT NULL REFERENCES runs(id), content_key TEXT NOT NULL, tool_version TEXT NOT NULL,
    options_key TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('ok', 'failed')), reason TEXT,
    exit_code INTEGER NOT NULL, verdict TEXT, audit_json TEXT, scorecard_json TEXT, audited_at TEXT NOT NULL,
    duration_s REAL, peak_memory_bytes INTEGER);
CREATE INDEX audits_release ON audits(release_id, id);
CREATE INDEX audits_run ON audits(run_id);
CREATE TABLE findings (
    audit_id INTEGER NOT NULL REFERENCES audits(id) ON DELETE CASCADE, rule_id TEXT NOT NULL,
    severity TEXT NOT NULL, path TEXT, tensor TEXT, message TEXT, fingerprint TEXT);
CREATE INDEX findings_audit ON findings(audit_id);
CREATE INDEX findings_rule ON findings(rule_id);
CREATE TABLE files (
    audit_id INTEGER NOT NULL REFERENCES audits(id) ON DELETE CASCADE, path TEXT NOT NULL, format TEXT,
    size_bytes INTEGER, tensor_count INTEGER, parameter_count INTEGER, status TEXT, reason TEXT, verified INTEGER);
CREATE INDEX files_audit ON files(audit_id);
CREATE TABLE tensor_summaries (
    audit_id INTEGER NOT NULL REFERENCES audits(id) ON DELETE CASCADE, file TEXT, name TEXT NOT NULL,
    dtype TEXT, shape_json TEXT, parameter_count INTEGER, role TEXT, nan INTEGER, inf INTEGER, zeros INTEGER,
    min REAL, max REAL, mean REAL, std REAL, fingerprint TEXT);
CREATE INDEX tensors_audit ON tensor_summaries(audit_id);
CREATE TABLE scorecards (
    audit_id INTEGER PRIMARY KEY REFERENCES audits(id) ON DELETE CASCADE, headline TEXT, score REAL,
    mof_class INTEGER, mof_label TEXT, osaid_verdict TEXT, weights TEXT, training_code TEXT, training_data TEXT,
    license TEXT);
"""


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA_V1.split(";"):     # one by one: executescript would commit the migration's transaction
        if statement.strip():
            conn.execute(statement)


# user_version N is reached by MIGRATIONS[N - 1]; append, never edit.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_to_1,)
SCHEMA_VERSION = len(MIGRATIONS)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connect(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    """Open (and for writers create and migrate) the database; a newer schema than this tool knows is exit 2."""
    if readonly and not Path(path).is_file():
        raise UsageError(f"{path}: no such database (create it with `weightaudit batch ... --db {path}`)")
    try:
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, readonly)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a weightaudit database: {exc}") from exc
    return conn


def migrate(conn: sqlite3.Connection, readonly: bool = False) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UsageError(f"database schema {version} is newer than this weightaudit knows ({SCHEMA_VERSION}); "
                         "upgrade weightaudit")
    if version < SCHEMA_VERSION and readonly:
        raise UsageError(f"database schema {version} is older than {SCHEMA_VERSION}; run `weightaudit batch` once "
                         "to migrate it")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


@dataclass(frozen=True)
class LastAudit:
    status: str
    content_key: str
    tool_version: str
    options_key: str
    exit_code: int
    verdict: str | None


class Writer:
    """The one writer: every method is one transaction, so what is committed is whole."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def start_run(self, tool_version: str, options: dict[str, Any], options_key: str, engine: str,
                  total: int) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (tool_version, options_json, options_key, engine, started_at, releases_total) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (tool_version, json.dumps(options, sort_keys=True), options_key, engine, now(), total))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str, counts: dict[str, int], exit_code: int | None) -> None:
        self.conn.execute("UPDATE runs SET ended_at=?, status=?, audited=?, skipped=?, failed=?, exit_code=? "
                          "WHERE id=?", (now(), status, counts.get("audited", 0), counts.get("skipped", 0),
                                         counts.get("failed", 0), exit_code, run_id))

    def release_id(self, path: str, repository: str | None, revision: str | None, run_id: int) -> int:
        row = self.conn.execute("SELECT id FROM releases WHERE path=?", (path,)).fetchone()
        if row is not None:
            return int(row[0])
        cur = self.conn.execute("INSERT INTO releases (path, repository, revision, first_run_id) VALUES (?,?,?,?)",
                                (path, repository, revision, run_id))
        return int(cur.lastrowid)

    def last_audit(self, release_id: int) -> LastAudit | None:
        row = self.conn.execute("SELECT status, content_key, tool_version, options_key, exit_code, verdict "
                                "FROM audits WHERE release_id=? ORDER BY id DESC LIMIT 1", (release_id,)).fetchone()
        return None if row is None else LastAudit(*row)

    def record(self, run_id: int, release_id: int, content_key: str, total_bytes: int, tool_version: str,
               options_key: str, outcome: Any) -> None:
        """One release's outcome, with its normalised rows, in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT INTO audits (release_id, run_id, content_key, tool_version, options_key, status, reason, "
                "exit_code, verdict, audit_json, scorecard_json, audited_at, duration_s, peak_memory_bytes) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (release_id, run_id, content_key, tool_version, options_key, outcome.status, outcome.reason,
                 outcome.exit_code, outcome.verdict, outcome.audit_json, outcome.scorecard_json, now(),
                 round(outcome.duration_s, 6), outcome.peak_memory_bytes))
            audit_id = int(cur.lastrowid)
            conn.execute("UPDATE releases SET content_key=?, total_bytes=? WHERE id=?",
                         (content_key, total_bytes, release_id))
            if outcome.audit_json:
                _normalise_audit(conn, audit_id, json.loads(outcome.audit_json))
            if outcome.scorecard_json:
                _normalise_scorecard(conn, audit_id, json.loads(outcome.scorecard_json))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _num(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) else None     # "nan"/"inf" strings are not numbers


def _normalise_audit(conn: sqlite3.Connection, audit_id: int, doc: dict[str, Any]) -> None:
    conn.executemany("INSERT INTO findings VALUES (?,?,?,?,?,?,?)",
                     [(audit_id, f["rule_id"], f["severity"], f.get("path"), f.get("tensor"), f.get("message"),
                       f.get("fingerprint")) for f in doc.get("findings", ())])
    conn.executemany("INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?)",
                     [(audit_id, f["path"], f.get("format"), f.get("size_bytes"), f.get("tensor_count"),
                       f.get("parameter_count"), f.get("status"), f.get("reason"), int(bool(f.get("verified"))))
                      for f in doc.get("files", ())])
    rows = []
    for t in doc.get("tensors", ()):
        s = t.get("stats") or {}
        rows.append((audit_id, t.get("file"), t["name"], t.get("dtype"), json.dumps(t.get("shape")),
                     t.get("parameter_count"), t.get("role"), s.get("nan"), s.get("inf"), s.get("zeros"),
                     _num(s.get("min")), _num(s.get("max")), _num(s.get("mean")), _num(s.get("std")),
                     s.get("fingerprint")))
    conn.executemany("INSERT INTO tensor_summaries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def card_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The scorecard of a scorecard document (one release: ``scorecard``; else the first report's)."""
    if "scorecard" in doc:
        return doc["scorecard"]
    reports = doc.get("reports") or [{}]
    return reports[0].get("scorecard", {})


def _normalise_scorecard(conn: sqlite3.Connection, audit_id: int, doc: dict[str, Any]) -> None:
    card = card_of(doc)
    pillars = card.get("pillars") or {}
    mof = card.get("mof_class") or {}
    licence = card.get("license")
    conn.execute("INSERT INTO scorecards VALUES (?,?,?,?,?,?,?,?,?,?)",
                 (audit_id, card.get("headline"), _num(card.get("score")), mof.get("class"), mof.get("label"),
                  (card.get("osaid") or {}).get("verdict"),
                  *((pillars.get(p) or {}).get("status") for p in ("weights", "training_code", "training_data")),
                  json.dumps(licence) if isinstance(licence, (dict, list)) else licence))
