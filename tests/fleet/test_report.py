"""``weightaudit report DB``: the JSON shape, what changed since the previous run, CSV/Markdown/text, HTML that
escapes what it shows and references nothing outside itself, and usage errors."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fleet.fleet_fixtures import make_fleet, write_release
from weightaudit.cli import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture()
def fleet_db(tmp_path: Path) -> tuple[Path, Path]:
    make_fleet(tmp_path / "fleet", 10)
    db = tmp_path / "fleet.db"
    assert invoke("batch", str(tmp_path / "fleet"), "--db", str(db), "-j", "2", "-q").exit_code == 1
    return tmp_path / "fleet", db


def test_json_shape_and_exit_codes(fleet_db) -> None:
    root, db = fleet_db
    result = invoke("report", str(db), "-f", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == "1" and len(doc["runs"]) == 1 and doc["runs"][0]["status"] == "done"
    releases = {Path(r["release"]).name: r for r in doc["releases"]}
    assert len(releases) == 10
    clean, pickle = releases["r000-clean"], releases["r001-pickle"]
    assert (clean["exit_code"], clean["verdict"], pickle["exit_code"], pickle["verdict"]) == (0, "pass", 1, "fail")
    assert pickle["summary"]["findings_by_severity"]["critical"] == 1
    assert set(clean["scorecard"]) >= {"pillars", "mof_class", "osaid", "score"}
    assert releases["r003-nolicence"]["scorecard"]["pillars"]["weights"] != "open"
    assert clean["audited_at"].endswith("Z")
    rules = {(r["rule_id"], r["severity"]): r["releases"] for r in doc["findings_by_rule"]}
    assert rules[("WA401", "critical")] == 2 and rules[("WA301", "high")] == 2
    assert doc["worst"][:2] == [str(root / "r001-pickle"), str(root / "r006-pickle")]


def test_changes_since_the_previous_run(fleet_db) -> None:
    root, db = fleet_db
    write_release(root / "r000-clean", "nan", 0)          # a new NaN finding
    write_release(root / "r002-nan", "clean", 2)          # its NaN finding fixed
    write_release(root / "r999-new", "clean", 999)        # a new release
    assert invoke("batch", str(root), "--db", str(db), "-q").exit_code == 1
    changes = json.loads(invoke("report", str(db), "-f", "json").stdout)["changes"]
    assert changes["since_run"] == 1 and changes["last_run"] == 2
    assert changes["new_releases"] == [str(root / "r999-new")]
    assert [(Path(f["release"]).name, f["rule_id"]) for f in changes["new_findings"]] == [("r000-clean", "WA301")]
    assert [(Path(f["release"]).name, f["rule_id"]) for f in changes["fixed_findings"]] == [("r002-nan", "WA301")]


def test_csv_markdown_text_and_output_extensions(fleet_db, tmp_path: Path) -> None:
    _root, db = fleet_db
    rows = list(csv.DictReader(io.StringIO(invoke("report", str(db), "-f", "csv").stdout)))
    assert len(rows) == 10 and rows[1]["exit_code"] == "1" and rows[1]["critical"] == "1"
    markdown = invoke("report", str(db), "-f", "markdown").stdout
    assert "## Findings by rule" in markdown and "| WA401 | critical | 2 | 2 |" in markdown
    text = invoke("report", str(db)).stdout
    assert text.startswith("weightaudit fleet report: 10 releases, 6 failing, 0 incomplete, 1 runs")
    for suffix, marker in ((".html", "<!DOCTYPE html>"), (".csv", "release,status"), (".md", "# weightaudit"),
                           (".json", '"schema_version"')):
        target = tmp_path / f"out{suffix}"
        assert invoke("report", str(db), "-o", str(target)).exit_code == 0
        assert target.read_text().lstrip().startswith(marker) or marker in target.read_text()[:200]


def test_html_escapes_release_names_and_references_nothing_outside(tmp_path: Path) -> None:
    hostile = tmp_path / "fleet" / '"><img src=x onerror=alert(1)>'
    write_release(hostile, "clean", 1)
    write_release(tmp_path / "fleet" / "plain", "pickle", 2)
    db = tmp_path / "f.db"
    invoke("batch", str(tmp_path / "fleet"), "--db", str(db), "-q")
    html = invoke("report", str(db), "-f", "html").stdout
    assert "<img" not in html and "&lt;img src=x" in html
    lowered = html.lower()
    for reference in ("http://", "https://", "//cdn", "src=", "href=", "@import", "url("):
        assert reference not in lowered.replace("src=x onerror", ""), reference


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert invoke("report", str(tmp_path / "missing.db")).exit_code == 2
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    assert invoke("report", str(junk)).exit_code == 2
    make_fleet(tmp_path / "fleet", 1)
    db = tmp_path / "f.db"
    invoke("batch", str(tmp_path / "fleet"), "--db", str(db), "-q")
    assert invoke("report", str(db), "-o", str(tmp_path / "out.xyz")).exit_code == 2


def test_newer_schema_is_refused(fleet_db) -> None:
    import sqlite3

    _root, db = fleet_db
    copy = db.parent / "newer.db"
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    result = invoke("report", str(copy))
    assert result.exit_code == 2 and "newer" in result.stderr


def test_failed_audits_show_as_failed_with_their_reason(tmp_path: Path) -> None:
    make_fleet(tmp_path / "fleet", 2)
    db = tmp_path / "f.db"
    assert invoke("batch", str(tmp_path / "fleet"), "--db", str(db), "--timeout", "0.001", "-q").exit_code == 3
    doc = json.loads(invoke("report", str(db), "-f", "json").stdout)
    assert {(r["status"], r["exit_code"], r["verdict"]) for r in doc["releases"]} == {("failed", 3, None)}
    assert all(r["reason"].startswith("timeout:") for r in doc["releases"])
    rows = list(csv.DictReader(io.StringIO(invoke("report", str(db), "-f", "csv").stdout)))
    assert {(r["verdict"], r["status"]) for r in rows} == {("failed", "failed")}
    assert "2 incomplete" in invoke("report", str(db)).stdout

