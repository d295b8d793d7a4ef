"""The fleet report as one self-contained HTML page: inline CSS, inline JS (sorting and filtering) and inline
SVG charts; no network reference of any kind (no external script, style, font, image or link target), so it
can be opened from disk or attached to a ticket. Every value from the database is HTML-escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from weightaudit.fleet.fleet_report import SEVERITIES, FleetReport, rule_totals
from weightaudit.fleet.render_html_assets import CSS, JS
from weightaudit.fleet.render_text import release_row

BAR_HEIGHT = 18
CHART_WIDTH = 640
RULES_CHARTED = 25


def _cell(value: Any, sort_key: Any = None, cls: str = "") -> str:
    key = value if sort_key is None else sort_key
    attr = f' class="{cls}"' if cls else ""
    return f'<td data-v="{escape(str(key))}"{attr}>{escape(str(value))}</td>'


def _sortable(table_id: str, headers: list[tuple[str, str]], rows: list[str]) -> str:
    ths = "".join(f'<th data-col="{i}" data-type="{kind}" title="sort">{escape(h)}</th>'
                  for i, (h, kind) in enumerate(headers))
    return (f'<table id="{table_id}" class="sortable"><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _releases_table(report: FleetReport) -> str:
    headers = [("release", "text"), ("verdict", "text"), ("exit", "num"), ("parameters", "num"),
               ("formats", "text"), *((s, "num") for s in SEVERITIES), ("reason", "text")]
    rows = []
    for release in report.releases:
        r = release_row(release)
        verdict = r["verdict"] if r["status"] == "ok" else "failed"
        rows.append("<tr>" + _cell(r["release"]) + _cell(verdict, cls=f"v-{verdict}") + _cell(r["exit_code"])
                    + _cell(r["parameters"]) + _cell(r["formats"] or "-")
                    + "".join(_cell(r[s], cls=f"s-{s}" if r[s] else "") for s in SEVERITIES)
                    + _cell(r["reason"]) + "</tr>")
    return _sortable("releases", headers, rows)


def _leaderboard(report: FleetReport) -> str:
    headers = [("rank", "num"), ("release", "text"), ("score", "num"), ("weights", "text"), ("training code", "text"),
               ("training data", "text"), ("MOF class", "text"), ("OSAID 1.0", "text"), ("headline", "text")]
    scored = sorted((r for r in report.releases if r.get("scorecard")),
                    key=lambda r: (-(r["scorecard"].get("score") or 0), r["release"]))
    rows = []
    for rank, release in enumerate(scored, 1):
        r, card = release_row(release), release["scorecard"]
        rows.append("<tr>" + _cell(rank) + _cell(r["release"]) + _cell(r["score"])
                    + "".join(_cell(r[p], cls=f"p-{r[p]}") for p in ("weights", "training_code", "training_data"))
                    + _cell(r["mof_class"]) + _cell(r["osaid"]) + _cell(card.get("headline") or "") + "</tr>")
    return _sortable("leaderboard", headers, rows)


def _bar_chart(chart_id: str, title: str, bars: list[tuple[str, int]]) -> str:
    if not bars:
        return f'<p id="{chart_id}" class="empty">{escape(title)}: none</p>'
    top = max(n for _, n in bars) or 1
    label_w, height = 110, BAR_HEIGHT * len(bars) + 10
    parts = [f'<svg id="{chart_id}" role="img" aria-label="{escape(title)}" width="{CHART_WIDTH}" '
             f'height="{height}" viewBox="0 0 {CHART_WIDTH} {height}">']
    for i, (label, n) in enumerate(bars):
        y = 5 + i * BAR_HEIGHT
        width = max(1, int((CHART_WIDTH - label_w - 60) * n / top))
        parts.append(f'<text x="0" y="{y + 13}" class="lbl">{escape(label)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{width}" height="{BAR_HEIGHT - 4}">'
                     f'<title>{escape(label)}: {n}</title></rect>'
                     f'<text x="{label_w + width + 4}" y="{y + 13}" class="num">{n}</text>')
    return "".join(parts) + "</svg>"


def _verdict_bars(report: FleetReport) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for r in report.releases:
        word = r["verdict"] if r["status"] == "ok" else "failed"
        counts[word] = counts.get(word, 0) + 1
    return sorted(counts.items())


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>" if items else "<p>none</p>"


def _changes(changes: dict[str, Any]) -> str:
    if changes.get("since_run") is None:
        return '<p id="changes">No previous run to compare with.</p>'
    return (f'<div id="changes"><p>Since run {changes["since_run"]}: {len(changes["new_releases"])} new releases, '
            f'{len(changes["new_findings"])} new findings, {len(changes["fixed_findings"])} fixed findings.</p>'
            + "<h3>New releases</h3>" + _list(changes["new_releases"])
            + "<h3>New findings</h3>" + _list([f"{f['rule_id']} in {f['release']}" for f in changes["new_findings"]])
            + "<h3>Fixed findings</h3>"
            + _list([f"{f['rule_id']} in {f['release']}" for f in changes["fixed_findings"]]) + "</div>")


def render_html(report: FleetReport) -> str:
    failing = sum(1 for r in report.releases if r["exit_code"] == 1)
    worst = [f"{r['release']}: {r['reason'] or r['verdict']}" for r in report.worst]
    title = f"weightaudit fleet report: {len(report.releases)} releases, {failing} failing"
    body = (f"<h1>{escape(title)}</h1>"
            '<p><label>Filter <input id="filter" type="search" placeholder="release, verdict, rule…"></label></p>'
            "<h2>Verdicts</h2>" + _bar_chart("verdict-chart", "releases by verdict", _verdict_bars(report))
            + "<h2>Releases</h2>" + _releases_table(report)
            + "<h2>Openness leaderboard</h2>" + _leaderboard(report)
            + "<h2>Findings by rule (releases)</h2>"
            + _bar_chart("rules-chart", "releases with a finding, by rule", rule_totals(report)[:RULES_CHARTED])
            + "<h2>Worst releases</h2>" + _list(worst)
            + "<h2>Changes since the previous run</h2>" + _changes(report.changes)
            + f"<footer>{len(report.runs)} runs recorded.</footer>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}<script>{JS}</script>"
            "</body></html>\n")
