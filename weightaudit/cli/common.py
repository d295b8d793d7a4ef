"""Helpers shared by the click commands: the one terminal decision (colour, width) for stdout and stderr,
writing the report atomically, stderr lines."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from weightaudit.errors import UsageError

FORMATS_REPORT = ("text", "json", "markdown")
DEFAULT_WIDTH = 100     # text width when stdout is not a terminal and COLUMNS is not set
MIN_WIDTH = 40


@dataclass(frozen=True)
class Terminal:
    """Decided once per command: whether stdout and stderr may carry escape codes, and the text width."""

    stdout_styled: bool
    stderr_styled: bool
    stderr_live: bool       # a terminal on stderr: a live progress bar may be drawn there
    width: int


def terminal(color: bool | None, output: str | None) -> Terminal:
    """``--color``/``--no-color`` win; else NO_COLOR or TERM=dumb mean plain; else FORCE_COLOR means styled;
    else styled only where the stream is a terminal. A report written to a file is never styled."""
    to_file = output not in (None, "-")
    return Terminal(stdout_styled=False if to_file else _styled(color, sys.stdout),
                    stderr_styled=_styled(color, sys.stderr), stderr_live=_isatty(sys.stderr), width=text_width())


def _styled(color: bool | None, stream) -> bool:
    if color is not None:
        return color
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def text_width() -> int:
    """COLUMNS when set, else the terminal's width, else DEFAULT_WIDTH.

    The terminal is stdout's; when stdout is a pipe (``weightaudit audit X | less``) and stderr is a terminal,
    the report is still read there, so stderr's width is used. Redirected to a file, the width stays
    DEFAULT_WIDTH, the same on every machine."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(MIN_WIDTH, int(columns))
    for stream in (sys.stdout, sys.stderr) if _is_pipe(sys.stdout) else (sys.stdout,):
        if _isatty(stream):
            try:
                return max(MIN_WIDTH, os.get_terminal_size(stream.fileno()).columns)
            except (OSError, ValueError):
                pass
    return DEFAULT_WIDTH


def _is_pipe(stream) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):   # no descriptor (a test's captured stream)
        return False


def write_output(text: str, output: str | None) -> None:
    """Write the rendered report to ``output`` (a file path; ``-`` or None means stdout).

    A file is written whole or not at all: into a temporary file in the same folder, then renamed over
    ``output``; an error or a signal on the way removes the temporary file and leaves ``output`` untouched.
    Through a symbolic link, the file it points to is the one replaced. A path that exists and is not a regular
    file (``/dev/null``, a FIFO, ``/dev/stdout``) is written to directly: renaming over it would replace the
    device or pipe with a file.
    """
    if not text.endswith("\n"):
        text += "\n"
    if output in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(output)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"cannot write output file {output}: {exc.strerror or exc}") from exc
    if mode is not None and not stat.S_ISREG(mode):
        _write_through(text, target, output)
        return
    _replace_whole(text, Path(os.path.realpath(target)) if mode is not None else target, output)


def _write_through(text: str, target: Path, output: str) -> None:
    try:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write output file {output}: {exc.strerror or exc}") from exc


def _replace_whole(text: str, target: Path, output: str) -> None:
    """Write ``target`` atomically: a temporary file in its folder, renamed over it when complete."""
    import tempfile

    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or ".")
    except OSError as exc:
        raise UsageError(f"cannot write output file {output}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)   # as a plain open() would have created it
        os.replace(temporary, target)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write output file {output}: {exc.strerror or exc}") from exc
        raise


def stdout_is_rich(color: bool | None, output: str | None) -> bool:
    """Whether text on stdout should be styled (kept for callers outside the CLI)."""
    return terminal(color, output).stdout_styled


def stderr_line(message: str) -> None:
    """One line of progress or error on stderr (never on stdout)."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
