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
from weightaudit.cli.common import stderr_line, terminal, write_output
from weightaudit.cli.options import output_options, release_groups, resolve_format
from weightaudit.errors import ExitCode, UsageError

FORMATS = ("text", "json", "markdown")


@click.command("scorecard")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--declare", "declare", type=click.Path(dir_okay=False), metavar="FILE",
              help="A MOF model YAML declaring what the folder cannot show (read unchanged by the Model Openness Tool).")
@click.option("--export-mof", "export_mof_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write a MOF YAML pre-filled from the evidence found, to complete and publish.")
@click.option("--badge", "badge_path", type=click.Path(dir_okay=False), metavar="FILE", help="Write an SVG badge.")
@click.option("--min-score", type=click.FloatRange(0, 10), default=None,
              help="Exit 1 when the 0-10 summary score is below this.")
@output_options(FORMATS)
def scorecard_command(paths: tuple[str, ...], declare: str | None, export_mof_path: str | None,
                      badge_path: str | None, min_score: float | None, fmt: str | None, output: str | None,
                      quiet: bool, color: bool | None) -> None:
    """Score how open a release is: weights, training code and training data (MOF class, OSAID 1.0).

    Several folders that are separate releases get one scorecard each.
    """
    from weightaudit.openness import build_scorecard

    if not paths and not declare:
        raise UsageError("give a release path, a --declare FILE, or both")
    fmt = resolve_format(fmt, output, FORMATS)
    groups = release_groups(paths) if paths else [()]
    if len(groups) > 1 and (export_mof_path or badge_path):
        raise UsageError("--export-mof and --badge take one release; give one folder")
    cards = [(group, build_scorecard(_release(group), Path(declare) if declare else None)) for group in groups]
    term = terminal(color, output)
    code, problems = _outcome(cards, min_score)
    text = _render(cards, declare, fmt, term)
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


def _release(group: tuple[str, ...]):
    if not group:
        return None
    from weightaudit.discover import discover

    return discover(list(group))


def _document(group: tuple[str, ...], declare: str | None, scorecard) -> dict:
    from weightaudit.openness import scorecard_to_dict

    return {"schema_version": "1", "tool": {"name": "weightaudit", "version": __version__},
            "command": "scorecard", "target": " ".join(group) if group else declare,
            "scorecard": scorecard_to_dict(scorecard)}


def _render(cards, declare: str | None, fmt: str, term) -> str:
    from weightaudit.openness import render_markdown, render_text

    if fmt == "json":
        documents = [_document(group, declare, card) for group, card in cards]
        document = documents[0] if len(documents) == 1 else {
            "schema_version": "1", "tool": {"name": "weightaudit", "version": __version__},
            "command": "scorecard", "target": " ".join(d["target"] for d in documents), "reports": documents}
        return json.dumps(document, indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return "\n".join(render_markdown(card) for _, card in cards)
    styled = term.stdout_styled
    return "\n".join(render_text(card, rich=styled, width=term.width) for _, card in cards)


def _write_extras(scorecard, export_mof_path: str | None, badge_path: str | None, quiet: bool) -> None:
    from weightaudit.openness import export_mof, render_badge

    for path, make in ((export_mof_path, export_mof), (badge_path, render_badge)):
        if path:
            write_output(make(scorecard), path)
            if not quiet:
                stderr_line(f"weightaudit: wrote {path}")


def _outcome(cards, min_score: float | None) -> tuple[ExitCode, list[str]]:
    """0 informational; 3 when a scorecard is incomplete; 1 when --min-score is not met (fail wins)."""
    code, problems = ExitCode.OK, []
    for group, card in cards:
        name = " ".join(group) or "declaration"
        if card.notes:
            problems.append(f"{name}: scorecard incomplete: {'; '.join(card.notes)}")
            code = code if code is ExitCode.FINDINGS else ExitCode.INCOMPLETE
        if min_score is not None and (card.score is None or card.score < min_score):
            shown = "n/a" if card.score is None else f"{card.score:g}"
            problems.append(f"{name}: openness score {shown} is below --min-score {min_score:g}")
            code = ExitCode.FINDINGS
    return code, problems
