"""JSON output: the report dict of report.py, written with ``json`` (never through rich)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from weightaudit.report import Report, to_dict

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions


def render(report: Report, options: "RenderOptions") -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False)
