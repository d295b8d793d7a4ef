"""The fleet report as text, Markdown and CSV (one row per release)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Callable

from weightaudit.fleet.fleet_report import (PILLARS, SEVERITIES, FleetReport, mof_label, osaid_label,
                                            rule_totals, severity_counts)

CSV_COLUMNS = ("release", "status", "exit_code", "verdict", "reason", "parameters", "formats", *SEVERITIES,
               "score", *PILLARS, "mof_class", "osaid", "audited_at")


def release_row(r: dict[str, Any]) -> dict[str, Any]:
    """One release as flat columns (CSV, tables)."""
    summary, card = r.get("summary") or {}, r.get("scorecard") or {}
    pillars = card.get("pillars") or {}
    return {"release": r["release"], "status": r["status"], "exit_code": r["exit_code"],
            "verdict": r["verdict"] or ("failed" if r["status"] == "failed" else "-"), "reason": r["reason"] or "",
            "parameters": summary.get("parameter_count", ""), "formats": " ".join(summary.get("formats", ())),
            **severity_counts(r), "score": card.get("score", ""), **{p: pillars.get(p) or "-" for p in PILLARS},
            "mof_class": mof_label(r), "osaid": osaid_label(r), "audited_at": r["audited_at"]}


def render_csv(report: FleetReport) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for release in report.releases:
        writer.writerow(release_row(release))
    return out.getvalue()


def render_json(report: FleetReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def _table(headers: list[str], rows: list[list[Any]], markdown: bool) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    if markdown:
        escape: Callable[[str], str] = lambda s: s.replace("|", "\\|")
        return ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|",
                *("| " + " | ".join(escape(c) for c in row) + " |" for row in cells)]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()   # noqa: E731
    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _sections(report: FleetReport, markdown: bool) -> list[str]:
    head = (lambda t: f"## {t}") if markdown else (lambda t: f"{t}\n{'=' * len(t)}")
    failing = sum(1 for r in report.releases if r["exit_code"] == 1)
    incomplete = sum(1 for r in report.releases if r["exit_code"] not in (0, 1))
    out = [("# " if markdown else "") + f"weightaudit fleet report: {len(report.releases)} releases, "
           f"{failing} failing, {incomplete} incomplete, {len(report.runs)} runs", ""]
    out += [head("Releases"), ""]
    out += _table(["release", "verdict", "exit", "params", "formats", "crit", "high", "med", "score", "weights",
                   "code", "data", "MOF", "OSAID"],
                  [[r["release"], r["verdict"], r["exit_code"], r["parameters"], r["formats"] or "-",
                    r["critical"], r["high"], r["medium"], r["score"], r["weights"], r["training_code"],
                    r["training_data"], r["mof_class"], r["osaid"]]
                   for r in map(release_row, report.releases)], markdown)
    out += ["", head("Findings by rule"), ""]
    out += _table(["rule", "severity", "releases", "findings"],
                  [[f["rule_id"], f["severity"], f["releases"], f["findings"]] for f in report.findings_by_rule],
                  markdown)
    out += ["", head("Worst releases"), ""]
    out += [f"- {r['release']}: {r['reason'] or r['verdict']} "
            f"({', '.join(f'{n} {s}' for s, n in severity_counts(r).items() if n) or 'no findings'})"
            for r in report.worst] or ["- none"]
    out += ["", head("Changes since the previous run"), ""] + _changes(report.changes)
    out += ["", head("Runs"), ""]
    out += _table(["run", "started", "status", "engine", "audited", "skipped", "failed", "exit"],
                  [[r["id"], r["started_at"], r["status"], r["engine"], r["audited"], r["skipped"], r["failed"],
                    "-" if r["exit_code"] is None else r["exit_code"]] for r in report.runs], markdown)
    return out


def _changes(changes: dict[str, Any]) -> list[str]:
    if changes.get("since_run") is None:
        return ["- no previous run to compare with"]
    lines = [f"- since run {changes['since_run']}: {len(changes['new_releases'])} new releases, "
             f"{len(changes['new_findings'])} new findings, {len(changes['fixed_findings'])} fixed findings"]
    lines += [f"- new release: {p}" for p in changes["new_releases"]]
    lines += [f"- new {f['rule_id']} in {f['release']}" for f in changes["new_findings"]]
    lines += [f"- fixed {f['rule_id']} in {f['release']}" for f in changes["fixed_findings"]]
    return lines


def render_text(report: FleetReport) -> str:
    return "\n".join(_sections(report, markdown=False)) + "\n"


def render_markdown(report: FleetReport) -> str:
    return "\n".join(_sections(report, markdown=True)) + "\n"


def top_rules(report: FleetReport, limit: int = 20) -> list[tuple[str, int]]:
    return rule_totals(report)[:limit]
