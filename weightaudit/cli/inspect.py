"""``weightaudit inspect PATH...``: what is inside a release (header reads only unless --stats)."""

from __future__ import annotations

import click

from weightaudit.cli.common import terminal
from weightaudit.cli.options import (Progress, announce_problems, emit, fail_on_option, finish,
                                     output_options, release_groups, resolve_format, run_options)

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
    from weightaudit.formats.base import LoadOptions
    from weightaudit.pipeline import RunOptions, run
    from weightaudit.policy import Policy, with_cli_overrides

    fmt = resolve_format(fmt, output, FORMATS)
    policy = with_cli_overrides(Policy(), fail_on or "high")
    term = terminal(color, output)
    reports = []
    with Progress(progress, quiet, term) as bar:
        for group in release_groups(paths):
            options = RunOptions(command="inspect", stats=with_stats, policy=policy, workers=workers,
                                 rule_prefixes=("WA1", "WA2", "WA3", "WA4"),
                                 load=LoadOptions(verify_checksums=verify_checksums),
                                 on_phase=bar.phase if with_stats else None, on_stats_start=bar.start,
                                 on_bytes=bar.advance)
            reports.append(run(group, options))
    emit(reports, fmt, output, term, all_tensors=all_tensors, show_stats=with_stats)
    announce_problems(reports, quiet)
    finish(reports)
