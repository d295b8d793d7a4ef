"""``weightaudit inspect PATH...``: what is inside a release (header reads only unless --stats)."""

from __future__ import annotations

import click

from weightaudit.cli.common import terminal
from weightaudit.cli.options import (Progress, announce_problems, emit, fail_on_option, finish, output_options,
                                     resolve_format, run_options)

FORMATS = ("text", "json", "markdown")


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--all-tensors", is_flag=True, help="List every tensor instead of grouping repeated layers.")
@click.option("--stats", "with_stats", is_flag=True,
              help="Stream every tensor and add statistics (min, max, mean, std, nan/inf, histogram).")
@fail_on_option(with_policy=False)
@click.option("--verify-checksums", is_flag=True, help="Verify stored checksums (TensorFlow bundles).")
@run_options
@output_options(FORMATS)
def inspect_command(paths: tuple[str, ...], all_tensors: bool, with_stats: bool, fail_on: str | None,
                    verify_checksums: bool, workers: int | None, progress: bool | None, fmt: str | None,
                    output: str | None, quiet: bool, color: bool | None) -> None:
    """Show every tensor (name, dtype, shape, parameters; statistics with --stats) of a model file or release
    folder, and exit 1 when the file is broken or unsafe (findings at or above --fail-on, default high)."""
    from weightaudit import api

    fmt = resolve_format(fmt, output, FORMATS)
    term = terminal(color, output)
    with Progress(progress, quiet, term) as bar:
        result = api.inspect(paths, stats=with_stats, fail_on=fail_on or "high", verify_checksums=verify_checksums,
                             workers=workers, progress=bar)
    reports = list(result) if isinstance(result, api.ReportSet) else [result]
    emit(reports, fmt, output, term, all_tensors=all_tensors, show_stats=with_stats)
    announce_problems(reports, quiet)
    finish(reports)
