"""``weightaudit scorecard [RELEASE...]``: how open a release is — weights, training code, training data, their
licences, the MOF class and OSAID 1.0, with the evidence for every verdict.

Exit codes: 0 (informational), 1 only when ``--min-score`` is given and the summary score is below it (or cannot
be computed), 2 usage errors (bad declaration, nothing to evaluate), 3 incomplete (raised as WeightauditError).
"""

from __future__ import annotations

import json

import click

from weightaudit.cli.common import stderr_line, terminal, write_output
from weightaudit.cli.options import output_options, resolve_format
from weightaudit.errors import ExitCode, UsageError

FORMATS = ("text", "json", "markdown")


@click.command("scorecard")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--declare", "declare", type=click.Path(dir_okay=False), metavar="FILE",
              help="A MOF model YAML declaring what the folder cannot show (read unchanged by the Model Openness Tool).")
@click.option("--export-mof", "export_mof_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write a MOF YAML pre-filled from the evidence found, to complete and publish.")
@click.option("--knowledge", "knowledge", type=click.Path(dir_okay=False), metavar="FILE",
              help="Your own known-artifact rows (YAML/JSON, schema of weightaudit/data/knowledge.yaml), added to the "
                   "bundled knowledge base.")
@click.option("--badge", "badge_path", type=click.Path(dir_okay=False), metavar="FILE", help="Write an SVG badge.")
@click.option("--min-score", type=click.FloatRange(0, 10), default=None,
              help="Exit 1 when the 0-10 summary score is below this.")
@output_options(FORMATS)
def scorecard_command(paths: tuple[str, ...], declare: str | None, export_mof_path: str | None,
                      badge_path: str | None, min_score: float | None, fmt: str | None, output: str | None,
                      quiet: bool, color: bool | None, knowledge: str | None = None) -> None:
    """Score how open a release is: weights, training code and training data (MOF class, OSAID 1.0).

    Several folders that are separate releases get one scorecard each.
    """
    from weightaudit import api

    if not paths and not declare:
        raise UsageError("give a release path, a --declare FILE, or both")
    fmt = resolve_format(fmt, output, FORMATS)
    if (export_mof_path or badge_path) and paths and len(api.release_groups(paths)) > 1:
        raise UsageError("--export-mof and --badge take one release; give one folder")
    report = api.scorecard(paths, declare=declare, min_score=min_score, knowledge=knowledge)
    cards = report.cards
    term = terminal(color, output)
    code, problems = report.exit_code, report.problems
    text = _render(report, fmt, term)
    if fmt == "text":
        import textwrap

        text = text.rstrip("\n") + "\n" + textwrap.fill(_last_line(code, problems), width=term.width,
                                                        subsequent_indent="  ", break_on_hyphens=False) + "\n"
    write_output(text, output)
    _write_extras(cards[0][1], export_mof_path, badge_path, quiet)
    if not quiet:
        for problem in problems:
            stderr_line(f"weightaudit: {problem}")
    if code is not ExitCode.OK:
        raise SystemExit(int(code))


def _last_line(code: ExitCode, problems: list[str]) -> str:
    """The last text line agrees with the exit code, as for inspect and audit."""
    word = {ExitCode.OK: "PASS", ExitCode.FINDINGS: "FAIL", ExitCode.INCOMPLETE: "INCOMPLETE"}[code]
    why = "; ".join(problems) if problems else "informational (gate with --min-score)"
    return f"{word} (exit {int(code)}): {why}"


def _render(report, fmt: str, term) -> str:
    from weightaudit.openness import render_markdown, render_text

    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
    from weightaudit.openness.profile import render_comparison

    cards = [card for _, card in report.cards]
    side_by_side = render_comparison(cards, fmt, term.width) if len(cards) > 1 else ""
    if fmt == "markdown":
        return "\n".join(render_markdown(card) for card in report) + ("\n" + side_by_side if side_by_side else "")
    return "\n".join(render_text(card, rich=term.stdout_styled, width=term.width) for card in report) + (
        "\n" + side_by_side if side_by_side else "")


def _write_extras(scorecard, export_mof_path: str | None, badge_path: str | None, quiet: bool) -> None:
    from weightaudit.openness import export_mof, render_badge

    for path, make in ((export_mof_path, export_mof), (badge_path, render_badge)):
        if path:
            write_output(make(scorecard), path)
            if not quiet:
                stderr_line(f"weightaudit: wrote {path}")
