"""JSON output: the report dict of report.py, written with ``json`` (never through rich)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

from weightaudit import __version__
from weightaudit.collector import fewer_collections
from weightaudit.report import SCHEMA_VERSION, Report, combined_verdict, to_dict

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions


# Above this many tensors, compact JSON through the C encoder: the indenting encoder is pure Python (5x time, 2x
# memory). Measured at load 1.2: a 20,000-tensor audit report with statistics (19.5 MB) took 0.87 s to indent
# against ~0.2 s compact, half of that whole audit; 5,000 tensors keep the indented cost near 0.2 s. Which
# encoder runs depends only on the document, so a given report always has the same bytes.
INDENT_MAX_TENSORS = 5_000


def _dumps(document: dict) -> str:
    tensors = len(document.get("tensors", ())) + sum(len(r.get("tensors", ())) for r in document.get("reports", ()))
    indent = 2 if tensors <= INDENT_MAX_TENSORS else None
    return json.dumps(document, indent=indent, sort_keys=False, ensure_ascii=False, allow_nan=False)


def render(report: Report, options: "RenderOptions") -> str:
    with fewer_collections():   # a dict per tensor and its stats (see weightaudit.collector)
        return _dumps(to_dict(report))


def render_many(reports: Sequence[Report], options: "RenderOptions") -> str:
    """Several releases: ``{"reports": [...]}`` with the combined verdict beside them."""
    with fewer_collections():
        return _dumps({
            "schema_version": SCHEMA_VERSION, "tool": {"name": "weightaudit", "version": __version__},
            "command": reports[0].command, "target": " ".join(r.target for r in reports),
            "verdict": combined_verdict(reports).value, "reports": [to_dict(r) for r in reports],
        })
