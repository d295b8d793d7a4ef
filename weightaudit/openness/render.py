"""Scorecard renderers: JSON-ready dict, text (rich table, or plain when not a terminal), Markdown, SVG badge.

Every verdict printed names its evidence (file and line, card field, URL or declaration line).
"""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape

from weightaudit.openness.mof import MofResult
from weightaudit.openness.profile import profile_lines, profile_markdown
from weightaudit.openness.scorecard import ComponentResult, Scorecard

TABLE_MIN_WIDTH = 110   # narrower: components stacked (name line, evidence under it) instead of a table
PILLAR_TITLES = {"weights": "Weights", "training_code": "Training code", "training_data": "Training data"}


def _score_text(score: float) -> str:
    return "n/a" if score < 0 else f"{score:g}"


def _component_dict(result: ComponentResult) -> dict[str, Any]:
    info = result.license_info
    return {
        "name": result.name,
        "id": result.key,
        "mof_class": result.mof_class or None,
        "content_type": result.content_type or None,
        "status": result.status,
        "confidence": result.confidence.value,
        "license": ({"id": info.id, "category": info.category, "family": info.family, "open": info.open,
                     "osi_approved": info.osi_approved} if info else None),
        "score": result.score,
        "reason": result.reason,
        "evidence": [e.to_dict() for e in result.evidence],
        "details": list(result.details),
        "attested": result.attested,
    }


def _mof_dict(scorecard: Scorecard) -> dict[str, Any]:
    out = scorecard.mof.to_dict()
    loose = scorecard.mof_if_mentions_hold
    out["if_mentions_hold"] = {"class": loose.mof_class, "label": loose.label,
                               "progress": loose.to_dict()["progress"]}
    if scorecard.mof_declared is not None:
        exact = scorecard.mof_declared
        out["declaration_as_mot_reads_it"] = {"class": exact.mof_class, "label": exact.label,
                                              "progress": exact.to_dict()["progress"]}
    return out


def scorecard_to_dict(scorecard: Scorecard) -> dict[str, Any]:
    """The ``scorecard`` object of the JSON report (DESIGN.md): pillars, components, mof_class, osaid, score."""
    return {
        "name": scorecard.name,
        "headline": scorecard.headline,
        "pillars": {key: {"status": p.status, "license": p.license, "reason": p.reason,
                          "evidence": [e.to_dict() for e in p.evidence]} for key, p in scorecard.pillars.items()},
        "license": {"effective": scorecard.release_license, "conflicts": list(scorecard.license_conflicts),
                    "evidence": [e.to_dict() for e in scorecard.license_evidence]},
        "components": [_component_dict(r) for r in scorecard.components],
        "mof_class": _mof_dict(scorecard),
        "osaid": {"version": "1.0", "verdict": scorecard.osaid.verdict, "label": scorecard.osaid.label,
                  "pillars": dict(scorecard.osaid.pillars), "reasons": list(scorecard.osaid.reasons)},
        "score": scorecard.score,
        "declaration": scorecard.declaration,
        "notes": list(scorecard.notes),
        "profile": [item.to_dict() for item in scorecard.profile],
    }


def _evidence_text(result: ComponentResult, limit: int = 2) -> str:
    items = [e.url or e.short() for e in result.evidence[:limit]]
    more = len(result.evidence) - limit
    return "; ".join(items) + (f" (+{more})" if more > 0 else "") if items else "-"


def _progress(mof: MofResult) -> str:
    return " / ".join(f"{c}: {mof.progress[c]:.0f}%" for c in (3, 2, 1))


def _summary_lines(scorecard: Scorecard) -> list[str]:
    lines = [f"Openness scorecard: {scorecard.name or scorecard.target or '-'}",
             f"Headline: {scorecard.headline}"]
    for key, pillar in scorecard.pillars.items():
        source = pillar.evidence[0].url or pillar.evidence[0].source if pillar.evidence else "no evidence"
        lines.append(f"  {PILLAR_TITLES[key]:<14} {pillar.status:<11} {pillar.reason} [{source}]")
    lines.append(f"Licence: {scorecard.release_license or 'none found'}"
                 + (f" ({', '.join(e.source for e in scorecard.license_evidence[:3])})" if scorecard.license_evidence else ""))
    lines += [f"  conflict: {c}" for c in scorecard.license_conflicts]
    lines.append(f"MOF: {scorecard.mof.label} (progress III/II/I {_progress(scorecard.mof)}); "
                 f"if mentions hold: {scorecard.mof_if_mentions_hold.label}")
    lines.append(f"OSAID 1.0: {scorecard.osaid.label}")
    lines += [f"  {r}" for r in scorecard.osaid.reasons]
    summary = "n/a" if scorecard.score is None else f"{scorecard.score:g}/10"
    lines.append(f"Summary score: {summary} (weighted; components that cannot be evaluated are left out)")
    return lines


def render_text(scorecard: Scorecard, rich: bool = False, width: int = 160) -> str:
    """The scorecard as text in ``width`` columns: summary lines wrapped with a hanging indent, then the
    components table (rich box and colours when ``rich``, an ASCII box otherwise). No line is longer than
    ``width``; nothing is cut."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=rich, no_color=not rich, color_system="auto" if rich else None,
                      width=width, highlight=False, emoji=False)
    for line in _summary_lines(scorecard):
        console.print(_hanging(line, width), markup=False, highlight=False, overflow="fold")
    console.print()
    table = Table(title="Components", title_justify="left", box=box.ROUNDED if rich else box.ASCII2)
    for column in ("component", "status", "licence", "score", "evidence"):
        table.add_column(column, justify="right" if column == "score" else "left",
                         no_wrap=column == "score", overflow="fold")
    for r in scorecard.components:
        colour = "green" if r.score >= 8 else "yellow" if r.score >= 3 else "dim" if r.score < 0 else "red"
        score = f"[{colour}]{_score_text(r.score)}[/]" if rich else _score_text(r.score)
        table.add_row(_escape(r.name), r.status, _escape(r.license or "-"), score, _escape(_evidence_text(r)))
    if width >= TABLE_MIN_WIDTH:
        console.print(table)
    else:
        for line in _stacked_components(scorecard, width):
            console.print(line, markup=False, highlight=False, overflow="fold")
    if scorecard.profile:
        console.print()
        for line in profile_lines(scorecard.profile, width):
            console.print(line, markup=False, highlight=False, overflow="fold")
    return buffer.getvalue()


def _stacked_components(scorecard: Scorecard, width: int) -> list[str]:
    """Narrow terminals: one line per component (score, status, licence, name), its evidence under it."""
    import textwrap

    status_w = max((len(r.status) for r in scorecard.components), default=6)
    licence_w = min(24, max((len(r.license or "-") for r in scorecard.components), default=7))
    lines = ["Components", f"{'score':>5}  {'status':<{status_w}}  {'licence':<{licence_w}}  component"]
    for r in scorecard.components:
        lines.append(f"{_score_text(r.score):>5}  {r.status:<{status_w}}  {(r.license or '-'):<{licence_w}}  {r.name}")
        lines += textwrap.wrap(_evidence_text(r), width=width, initial_indent=" " * 7, subsequent_indent=" " * 7,
                               break_on_hyphens=False)
    return lines


def _hanging(line: str, width: int) -> str:
    """Wrap one summary line; continuation lines indented two more than the line itself."""
    import textwrap

    indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
    return "\n".join(textwrap.wrap(line, width=width, subsequent_indent=indent, break_long_words=True,
                                   break_on_hyphens=False)) or line


def _escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def render_markdown(scorecard: Scorecard) -> str:
    """Markdown for a release page: pillars table, lenses, components table with evidence."""
    out = [f"## Openness scorecard: {scorecard.name or scorecard.target or ''}", "",
           f"**{scorecard.headline}**", "", "| pillar | status | reason | evidence |", "|---|---|---|---|"]
    for key, p in scorecard.pillars.items():
        ev = ", ".join(f"`{e.url or e.source}`" for e in p.evidence[:2]) or "-"
        out.append(f"| {PILLAR_TITLES[key]} | {p.status} | {_md(p.reason)} | {ev} |")
    out += ["", f"- **Licence:** {scorecard.release_license or 'none found'}"]
    out += [f"- **Licence conflict:** {_md(c)}" for c in scorecard.license_conflicts]
    out += [f"- **MOF:** {scorecard.mof.label} (III/II/I: {_progress(scorecard.mof)}); if mentions hold: "
            f"{scorecard.mof_if_mentions_hold.label}",
            f"- **OSAID 1.0:** {scorecard.osaid.label}" + (f" — {_md('; '.join(scorecard.osaid.reasons))}"
                                                         if scorecard.osaid.reasons else ""),
            f"- **Summary score:** {'n/a' if scorecard.score is None else f'{scorecard.score:g}/10'}", "",
            "| component | status | licence | score | evidence | reason |", "|---|---|---|---:|---|---|"]
    for r in scorecard.components:
        out.append(f"| {r.name} | {r.status}{' (attested)' if r.attested else ''} | {r.license or '-'} | "
                   f"{_score_text(r.score)} | {_md(_evidence_text(r))} | {_md(r.reason)} |")
    if scorecard.profile:
        out += ["", "### Openness profile (index view)"] + profile_markdown(scorecard.profile)
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_badge(scorecard: Scorecard) -> str:
    """An SVG badge: the MOF class (strict) and the headline; grey when unclassified."""
    mof = scorecard.mof
    label = "MOF"
    value = (mof.label.split(" - ")[0] if mof.mof_class else "Unclassified") + f" · {scorecard.headline}"
    colour = {1: "#4c1", 2: "#4c1", 3: "#76b1c9"}.get(mof.mof_class, "#9ba0a2")
    left, right = 8 * len(label) + 10, 7 * len(value) + 10
    width = left + right
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{escape(label)}: {escape(value)}">'
        f"<title>{escape(label)}: {escape(value)}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="5" y="14">{escape(label)}</text>'
        f'<text x="{left + 5}" y="14">{escape(value)}</text></g></svg>\n'
    )
