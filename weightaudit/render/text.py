"""Text output with rich: summary panel, tensor table grouped by layer, findings.

Styled on a terminal; plain (no colour, ASCII-safe box, fixed width) when piped or NO_COLOR is set.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from weightaudit.model import Severity
from weightaudit.render.common import (fmt_float, group_tensors, human_bytes, human_count, pooled_stats, shape_text,
                                       sparkline)
from weightaudit.report import Report, summary, torch_load_sentence, torch_load_verdict

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions

SEVERITY_STYLE = {Severity.CRITICAL: "bold white on red", Severity.HIGH: "bold red", Severity.MEDIUM: "yellow",
                  Severity.LOW: "cyan", Severity.INFO: "dim"}


def render(report: Report, options: "RenderOptions") -> str:
    buffer = io.StringIO()
    width = options.width + (60 if options.show_stats else 0)
    console = Console(file=buffer, width=None if options.styled else width,
                      force_terminal=options.styled, no_color=not options.styled,
                      color_system="auto" if options.styled else None, highlight=False, emoji=False)
    if not options.styled:
        console.width = width
    table_box = box.ROUNDED if options.styled else box.ASCII2
    console.print(_summary_panel(report, table_box))
    if report.tensors:
        console.print(_tensor_table(report, options, table_box))
    console.print(_findings_block(report, table_box))
    return buffer.getvalue()


def _summary_panel(report: Report, table_box: box.Box) -> Panel:
    s = summary(report)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Target", report.target)
    grid.add_row("Formats", ", ".join(s["formats"]) or "-")
    grid.add_row("Files", _files_line(report))
    grid.add_row("Tensors", f"{s['tensor_count']:,}")
    grid.add_row("Parameters", f"{human_count(s['parameter_count'])} ({s['parameter_count']:,})")
    if s["optimizer_parameter_count"]:
        grid.add_row("  optimizer", f"{human_count(s['optimizer_parameter_count'])} "
                                    f"({s['optimizer_parameter_count']:,}) of them are optimizer state")
    grid.add_row("Bytes", f"{human_bytes(s['total_bytes'])} ({s['total_bytes']:,})")
    dtypes = ", ".join(f"{d} {human_count(n)}" for d, n in s["parameter_count_by_dtype"].items())
    grid.add_row("DTypes", dtypes or "-")
    for text, paths in _metadata_groups(report):
        where = paths[0] if len(paths) == 1 else f"{len(paths)} files"
        grid.add_row("Metadata", f"{where}: {text}")
    for loaded in report.files:
        verdict = torch_load_verdict(loaded)
        if verdict is not None:
            grid.add_row("torch.load", f"{loaded.path}: {torch_load_sentence(verdict)}")
    grid.add_row("Verified", "yes" if s["verified"] else "NO — some files could not be fully checked")
    return Panel(grid, title="weightaudit", box=table_box, expand=False)


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
    return f"{len(report.files)} (" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")"


def _tensor_table(report: Report, options: "RenderOptions", table_box: box.Box) -> Table:
    groups = None if options.all_tensors else group_tensors(report.tensors)
    show_files = (options.all_tensors and len({t.file for t in report.tensors}) > 1) or \
        (groups is not None and any(g.file for g in groups))
    table = Table(box=table_box, title="Tensors", title_justify="left", show_edge=True)
    table.add_column("Tensor", overflow="fold")
    table.add_column("DType")
    table.add_column("Shape")
    table.add_column("Params", justify="right")
    if not options.all_tensors:
        table.add_column("Count", justify="right")
    if show_files:
        table.add_column("File", overflow="fold")
    if options.show_stats:
        for name in ("min", "max", "mean", "std", "nan/inf", "hist"):
            table.add_column(name, justify="right" if name != "hist" else "left")
    if groups is None:
        for tensor in report.tensors:
            row = [_role_name(tensor.name, tensor.role.value), tensor.dtype, shape_text(tensor.shape),
                   f"{tensor.parameter_count:,}"]
            if show_files:
                row.append(tensor.file)
            table.add_row(*row, *_stats_cells(report, tensor, options))
    else:
        for group in groups:
            first = group.members[0]
            file_cell = [group.file or ""] if show_files else []
            table.add_row(_role_name(group.label, first.role.value), group.dtype, shape_text(group.shape),
                          f"{group.parameter_count:,}", f"× {group.count}" if group.count > 1 else "",
                          *file_cell,
                          *(_stats_cells(report, first, options) if group.count == 1 else
                            _group_stats(report, group, options)))
    return table


def _role_name(name: str, role: str) -> str:
    return f"{name} (optimizer)" if role == "optimizer" else name


def _stats_cells(report: Report, tensor, options: "RenderOptions") -> list[str]:
    if not options.show_stats:
        return []
    st = report.stats.get(tensor.key)
    if st is None:
        return ["-"] * 5 + [""]
    return [fmt_float(st.min), fmt_float(st.max), fmt_float(st.mean), fmt_float(st.std),
            f"{st.nan}/{st.inf}", sparkline(st)]


def _group_stats(report: Report, group, options: "RenderOptions") -> list[str]:
    if not options.show_stats:
        return []
    found = [report.stats[m.key] for m in group.members if m.key in report.stats]
    if not found:
        return ["-"] * 5 + [""]
    low, high, mean, std, nan, inf = pooled_stats(found)
    return [fmt_float(low), fmt_float(high), fmt_float(mean), fmt_float(std), f"{nan}/{inf}", ""]


def _findings_block(report: Report, table_box: box.Box):
    parts = []
    if report.findings:
        table = Table(box=table_box, title=f"Findings ({len(report.findings)})", title_justify="left")
        table.add_column("Severity")
        table.add_column("Rule")
        table.add_column("Path", overflow="fold")
        table.add_column("Message", overflow="fold")
        for finding in sorted(report.findings, key=lambda f: (-f.severity, f.sort_key())):
            where = f" [{finding.where}]" if finding.where else ""
            table.add_row(Text(finding.severity.label, style=SEVERITY_STYLE[finding.severity]), finding.rule_id,
                          finding.path, finding.message + where)
        parts.append(table)
    else:
        parts.append(Text("No findings."))
    if report.suppressed:
        parts.append(Text(f"{len(report.suppressed)} finding(s) suppressed by policy or baseline."))
    for note in report.notes:
        parts.append(Text(f"note: {note}"))
    if report.fail_on is not None:
        failing = len(report.failing())
        verdict = f"FAIL: {failing} finding(s) at or above {report.fail_on.label}" if failing else \
            f"PASS: nothing at or above {report.fail_on.label}"
        parts.append(Text(verdict, style="bold red" if failing else "bold green"))
    return Group(*parts)
