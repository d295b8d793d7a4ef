"""``weightaudit report DB``: the fleet a batch database holds, as text, JSON, CSV, Markdown or one
self-contained HTML page (sortable, filterable; no network)."""

from __future__ import annotations

from pathlib import Path

import click

from weightaudit.cli.common import stderr_line, write_output
from weightaudit.errors import UsageError

FORMATS = ("text", "json", "csv", "markdown", "html")
EXTENSIONS = {".txt": "text", ".text": "text", ".json": "json", ".csv": "csv", ".md": "markdown",
              ".markdown": "markdown", ".html": "html", ".htm": "html"}


def _format(fmt: str | None, output: str | None) -> str:
    import os

    if fmt is not None:
        return fmt
    if output not in (None, "-"):
        found = EXTENSIONS.get(Path(output).suffix.lower())
        if found is None:
            raise UsageError(f"-o {output}: cannot tell the format from its extension; use one of "
                             f"{', '.join(EXTENSIONS)} or give --format")
        return found
    env = os.environ.get("WEIGHTAUDIT_FORMAT")
    return env if env in FORMATS else "text"


@click.command("report")
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Report format (default: from the -o extension: .txt .json .csv .md .html; else text).")
@click.option("-o", "--output", metavar="FILE", help="Write the report here instead of stdout, whole or not at all.")
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr.")
def report_command(db: str, fmt: str | None, output: str | None, quiet: bool) -> None:
    """Fleet views of a `weightaudit batch` database: every release's verdict, findings and openness
    (a sortable, filterable leaderboard in HTML), findings by rule, the worst releases, and what changed since
    the previous run. Exit 0 (informational); 2 when DB is not a batch database."""
    from weightaudit.fleet.fleet_report import load
    from weightaudit.fleet.render_html import render_html
    from weightaudit.fleet.render_text import render_csv, render_json, render_markdown, render_text

    chosen = _format(fmt, output)
    report = load(db)
    renderers = {"text": render_text, "json": render_json, "csv": render_csv, "markdown": render_markdown,
                 "html": render_html}
    write_output(renderers[chosen](report), output)
    if output not in (None, "-") and not quiet:
        stderr_line(f"weightaudit: wrote {output} ({len(report.releases)} releases)")
