"""Text output with rich: summary panel, tensor table grouped by layer, findings.

Styled on a terminal; plain (no escape codes, ASCII box) when piped or NO_COLOR is set. Always exactly
``options.width`` columns: no line is longer, nothing is cut. The first summary row and the last line are the
report's verdict.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import TYPE_CHECKING, Sequence

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from weightaudit.model import Severity
from weightaudit.render.common import human_bytes, human_count, policy_text
from weightaudit.render.text_tensors import tensor_section
from weightaudit.report import (Report, Verdict, combined_verdict, headline, release_rows, summary,
                                torch_load_sentence, torch_load_verdict, verdict_line)

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions

SEVERITY_STYLE = {Severity.CRITICAL: "bold white on red", Severity.HIGH: "bold red", Severity.MEDIUM: "yellow",
                  Severity.LOW: "cyan", Severity.INFO: "dim"}
FINDINGS_TABLE_MIN_WIDTH = 100   # narrower: one finding per heading line, its message wrapped under it
FINDING_INDENT = 10
VERDICT_STYLE = {Verdict.PASS: "bold green", Verdict.FAIL: "bold red", Verdict.INCOMPLETE: "bold yellow"}


def render(report: Report, options: "RenderOptions") -> str:
    buffer = io.StringIO()
    console = make_console(buffer, options)
    table_box = box.ROUNDED if options.styled else box.ASCII2
    if not options.findings_only:
        console.print(_summary_panel(report, table_box))
    if report.tensors and not options.findings_only:
        for part in tensor_section(console, report, options, table_box):
            console.print(part)
    console.print(_findings_block(report, table_box, options.width))
    return buffer.getvalue()


def render_verdict(verdict: Verdict, text: str, options: "RenderOptions") -> str:
    """One verdict line, styled like the one at the end of a report (used after several reports)."""
    buffer = io.StringIO()
    make_console(buffer, options).print(Text(text, style=VERDICT_STYLE[verdict]))
    return buffer.getvalue()


def make_console(buffer: io.StringIO, options: "RenderOptions") -> Console:
    """Exactly ``options.width`` columns; escape codes only when styled (NO_COLOR means no bold either)."""
    return Console(file=buffer, width=options.width, force_terminal=options.styled, no_color=not options.styled,
                   color_system="auto" if options.styled else None, highlight=False, emoji=False, soft_wrap=False)


def _summary_panel(report: Report, table_box: box.Box) -> Panel:
    s = summary(report)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(Text("Verdict", style="bold"), Text(headline(report), style=VERDICT_STYLE[report.verdict]))
    grid.add_row("Target", Text(report.target))    # names and messages are data: never rich markup
    for label, value in release_rows(report):
        grid.add_row(label, Text(value))
    grid.add_row("Formats", Text(", ".join(s["formats"]) or "-"))
    grid.add_row("Files", _files_line(report))
    grid.add_row("Tensors", f"{s['tensor_count']:,}")
    grid.add_row("Parameters", f"{human_count(s['parameter_count'])} ({s['parameter_count']:,})")
    if s["optimizer_parameter_count"]:
        grid.add_row("  optimizer", f"{human_count(s['optimizer_parameter_count'])} "
                                    f"({s['optimizer_parameter_count']:,}) of them are optimizer state")
    grid.add_row("Bytes", f"{human_bytes(s['total_bytes'])} ({s['total_bytes']:,})")
    dtypes = ", ".join(f"{d} {human_count(n)}" for d, n in s["parameter_count_by_dtype"].items())
    grid.add_row("DTypes", Text(dtypes or "-"))
    for label, text, paths in _per_file_lines(report):
        grid.add_row(label, Text(f"{_where(paths)}: {text}"))
    grid.add_row("Coverage", "every file fully read and checked" if s["verified"]
                 else "NOT all files could be fully read and checked")
    policy = policy_text(report.policy)
    if policy is not None:
        grid.add_row("Policy", Text(policy))
    return Panel(grid, title="weightaudit", box=table_box, expand=False)


def _where(paths: list[str]) -> str:
    return paths[0] if len(paths) == 1 else f"{len(paths)} files"


def _per_file_lines(report: Report) -> list[tuple[str, str, list[str]]]:
    """Metadata and torch.load lines; files with the same text share one line ("12 files: ...")."""
    out = [("Metadata", text, paths) for text, paths in _metadata_groups(report)]
    sentences: dict[str, list[str]] = {}
    for loaded in report.files:
        verdict = torch_load_verdict(loaded)
        if verdict is not None:
            sentences.setdefault(torch_load_sentence(verdict), []).append(loaded.path)
    return out + [("torch.load", text, paths) for text, paths in sentences.items()]


def _metadata_groups(report: Report) -> list[tuple[str, list[str]]]:
    """Files' embedded metadata, files with identical metadata on one line (200 shards: one row, not 200)."""
    groups: dict[str, list[str]] = {}
    for loaded in report.files:
        metadata = loaded.facts.get("metadata") if loaded.facts else None
        if metadata:
            text = ", ".join(f"{k}={v}" for k, v in sorted(metadata.items()))
            groups.setdefault(text, []).append(loaded.path)
    return list(groups.items())


def _files_line(report: Report) -> str:
    counts: dict[str, int] = {}
    for loaded in report.files:
        counts[loaded.status.value] = counts.get(loaded.status.value, 0) + 1
    if not counts:
        return "0"
    return f"{len(report.files)} (" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")"


def _findings_table(findings: list, table_box: box.Box) -> list:
    table = Table(box=table_box, title=f"Findings ({len(findings)})", title_justify="left")
    table.add_column("Severity", no_wrap=True)
    table.add_column("Rule", no_wrap=True)
    table.add_column("Path", overflow="fold")
    table.add_column("Message", overflow="fold")
    for finding in findings:
        where = f" [{finding.where}]" if finding.where else ""
        table.add_row(Text(finding.severity.label, style=SEVERITY_STYLE[finding.severity]), finding.rule_id,
                      Text(finding.path), Text(finding.message + where))
    return [table]


def _findings_stacked(findings: list, width: int) -> list:
    """Narrow terminals: severity, rule and path on one line, the message word-wrapped under it."""
    import textwrap

    out: list = [Text(f"Findings ({len(findings)})")]
    indent = " " * FINDING_INDENT
    for finding in findings:
        head = Text(f"{finding.severity.label:<{FINDING_INDENT - 1}} ", style=SEVERITY_STYLE[finding.severity])
        head.append(f"{finding.rule_id}  {finding.path}")
        head.overflow = "fold"
        out.append(head)
        where = f" [{finding.where}]" if finding.where else ""
        wrapped = textwrap.wrap(finding.message + where, width=width, initial_indent=indent,
                                subsequent_indent=indent, break_on_hyphens=False)
        out += [Text(line, overflow="fold") for line in wrapped]
    return out


def _findings_block(report: Report, table_box: box.Box, width: int):
    parts: list = []
    if report.findings:
        ordered = sorted(report.findings, key=lambda f: (-f.severity, f.sort_key()))
        parts += _findings_table(ordered, table_box) if width >= FINDINGS_TABLE_MIN_WIDTH else \
            _findings_stacked(ordered, width)
    else:
        parts.append(Text("No findings."))
    if report.suppressed:
        parts.append(Text(f"{len(report.suppressed)} finding(s) suppressed by policy or baseline."))
    for note in report.notes:
        parts.append(Text(f"note: {note}"))   # Text: never parsed as markup
    parts.append(Text(verdict_line(report), style=VERDICT_STYLE[report.verdict]))
    return Group(*parts)


def render_many(reports: Sequence[Report], options: "RenderOptions") -> str:
    """Each release's report in turn, one line per release, then the combined verdict as the last line."""
    verdict = combined_verdict(reports)
    counts = Counter(r.verdict.value for r in reports)
    tally = ", ".join(f"{counts[v.value]} {v.value}" for v in (Verdict.FAIL, Verdict.INCOMPLETE, Verdict.PASS)
                      if counts[v.value])
    buffer = io.StringIO()
    console = make_console(buffer, options)
    for report in reports:
        console.print(Text(f"{report.verdict.value.upper():<10} {report.target}", overflow="fold"))
    console.print(Text(f"{verdict.value.upper()} (exit {int(verdict.exit_code)}): {len(reports)} releases: {tally}",
                       style=VERDICT_STYLE[verdict], overflow="fold"))
    return "\n".join(render(r, options) for r in reports) + "\n" + buffer.getvalue()
