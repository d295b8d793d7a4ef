"""Markdown output for CI step summaries and PR comments (GitHub-flavoured tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from weightaudit.render.common import group_tensors, human_bytes, human_count, policy_text, shape_text
from weightaudit.report import (Report, combined_verdict, headline, release_rows, summary, torch_load_sentence,
                                torch_load_verdict, verdict_line)

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions

MAX_GROUP_ROWS = 200


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(report: Report, options: "RenderOptions", level: int = 1) -> str:
    heading = "#" * level
    lines = [f"{heading} weightaudit {report.command}: `{_cell(report.target)}` — {report.verdict.value.upper()}", "",
             f"**{_cell(headline(report))}**", ""]
    lines += _summary(report)
    if report.tensors:
        lines += _tensors(report, options, heading)
    lines += _findings(report, heading)
    return "\n".join(lines).rstrip() + "\n"


def render_many(reports: Sequence[Report], options: "RenderOptions") -> str:
    verdict = combined_verdict(reports)
    lines = [f"# weightaudit {reports[0].command}: {len(reports)} releases — {verdict.value.upper()}", ""]
    lines += [f"- `{_cell(r.target)}`: {r.verdict.value}" for r in reports]
    return "\n".join(lines) + "\n\n" + "\n".join(render(r, options, level=2) for r in reports)


def _summary(report: Report) -> list[str]:
    s = summary(report)
    verdict = f"**{_cell(verdict_line(report))}**"
    rows: list[tuple[str, object]] = [*release_rows(report)]
    rows += [
        ("Formats", ", ".join(s["formats"]) or "-"),
        ("Files", s["files"]),
        ("Tensors", f"{s['tensor_count']:,}"),
        ("Parameters", f"{human_count(s['parameter_count'])} ({s['parameter_count']:,})"),
        ("Optimizer state", f"{s['optimizer_parameter_count']:,}"),
        ("Bytes", f"{human_bytes(s['total_bytes'])} ({s['total_bytes']:,})"),
        ("DTypes", ", ".join(f"{d} {human_count(n)}" for d, n in s["parameter_count_by_dtype"].items()) or "-"),
        ("Coverage", "every file fully read and checked" if s["verified"]
         else "**not** all files could be fully read and checked"),
        *([("Policy", policy)] if (policy := policy_text(report.policy)) is not None else []),
        ("Findings", ", ".join(f"{k} {v}" for k, v in s["findings_by_severity"].items() if v) or "none"),
    ]
    out = ([verdict, ""] if verdict else []) + ["| | |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in rows]
    sentences: dict[str, list[str]] = {}
    for loaded in report.files:
        verdict = torch_load_verdict(loaded)
        if verdict is not None:
            sentences.setdefault(torch_load_sentence(verdict), []).append(loaded.path)
    lines = [f"- {'`' + _cell(paths[0]) + '`' if len(paths) == 1 else f'{len(paths)} files'}: {_cell(text)}"
             for text, paths in sentences.items()]    # 12 shards with the same verdict: one line
    if lines:
        out += ["", "**What `torch.load` would do:**", ""] + lines
    unverified = [f for f in report.files if not f.verified]
    if unverified:
        out += ["", "**Not verified:**", ""] + [f"- `{_cell(f.path)}`: {_cell(f.reason or f.status.value)}"
                                                for f in unverified]
    return out + [""]


def _tensors(report: Report, options: "RenderOptions", heading: str = "#") -> list[str]:
    groups = group_tensors(report.tensors) if not options.all_tensors else None
    if groups is None:
        rows = [(t.name, t.dtype, t.shape, t.parameter_count, 1, t.file) for t in report.tensors]
        with_file = len({t.file for t in report.tensors}) > 1
    else:
        rows = [(g.label, g.dtype, g.shape, g.parameter_count, g.count, g.file or "") for g in groups]
        with_file = any(g.file for g in groups)
    head = "| Tensor | DType | Shape | Params | Count |" + (" File |" if with_file else "")
    out = [f"{heading}# Tensors", "", head, "|---|---|---|---:|---:|" + ("---|" if with_file else "")]
    for name, dtype, shape, params, count, file in rows[:MAX_GROUP_ROWS]:
        out.append(f"| `{_cell(name)}` | {dtype} | {shape_text(shape)} | {params:,} | {count if count > 1 else ''} |"
                   + (f" `{_cell(file)}` |" if with_file else ""))
    if len(rows) > MAX_GROUP_ROWS:
        out.append(f"| … {len(rows) - MAX_GROUP_ROWS} more rows | | | | |" + (" |" if with_file else ""))
    return out + [""]


def _findings(report: Report, heading: str = "#") -> list[str]:
    if not report.findings:
        out = [f"{heading}# Findings", "", "No findings."]
    else:
        out = [f"{heading}# Findings", "", "| Severity | Rule | Path | Tensor | Message |", "|---|---|---|---|---|"]
        for f in report.findings:
            out.append(f"| {f.severity.label} | {f.rule_id} | `{_cell(f.path)}` | "
                       f"{'`' + _cell(f.tensor) + '`' if f.tensor else ''} | {_cell(f.message)} |")
    if report.suppressed:
        out += ["", f"{len(report.suppressed)} finding(s) suppressed by policy or baseline."]
    out += ["", *[f"> note: {_cell(n)}" for n in report.notes]] if report.notes else []
    return out + [""]
