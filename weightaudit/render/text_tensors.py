"""The tensor section of text output, in the layout that fits the width.

Wide: one table row per tensor group, when the whole table fits. Stacked: the name on its own line (folded only
when longer than the width), its dtype, shape, parameters and count aligned on the next line, statistics under
them when they do not fit beside. Numbers are never cut or ellipsised in either layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from weightaudit.render.common import fmt_float, group_tensors, pooled_stats, shape_text, sparkline
from weightaudit.report import Report

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions

STAT_NAMES = ("min", "max", "mean", "std", "nan/inf")
INDENT = "  "


@dataclass(frozen=True)
class TensorRow:
    name: str
    file: str
    dtype: str
    shape: str
    params: str
    count: str
    stats: tuple[str, ...]     # one value per STAT_NAMES, empty when statistics were not asked for
    hist: str


def tensor_rows(report: Report, options: "RenderOptions") -> list[TensorRow]:
    if options.all_tensors:
        return [TensorRow(_role_name(t.name, t.role.value), t.file, t.dtype, shape_text(t.shape),
                          f"{t.parameter_count:,}", "", *_tensor_stats(report, t, options)) for t in report.tensors]
    rows = []
    for group in group_tensors(report.tensors):
        first = group.members[0]
        stats = _tensor_stats(report, first, options) if group.count == 1 else _group_stats(report, group, options)
        rows.append(TensorRow(_role_name(group.label, first.role.value), group.file or "", group.dtype,
                              shape_text(group.shape), f"{group.parameter_count:,}",
                              f"× {group.count}" if group.count > 1 else "", *stats))
    return rows


def show_files(report: Report, options: "RenderOptions", rows: list[TensorRow]) -> bool:
    if options.all_tensors:
        return len({t.file for t in report.tensors}) > 1
    return any(r.file for r in rows)


def tensor_section(console: Console, report: Report, options: "RenderOptions", table_box: box.Box
                   ) -> list[RenderableType]:
    rows = tensor_rows(report, options)
    with_files = show_files(report, options, rows)
    table = _wide_table(rows, options, with_files, table_box)
    natural = console.measure(table, options=console.options.update_width(100_000)).maximum
    if natural <= console.width:
        return [table]
    return _stacked(rows, options, with_files, console.width)


def _wide_table(rows: list[TensorRow], options: "RenderOptions", with_files: bool, table_box: box.Box) -> Table:
    table = Table(box=table_box, title="Tensors", title_justify="left", show_edge=True)
    table.add_column("Tensor", no_wrap=True)
    for name in ("DType", "Shape"):
        table.add_column(name, no_wrap=True)
    table.add_column("Params", justify="right", no_wrap=True)
    if not options.all_tensors:
        table.add_column("Count", justify="right", no_wrap=True)
    if with_files:
        table.add_column("File", no_wrap=True)
    if options.show_stats:
        for name in STAT_NAMES:
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("hist", no_wrap=True)
    for row in rows:
        cells = [row.name, row.dtype, row.shape, row.params]
        cells += [row.count] if not options.all_tensors else []
        cells += [row.file] if with_files else []
        cells += [*row.stats, row.hist] if options.show_stats else []
        table.add_row(*(Text(cell) for cell in cells))     # tensor and file names are data, never markup
    return table


def _stacked(rows: list[TensorRow], options: "RenderOptions", with_files: bool, width: int) -> list[RenderableType]:
    """Name on its own line, the numbers aligned under it; statistics and histogram beside them when they fit,
    else on lines of their own."""
    base_lines = _aligned([[r.dtype, r.shape, r.params, r.count] for r in rows], right={2})
    stat_lines = _aligned([[f"{n} {v}" for n, v in zip(STAT_NAMES, r.stats)] for r in rows], right=set()) \
        if options.show_stats else [""] * len(rows)
    out: list[RenderableType] = [Text("Tensors")]
    for row, numbers, stats in zip(rows, base_lines, stat_lines):
        out.append(Text(row.name + (f"  ({row.file})" if with_files and row.file else ""), style="bold",
                        overflow="fold"))
        out += [Text(line, overflow="fold") for line in _detail_lines(numbers, stats, row.hist, width)]
    return out


def _detail_lines(numbers: str, stats: str, hist: str, width: int) -> list[str]:
    """The first arrangement whose lines all fit: one line, then stats apart, then the histogram apart too."""
    parts = [p for p in (numbers, stats, hist) if p]
    candidates = [[parts], [parts[:1], parts[1:]], [[p] for p in parts]]
    for candidate in candidates:
        lines = [(INDENT + "  ".join(group)).rstrip() for group in candidate if group]
        if all(len(line) <= width for line in lines):
            return lines
    return [(INDENT + p).rstrip() for p in parts]


def _aligned(table: list[list[str]], right: set[int]) -> list[str]:
    if not table:
        return []
    widths = [max(len(row[i]) if i < len(row) else 0 for row in table) for i in range(max(map(len, table)))]
    lines = []
    for row in table:
        cells = [(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _role_name(name: str, role: str) -> str:
    return f"{name} (optimizer)" if role == "optimizer" else name


def _tensor_stats(report: Report, tensor, options: "RenderOptions") -> tuple[tuple[str, ...], str]:
    if not options.show_stats:
        return (), ""
    st = report.stats.get(tensor.key)
    if st is None:
        return ("-",) * 5, ""
    return (fmt_float(st.min), fmt_float(st.max), fmt_float(st.mean), fmt_float(st.std),
            f"{st.nan}/{st.inf}"), sparkline(st)


def _group_stats(report: Report, group, options: "RenderOptions") -> tuple[tuple[str, ...], str]:
    if not options.show_stats:
        return (), ""
    found = [report.stats[m.key] for m in group.members if m.key in report.stats]
    if not found:
        return ("-",) * 5, ""
    low, high, mean, std, nan, inf = pooled_stats(found)
    return (fmt_float(low), fmt_float(high), fmt_float(mean), fmt_float(std), f"{nan}/{inf}"), ""
