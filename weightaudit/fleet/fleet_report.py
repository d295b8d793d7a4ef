"""The fleet report: the latest audit of every release in a batch database, the runs, findings by rule across
the fleet, the worst releases, and what changed since the previous run. ``to_dict`` is the JSON report; the
renderers (render_text, render_html) read the same dictionary."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import Any

from weightaudit.fleet.db import card_of, connect

SCHEMA_VERSION = "1"
SEVERITIES = ("critical", "high", "medium", "low", "info")
WORST_SHOWN = 10
PILLARS = ("weights", "training_code", "training_data")


@dataclass(frozen=True)
class FleetReport:
    releases: tuple[dict[str, Any], ...]
    runs: tuple[dict[str, Any], ...]
    findings_by_rule: tuple[dict[str, Any], ...]
    changes: dict[str, Any]

    @property
    def worst(self) -> list[dict[str, Any]]:
        failing = [r for r in self.releases if r["exit_code"] != 0]
        return sorted(failing, key=severity_rank)[:WORST_SHOWN]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "releases": list(self.releases), "runs": list(self.runs),
                "findings_by_rule": list(self.findings_by_rule), "worst": [r["release"] for r in self.worst],
                "changes": self.changes}


def severity_rank(release: dict[str, Any]) -> tuple:
    counts = release["summary"].get("findings_by_severity", {}) if release["summary"] else {}
    return (release["exit_code"] != 1, release["status"] != "failed",
            *(-int(counts.get(s, 0)) for s in SEVERITIES), release["release"])


def load(db_path: str) -> FleetReport:
    conn = connect(db_path, readonly=True)
    try:
        latest = _latest_audits(conn, None)
        runs = tuple(_run_dict(row) for row in conn.execute("SELECT * FROM runs ORDER BY id"))
        releases = tuple(_release_dict(row) for row in latest.values())
        return FleetReport(releases, runs, _by_rule(conn, [r["audit_id"] for r in releases]),
                           _changes(conn, latest))
    finally:
        conn.close()


_LATEST = """SELECT r.path, r.repository, r.revision, a.* FROM audits a JOIN releases r ON r.id = a.release_id
WHERE a.id IN (SELECT MAX(id) FROM audits {where} GROUP BY release_id) ORDER BY r.path"""


def _latest_audits(conn: sqlite3.Connection, before_run: int | None) -> dict[str, sqlite3.Row]:
    where = "" if before_run is None else f"WHERE run_id < {int(before_run)}"
    return {row["path"]: row for row in conn.execute(_LATEST.format(where=where))}


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    keys = ("id", "tool_version", "engine", "started_at", "ended_at", "status", "releases_total", "audited",
            "skipped", "failed", "exit_code")
    out = {k: row[k] for k in keys}
    out["options"] = json.loads(row["options_json"])
    return out


def _card_summary(scorecard_json: str | None) -> dict[str, Any] | None:
    if not scorecard_json:
        return None
    card = card_of(json.loads(scorecard_json))
    pillars = card.get("pillars") or {}
    return {"headline": card.get("headline"), "score": card.get("score"), "license": card.get("license"),
            "pillars": {p: (pillars.get(p) or {}).get("status") for p in PILLARS},
            "mof_class": card.get("mof_class"), "osaid": card.get("osaid")}


def _release_dict(row: sqlite3.Row) -> dict[str, Any]:
    audit = json.loads(row["audit_json"]) if row["audit_json"] else {}
    return {"release": row["path"], "repository": row["repository"], "revision": row["revision"],
            "status": row["status"], "reason": row["reason"], "exit_code": row["exit_code"],
            "verdict": row["verdict"], "summary": audit.get("summary", {}),
            "scorecard": _card_summary(row["scorecard_json"]), "audited_at": row["audited_at"],
            "run_id": row["run_id"], "audit_id": row["id"], "duration_s": row["duration_s"]}


def _by_rule(conn: sqlite3.Connection, audit_ids: list[int]) -> tuple[dict[str, Any], ...]:
    if not audit_ids:
        return ()
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS latest_ids (id INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM latest_ids")
    conn.executemany("INSERT INTO latest_ids VALUES (?)", [(i,) for i in audit_ids])
    rows = conn.execute("SELECT rule_id, severity, COUNT(*), COUNT(DISTINCT audit_id) FROM findings "
                        "WHERE audit_id IN (SELECT id FROM latest_ids) GROUP BY rule_id, severity "
                        "ORDER BY COUNT(DISTINCT audit_id) DESC, rule_id").fetchall()
    return tuple({"rule_id": r[0], "severity": r[1], "findings": r[2], "releases": r[3]} for r in rows)


def _finding_keys(conn: sqlite3.Connection, audit_id: int) -> set[tuple[str, str]]:
    return {(r[0], r[1] or "") for r in conn.execute("SELECT rule_id, fingerprint FROM findings WHERE audit_id=?",
                                                     (audit_id,))}


def _changes(conn: sqlite3.Connection, latest: dict[str, sqlite3.Row]) -> dict[str, Any]:
    """Against the state before the last run that audited anything: new releases, new and fixed findings."""
    row = conn.execute("SELECT MAX(run_id) FROM audits").fetchone()
    if row is None or row[0] is None:
        return {"since_run": None, "new_releases": [], "new_findings": [], "fixed_findings": []}
    last_run = int(row[0])
    before = _latest_audits(conn, last_run)
    new_findings, fixed = [], []
    for path, now in latest.items():
        if now["run_id"] != last_run or path not in before:
            continue
        current, previous = _finding_keys(conn, now["id"]), _finding_keys(conn, before[path]["id"])
        new_findings += [{"release": path, "rule_id": r, "fingerprint": f} for r, f in sorted(current - previous)]
        fixed += [{"release": path, "rule_id": r, "fingerprint": f} for r, f in sorted(previous - current)]
    previous_run = conn.execute("SELECT MAX(run_id) FROM audits WHERE run_id < ?", (last_run,)).fetchone()[0]
    return {"since_run": previous_run, "last_run": last_run,
            "new_releases": sorted(p for p in latest if p not in before and latest[p]["run_id"] == last_run)
            if previous_run is not None else [],
            "new_findings": new_findings, "fixed_findings": fixed}


def severity_counts(release: dict[str, Any]) -> dict[str, int]:
    counts = (release.get("summary") or {}).get("findings_by_severity") or {}
    return {s: int(counts.get(s, 0)) for s in SEVERITIES}


def mof_label(release: dict[str, Any]) -> str:
    card = release.get("scorecard") or {}
    mof = card.get("mof_class") or {}
    return f"Class {mof['class']}" if mof.get("class") else (mof.get("label") or "-")


def osaid_label(release: dict[str, Any]) -> str:
    card = release.get("scorecard") or {}
    return (card.get("osaid") or {}).get("verdict") or "-"


def rule_totals(report: FleetReport) -> list[tuple[str, int]]:
    totals: Counter[str] = Counter()
    for row in report.findings_by_rule:
        totals[row["rule_id"]] += row["releases"]
    return totals.most_common()
