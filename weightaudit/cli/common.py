"""Helpers shared by the click commands: writing the report, choosing plain or rich text."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from weightaudit.errors import UsageError

FORMATS_REPORT = ("text", "json", "markdown")


def write_output(text: str, output: str | None) -> None:
    """Write the rendered report to ``output`` (a file path; ``-`` or None means stdout)."""
    if not text.endswith("\n"):
        text += "\n"
    if output in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write output file {output}: {exc.strerror or exc}") from exc


def stdout_is_rich(color: bool | None, output: str | None) -> bool:
    """Whether text output should be styled: a terminal, no NO_COLOR, unless --color/--no-color says."""
    if color is not None:
        return color
    if output not in (None, "-"):
        return False
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return sys.stdout.isatty()


def stderr_line(message: str) -> None:
    """One line of progress or error on stderr (never on stdout)."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
