"""``weightaudit scorecard [RELEASE...]``: how open a release is — weights, training code, training data, their
licences, the MOF class and OSAID 1.0, with the evidence for every verdict.

Exit codes: 0 (informational), 1 only when ``--min-score`` is given and the summary score is below it (or cannot
be computed), 2 usage errors (bad declaration, nothing to evaluate), 3 incomplete (raised as WeightauditError).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from weightaudit import __version__
from weightaudit.cli.common import stderr_line, stdout_is_rich, write_output
from weightaudit.errors import ExitCode, UsageError


@click.command("scorecard")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--declare", "declare", type=click.Path(dir_okay=False), metavar="FILE",
              help="A MOF model YAML declaring what the folder cannot show (read unchanged by the Model Openness Tool).")
@click.option("--export-mof", "export_mof_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write a MOF YAML pre-filled from the evidence found, to complete and publish.")
@click.option("--badge", "badge_path", type=click.Path(dir_okay=False), metavar="FILE", help="Write an SVG badge.")
@click.option("-f", "--format", "fmt", type=click.Choice(("text", "json", "markdown")), default="text",
              show_default=True, help="Output format.")
@click.option("-o", "--output", metavar="FILE", help="Write the scorecard here instead of stdout.")
@click.option("--min-score", type=click.FloatRange(0, 10), default=None,
              help="Exit 1 when the 0-10 summary score is below this.")
@click.option("--color/--no-color", "color", default=None, help="Force or disable colour in text output.")
def scorecard_command(paths: tuple[str, ...], declare: str | None, export_mof_path: str | None,
                      badge_path: str | None, fmt: str, output: str | None, min_score: float | None,
                      color: bool | None) -> None:
    """Score how open a release is: weights, training code and training data (MOF class, OSAID 1.0)."""
    from weightaudit.openness import (build_scorecard, export_mof, render_badge, render_markdown, render_text,
                                      scorecard_to_dict)

    if not paths and not declare:
        raise UsageError("give a release path, a --declare FILE, or both")
    release = None
    if paths:
        from weightaudit.discover import discover

        release = discover(list(paths))
    scorecard = build_scorecard(release, Path(declare) if declare else None)
    if fmt == "json":
        document = {"schema_version": "1", "tool": {"name": "weightaudit", "version": __version__},
                    "command": "scorecard", "target": " ".join(paths) if paths else declare,
                    "scorecard": scorecard_to_dict(scorecard)}
        text = json.dumps(document, indent=2, ensure_ascii=False)
    elif fmt == "markdown":
        text = render_markdown(scorecard)
    else:
        text = render_text(scorecard, rich=stdout_is_rich(color, output))
    write_output(text, output)
    for path, content in ((export_mof_path, export_mof(scorecard) if export_mof_path else ""),
                          (badge_path, render_badge(scorecard) if badge_path else "")):
        if path:
            try:
                Path(path).write_text(content, encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
            stderr_line(f"wrote {path}")
    if scorecard.notes:
        stderr_line(f"weightaudit: scorecard incomplete: {'; '.join(scorecard.notes)}")
        raise SystemExit(int(ExitCode.INCOMPLETE))
    if min_score is not None and (scorecard.score is None or scorecard.score < min_score):
        shown = "n/a" if scorecard.score is None else f"{scorecard.score:g}"
        stderr_line(f"weightaudit: openness score {shown} is below --min-score {min_score:g}")
        raise SystemExit(int(ExitCode.FINDINGS))
