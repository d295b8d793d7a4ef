"""Openness scorecards: weights, training code and training data, their licences, MOF class and OSAID 1.0.

Public entry points (the CLI and pipeline call these):

- ``build_scorecard(release, declaration=None) -> Scorecard`` — from a discovered ``Release`` (or None), and/or a
  MOF YAML declaration path;
- ``scorecard_to_dict(scorecard) -> dict`` — the ``scorecard`` key of the JSON report;
- ``render_text`` / ``render_markdown`` / ``render_badge`` / ``export_mof`` for the other outputs.
"""

from weightaudit.openness.declaration import export_mof, load_declaration
from weightaudit.openness.render import render_badge, render_markdown, render_text, scorecard_to_dict
from weightaudit.openness.scorecard import ComponentResult, Scorecard, build_scorecard

__all__ = ["build_scorecard", "scorecard_to_dict", "Scorecard", "ComponentResult", "render_text",
           "render_markdown", "render_badge", "export_mof", "load_declaration"]
