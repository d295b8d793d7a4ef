"""Renderer registry: output format name -> module with ``render(report, options) -> str``.

Adding an output format = one new module plus one line in ``_RENDERERS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from weightaudit.report import Report

_RENDERERS = {
    "text": "weightaudit.render.text",
    "json": "weightaudit.render.json_report",
    "markdown": "weightaudit.render.markdown",
    "sarif": "weightaudit.render.sarif",
}


@dataclass(frozen=True)
class RenderOptions:
    styled: bool = False        # rich colours and box drawing (a terminal without NO_COLOR)
    all_tensors: bool = False   # list every tensor instead of grouping repeated layers
    show_stats: bool = False    # include statistics columns
    width: int = 160            # text width when not a terminal


def formats() -> tuple[str, ...]:
    return tuple(_RENDERERS)


def render(report: Report, fmt: str, options: RenderOptions) -> str:
    module = importlib.import_module(_RENDERERS[fmt])
    return module.render(report, options)
