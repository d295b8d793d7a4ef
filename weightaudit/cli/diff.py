"""``weightaudit diff A B``: what changed between two files or releases (any formats, streamed).

Exit codes, like ``diff``: 0 nothing differs, 1 something differs, 2 usage, 3 something could not be compared.
"""

from __future__ import annotations

import sys

import click

from weightaudit.cli.common import stderr_line, terminal, write_output
from weightaudit.cli.options import Progress, output_options, resolve_format

FORMATS = ("text", "json", "markdown")


@click.command("diff")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--tolerance", metavar="TOL", default=None,
              help="Accept value differences within bounds (lossy conversions): 1e-3 or abs=1e-3 bounds max|a-b|, "
                   "rel=1e-2 or 1% bounds ||a-b||/||a||; comma-separated for both.")
@click.option("--all-tensors", is_flag=True, help="Text: list every differing tensor (default: the first 40, "
                                                   "structural changes first, then the largest value changes).")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr (default: a live bar on a terminal outside CI).")
@output_options(FORMATS)
def diff_command(a: str, b: str, tolerance: str | None, all_tensors: bool, progress: bool | None, fmt: str | None,
                 output: str | None, quiet: bool, color: bool | None) -> None:
    """Compare the tensors of A and B (files or release folders, any formats — e.g. model.safetensors against
    pytorch_model.bin): added, removed, renamed, retyped, reshaped, and for tensors in both max |a-b|, relative
    L2 difference and cosine similarity, with the layers that changed. Exit 0 same, 1 different."""
    from weightaudit import api
    from weightaudit.render import RenderOptions
    from weightaudit.render.compare import render

    fmt = resolve_format(fmt, output, FORMATS)
    term = terminal(color, output)
    with Progress(progress, quiet, term) as bar:
        report = api.diff(a, b, tolerance=tolerance, progress=bar)
    styled = fmt == "text" and term.stdout_styled
    write_output(render(report, fmt, RenderOptions(styled=styled, width=term.width, all_tensors=all_tensors)), output)
    if not quiet:
        for note in report.notes:
            stderr_line(f"weightaudit: {note}")
    sys.exit(int(report.exit_code))
