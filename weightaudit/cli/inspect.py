"""``weightaudit inspect PATH...``: what is inside a release (header reads only unless --stats)."""

from __future__ import annotations

import click

from weightaudit.cli.options import announce_problems, emit, finish, output_options, SEVERITY_CHOICES


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--all-tensors", is_flag=True, help="List every tensor instead of grouping repeated layers.")
@click.option("--stats", "with_stats", is_flag=True, help="Stream every tensor and add statistics.")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default="never", show_default=True,
              help="Exit 1 when a finding is at or above this severity.")
@click.option("--verify-checksums", is_flag=True, help="Verify stored checksums (TensorFlow bundles).")
@output_options(("text", "json", "markdown"))
def inspect_command(paths: tuple[str, ...], all_tensors: bool, with_stats: bool, fail_on: str,
                    verify_checksums: bool, fmt: str, output: str | None, quiet: bool, color: bool | None) -> None:
    """Show every tensor (name, dtype, shape, parameters, bytes) of a model file or release folder."""
    from weightaudit.formats.base import LoadOptions
    from weightaudit.pipeline import RunOptions, run
    from weightaudit.policy import Policy, with_cli_overrides

    policy = with_cli_overrides(Policy(), fail_on)
    options = RunOptions(command="inspect", stats=with_stats, policy=policy,
                         rule_prefixes=("WA1", "WA2", "WA3", "WA4"),
                         load=LoadOptions(verify_checksums=verify_checksums))
    report = run(paths, options)
    emit(report, fmt, output, color, all_tensors=all_tensors, show_stats=with_stats)
    announce_problems(report, quiet)
    finish(report)
