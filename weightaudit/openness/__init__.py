"""Openness scorecards: weights, training code and training data, their licences, MOF class and OSAID 1.0.

Public entry points (the CLI and pipeline call these):

- ``build_scorecard(release, declaration=None) -> Scorecard`` — from a discovered ``Release`` (or None), and/or a
  MOF YAML declaration path;
- ``scorecard_to_dict(scorecard) -> dict`` — the ``scorecard`` key of the JSON report;
- ``render_text`` / ``render_markdown`` / ``render_badge`` / ``export_mof`` for the other outputs.

Each name is imported on first use, so reading one submodule (``openness.card`` for a model card's front
matter) does not load the licence tables, the knowledge base and the scoring machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["build_scorecard", "scorecard_to_dict", "Scorecard", "ComponentResult", "render_text",
           "render_markdown", "render_badge", "export_mof", "load_declaration"]

# public name -> submodule that defines it
_EXPORTS = {
    "export_mof": "declaration", "load_declaration": "declaration",
    "render_badge": "render", "render_markdown": "render", "render_text": "render", "scorecard_to_dict": "render",
    "ComponentResult": "scorecard", "Scorecard": "scorecard", "build_scorecard": "scorecard",
}

if TYPE_CHECKING:
    from weightaudit.openness.declaration import export_mof, load_declaration
    from weightaudit.openness.render import render_badge, render_markdown, render_text, scorecard_to_dict
    from weightaudit.openness.scorecard import ComponentResult, Scorecard, build_scorecard


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'weightaudit.openness' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"weightaudit.openness.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
