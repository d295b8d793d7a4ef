"""Helpers shared by the human renderers: units, grouping repeated layers, sparklines."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from weightaudit.model import TensorInfo, TensorStats

_INDEX = re.compile(r"(?<=[./])\d+(?=[./]|$)|^\d+(?=[./])")
SPARK = "▁▂▃▄▅▆▇█"


def human_count(n: int) -> str:
    """As the Hub shows parameter counts: three significant digits, the unit chosen after rounding.

    22713728 -> '22.7M', 8030261248 -> '8.03B', 999999 -> '1M' (never '1000K'), 56256 -> '56.3K'.
    """
    if n < 1000:
        return str(n)
    units = (("K", 10**3), ("M", 10**6), ("B", 10**9), ("T", 10**12))
    for i, (unit, scale) in enumerate(units):
        shown = f"{n / scale:.3g}"
        if float(shown) < 1000 or i == len(units) - 1:
            return (shown if "e" not in shown else f"{n / scale:.0f}") + unit
    raise AssertionError("unreachable")


def human_bytes(n: int) -> str:
    """90868224 -> '90.9 MB' (decimal units)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _ranges(values: list[int]) -> str:
    values = sorted(set(values))
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{{{values[0]}..{values[-1]}}}"
    return "{" + ",".join(str(v) for v in values) + "}"


@dataclass(frozen=True)
class TensorGroup:
    """Tensors that differ only in their layer numbers, with the same dtype, shape and role."""

    label: str
    file: str | None
    dtype: str
    shape: tuple[int, ...]
    count: int
    parameter_count: int
    members: tuple[TensorInfo, ...]


def names_collide(tensors: Sequence[TensorInfo]) -> bool:
    """True when the same tensor name appears in several files (several models, not shards of one)."""
    seen: dict[str, str] = {}
    for tensor in tensors:
        if seen.setdefault(tensor.name, tensor.file) != tensor.file:
            return True
    return False


def group_tensors(tensors: Sequence[TensorInfo]) -> list[TensorGroup]:
    """``model.layers.{0..23}.mlp.up_proj.weight  BF16 [5632, 2048] x 24``, in natural name order.

    Shards of one model are grouped together; when names collide across files, groups stay per file.
    """
    per_file = names_collide(tensors)
    buckets: dict[tuple, list[TensorInfo]] = defaultdict(list)
    for tensor in sorted(tensors, key=lambda t: _natural_key(t.name)):
        pattern = _INDEX.sub("#", tensor.name)
        file = tensor.file if per_file else None
        buckets[(file, pattern, tensor.dtype, tensor.shape, tensor.role)].append(tensor)
    groups = []
    for (file, pattern, dtype, shape, _role), members in buckets.items():
        groups.append(TensorGroup(_label(pattern, members), file, dtype, shape, len(members),
                                  sum(m.parameter_count for m in members), tuple(members)))
    return sorted(groups, key=lambda g: (g.file or "", _natural_key(g.label), g.dtype, g.shape))


def _label(pattern: str, members: list[TensorInfo]) -> str:
    if len(members) == 1:
        return members[0].name
    columns: list[list[int]] = []
    for member in members:
        for i, match in enumerate(_INDEX.findall(member.name)):
            if i == len(columns):
                columns.append([])
            columns[i].append(int(match))
    parts = pattern.split("#")
    out = parts[0]
    for i, rest in enumerate(parts[1:]):
        values = sorted(set(columns[i])) if i < len(columns) else []
        out += (str(values[0]) if len(values) == 1 else _ranges(values)) + rest
    return out


def _natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def sparkline(stats: TensorStats | None) -> str:
    if stats is None or not stats.histogram or max(stats.histogram) == 0:
        return ""
    top = max(stats.histogram)
    return "".join(SPARK[min(len(SPARK) - 1, (v * (len(SPARK) - 1) + top - 1) // top)] if v else " "
                   for v in stats.histogram)


def fmt_float(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return f"{value:.4g}"


def pooled_stats(stats: Sequence[TensorStats]) -> tuple[float | None, float | None, float | None, float | None, int, int]:
    """(min, max, mean, std, nan, inf) over several tensors, merged exactly from their per-tensor moments."""
    finite = [s for s in stats if s.mean is not None and s.std is not None and s.count]
    mins = [s.min for s in stats if s.min is not None]
    maxs = [s.max for s in stats if s.max is not None]
    nan = sum(s.nan for s in stats)
    inf = sum(s.inf for s in stats)
    if not finite:
        return (min(mins, default=None), max(maxs, default=None), None, None, nan, inf)
    total = sum(s.count for s in finite)
    mean = sum(s.count * s.mean for s in finite) / total
    var = sum(s.count * (s.std ** 2 + (s.mean - mean) ** 2) for s in finite) / total
    return (min(mins, default=None), max(maxs, default=None), mean, var ** 0.5, nan, inf)


def policy_text(policy: Mapping[str, Any] | None) -> str | None:
    """The ``Policy`` row of an audit summary (None for other commands): which policy applied — never one inside
    the release. ``strict.yaml (--policy)``, ``weightaudit.yaml (found from the working directory)``, or
    ``built-in defaults``; a path under the working directory is shown relative to it."""
    if not policy:
        return None
    path = policy.get("path")
    if policy.get("source") == "default" or not path:
        return "built-in defaults"
    shown = Path(path)
    try:
        shown = shown.resolve().relative_to(Path.cwd().resolve())
    except (OSError, ValueError):
        pass
    how = "--policy" if policy.get("source") == "cli" else "found from the working directory"
    return f"{shown.as_posix()} ({how})"
