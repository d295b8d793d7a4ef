"""Options shared by the commands (one decorator each, the same help everywhere), the output format decision,
and turning finished reports into output and an exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from weightaudit.cli.common import Terminal, stderr_line, write_output
from weightaudit.errors import UsageError

SEVERITY_CHOICES = ["info", "low", "medium", "high", "critical", "never"]


def _set_revision(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``--revision`` holds for this command only (reset when its context closes; in-process runs stay apart)."""
    from weightaudit import hub_cache

    token = hub_cache._REVISION.set(value)
    ctx.call_on_close(lambda: hub_cache._REVISION.reset(token))


def revision_option(func: Callable) -> Callable:
    """``--revision REV``: which snapshot of a Hugging Face cache repository folder to read."""
    return click.option("--revision", metavar="REV", default=None, expose_value=False, callback=_set_revision,
                        help="For a Hugging Face cache folder (models--org--name): the branch (refs/REV) or commit "
                             "to read (default: refs/main, else the only snapshot).")(func)


def output_options(formats: tuple[str, ...]) -> Callable:
    """``-f/--format``, ``-o/--output``, ``-q/--quiet``, ``--color/--no-color`` (and ``--revision``: every
    command that writes a release report may be given a cache folder)."""
    def decorate(func: Callable) -> Callable:
        func = revision_option(func)
        func = click.option("--color/--no-color", "color", default=None,
                            help="Force or disable colour and styles (default: only on a terminal, never with "
                                 "NO_COLOR). Applies to stdout and stderr alike.")(func)
        func = click.option("-q", "--quiet", is_flag=True, help="No progress or hints on stderr.")(func)
        func = click.option("-o", "--output", metavar="FILE",
                            help="Write the report here instead of stdout, whole or not at all. Its extension "
                                 f"picks the format unless --format is given ({_extension_help(formats)}).")(func)
        func = click.option("-f", "--format", "fmt", type=click.Choice(formats), default=None,
                            help="Report format (default: from the -o extension, else $WEIGHTAUDIT_FORMAT, "
                                 "else text).")(func)
        return func
    return decorate


def run_options(func: Callable) -> Callable:
    """``--workers`` and ``--progress/--no-progress`` for commands that stream tensor data."""
    func = click.option("--progress/--no-progress", default=None,
                        help="Progress on stderr (default: a live bar on a terminal outside CI).")(func)
    func = click.option("--workers", type=click.IntRange(1, 64), default=None,
                        help="Processes for statistics (default: cores).")(func)
    return func


def fail_on_option(with_policy: bool = True) -> Callable:
    """``--fail-on``; the default is high (the policy's fail_on first, for commands that read a policy)."""
    default = "the policy's fail_on, else high" if with_policy else "high"

    def decorate(func: Callable) -> Callable:
        return click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default=None,
                            help=f"Exit 1 when a finding is at or above this severity (default: {default}; "
                                 "never: only unverified files change the exit code).")(func)
    return decorate


def _extension_help(formats: tuple[str, ...]) -> str:
    from weightaudit.render import _EXTENSIONS

    return ", ".join(f"{ext}" for ext, fmt in _EXTENSIONS.items() if fmt in formats)


def resolve_format(fmt: str | None, output: str | None, formats: tuple[str, ...]) -> str:
    """-f wins; else the extension of -o; else $WEIGHTAUDIT_FORMAT; else text. An -o extension that names no
    format this command writes is a usage error (exit 2), never a text table in a .sarif file."""
    if fmt is not None:
        return fmt
    if output not in (None, "-"):
        from weightaudit.render import format_for_extension

        suffix = Path(output).suffix
        found = format_for_extension(suffix)
        if found is None or found not in formats:
            raise UsageError(f"-o {output}: cannot tell the format from {suffix or 'a name without extension'!r}; "
                             f"use one of {_extension_help(formats)} or give --format")
        return found
    env = os.environ.get("WEIGHTAUDIT_FORMAT")
    if env:
        if env not in formats:
            raise UsageError(f"WEIGHTAUDIT_FORMAT={env!r} is not one of {', '.join(formats)}")
        return env
    return "text"


def emit(reports: Sequence[Any], fmt: str, output: str | None, term: Terminal, **render_flags: Any) -> None:
    """Render the reports (one, or one per release) and write them, to stdout or atomically to --output."""
    from weightaudit.render import RenderOptions, render_reports

    styled = fmt == "text" and term.stdout_styled and output in (None, "-")
    text = render_reports(reports, fmt, RenderOptions(styled=styled, width=term.width, **render_flags))
    write_output(text, output)


def announce_problems(reports: Sequence[Any], quiet: bool) -> None:
    """On stderr: files that could not be verified, one line per reason ("12 files: ..." when shared)."""
    if quiet:
        return
    for report in reports:
        reasons: dict[str, list[str]] = {}
        for loaded in report.files:
            if not loaded.verified:
                reasons.setdefault(loaded.reason or loaded.status.value, []).append(loaded.path)
        for reason, paths in reasons.items():
            where = paths[0] if len(paths) == 1 else f"{len(paths)} files ({paths[0]}, …)"
            stderr_line(f"weightaudit: {where}: {reason}")
        if not report.files:
            stderr_line(f"weightaudit: no weight files found in {report.target}")


def finish(reports: Sequence[Any]) -> None:
    from weightaudit.report import combined_verdict

    sys.exit(int(combined_verdict(reports).exit_code))


class Progress:
    """Progress on stderr: a transient rich bar on a terminal, else one line per phase. Styled only when the
    shared Terminal says stderr may be (NO_COLOR: no escape codes at all)."""

    def __init__(self, progress: bool | None, quiet: bool, term: Terminal) -> None:
        self.enabled = progress is not False and not quiet
        self.live = self.enabled and term.stderr_live and (progress is True or not os.environ.get("CI"))
        self.term = term
        self._progress = None
        self._task = None

    def __enter__(self) -> "Progress":
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress as Bar, TextColumn, TransferSpeedColumn

            console = Console(stderr=True, force_terminal=True, no_color=not self.term.stderr_styled,
                              color_system="auto" if self.term.stderr_styled else None, highlight=False)
            self._progress = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=console, transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def phase(self, message: str) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            stderr_line(f"weightaudit: {message}")
        else:
            self._progress.console.print(f"weightaudit: {message}", markup=False)

    def start(self, total_bytes: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task("statistics", total=total_bytes)

    def advance(self, n_bytes: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n_bytes)
