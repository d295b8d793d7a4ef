"""Options shared by several commands, and turning a finished report into output and an exit code."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import click

from weightaudit.cli.common import stderr_line, stdout_is_rich, write_output

SEVERITY_CHOICES = ["info", "low", "medium", "high", "critical", "never"]


def output_options(formats: tuple[str, ...]) -> Callable:
    def decorate(func: Callable) -> Callable:
        func = click.option("--no-color", "color", flag_value=False, default=None,
                            help="Plain text even on a terminal.")(func)
        func = click.option("--color", "color", flag_value=True, default=None,
                            help="Colours even when not a terminal.")(func)
        func = click.option("-q", "--quiet", is_flag=True, help="No progress or hints on stderr.")(func)
        func = click.option("-o", "--output", metavar="FILE", help="Write the report here instead of stdout.")(func)
        func = click.option("-f", "--format", "fmt", type=click.Choice(formats),
                            default=lambda: os.environ.get("WEIGHTAUDIT_FORMAT", "text"), show_default="text",
                            help="Report format.")(func)
        return func
    return decorate


def emit(report: Any, fmt: str, output: str | None, color: bool | None, **render_flags: Any) -> None:
    """Render the report and write it (stdout or --output)."""
    from weightaudit.render import RenderOptions, render

    styled = fmt == "text" and stdout_is_rich(color, output)
    width = 160
    if styled:
        width = click.get_terminal_size()[0] if hasattr(click, "get_terminal_size") else 120
    text = render(report, fmt, RenderOptions(styled=styled, width=width, **render_flags))
    write_output(text, output)


def announce_problems(report: Any, quiet: bool) -> None:
    """One line on stderr per file that could not be verified (the report has the details)."""
    if quiet:
        return
    for loaded in report.files:
        if not loaded.verified:
            stderr_line(f"weightaudit: {loaded.path}: {loaded.reason or loaded.status.value}")
    if not report.files:
        stderr_line(f"weightaudit: no weight files found in {report.target}")


def finish(report: Any) -> None:
    sys.exit(int(report.exit_code))
