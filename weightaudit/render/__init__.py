"""Renderer registry: output format name -> module with ``render(report, options) -> str``.

Adding an output format = one new module plus one line in ``_RENDERERS`` (and its file extension in
``_EXTENSIONS`` when ``-o FILE`` should pick it). Several reports (several releases) are rendered by
``render_reports``: JSON as ``{"reports": [...]}``, SARIF as one run per release, text and Markdown one after the
other, followed by the combined verdict.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:   # the report model loads with the command, not with ``--help``
    from weightaudit.report import Report

_RENDERERS = {
    "text": "weightaudit.render.text",
    "json": "weightaudit.render.json_report",
    "markdown": "weightaudit.render.markdown",
    "sarif": "weightaudit.render.sarif",
}
# file extension of -o FILE -> format (when --format is not given)
_EXTENSIONS = {".txt": "text", ".text": "text", ".json": "json", ".md": "markdown", ".markdown": "markdown",
               ".sarif": "sarif"}


@dataclass(frozen=True)
class RenderOptions:
    styled: bool = False        # rich colours and box drawing (a terminal without NO_COLOR)
    all_tensors: bool = False   # list every tensor instead of grouping repeated layers
    show_stats: bool = False    # include statistics columns
    width: int = 100            # text width in columns; no line of text output is longer
    findings_only: bool = False  # text: only findings and the verdict (the pre-commit hook)


def formats() -> tuple[str, ...]:
    return tuple(_RENDERERS)


def format_for_extension(suffix: str) -> str | None:
    """``.sarif`` -> ``sarif``; None when the extension names no format."""
    return _EXTENSIONS.get(suffix.lower())


def render(report: Report, fmt: str, options: RenderOptions) -> str:
    module = importlib.import_module(_RENDERERS[fmt])
    return module.render(report, options)


def render_reports(reports: Sequence[Report], fmt: str, options: RenderOptions) -> str:
    """One report: exactly ``render``. Several: the format's own way of holding several."""
    if len(reports) == 1:
        return render(reports[0], fmt, options)
    module = importlib.import_module(_RENDERERS[fmt])
    return module.render_many(reports, options)
