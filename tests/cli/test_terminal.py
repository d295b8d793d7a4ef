"""Issue 11: what a person sees in a real terminal. The CLI runs in a pseudo-terminal (python's ``pty``) of 80
columns; every line fits, nothing is cut, the verdict is shown; NO_COLOR means no escape codes on stdout or
stderr, not even bold."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

SGR = re.compile(rb"\x1b\[[0-9;]*m")
ANY_ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], columns: int, extra_env: dict[str, str], cwd: Path) -> tuple[int, bytes]:
    """Fork the CLI on a pseudo-terminal of ``columns`` x 40; returns (exit code, every byte the terminal got)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "CI", "COLUMNS", "LINES")}
    env.update({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40", **extra_env})
    pid, fd = pty.fork()
    if pid == 0:   # the child: stdout and stderr are the terminal
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "weightaudit", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    seen = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:     # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), bytes(seen)


def visible_lines(raw: bytes) -> list[str]:
    text = ANY_ESCAPE.sub(b"", raw).decode("utf-8", "replace").replace("\r\n", "\n")
    return [line.split("\r")[-1] for line in text.split("\n")]


@pytest.fixture
def defects(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "defects", tmp_path / "defects")
    return tmp_path


@pytest.mark.parametrize("args", [["inspect", "--stats", "defects"], ["audit", "defects"], ["scorecard", "defects"],
                                  ["inspect", "defects"]])
def test_a_person_at_80_columns_sees_every_line_whole(defects: Path, args: list[str]) -> None:
    code, raw = run_in_terminal(args, 80, {}, defects)
    lines = visible_lines(raw)
    too_long = [line for line in lines if len(line) > 80]
    assert too_long == [], too_long[:3]
    if args[0] != "scorecard":
        assert SGR.search(raw), "a terminal without NO_COLOR gets colour"
        shown = [line for line in lines if line.strip()]
        assert code == (0 if args == ["inspect", "defects"] else 1)   # NaN needs statistics
        verdict = "OK" if code == 0 else "DEFECTIVE"
        assert any("Verdict" in line and verdict in line for line in shown[:8])   # progress lines come first
        assert shown[-1].startswith(f"{'PASS' if code == 0 else 'FAIL'} (exit {code})")
        assert not re.search(r"\d…|…\d", "\n".join(lines))    # numbers are never cut


def test_no_color_means_no_escape_codes_on_stdout_or_stderr(defects: Path) -> None:
    code, raw = run_in_terminal(["audit", "defects", "--progress"], 80, {"NO_COLOR": "1"}, defects)
    assert code == 1
    assert SGR.search(raw) is None, SGR.findall(raw)[:5]
    assert b"weightaudit: defects: found 1 weight file(s)" in raw


def test_inspect_stats_shows_progress_like_audit(defects: Path) -> None:
    code, raw = run_in_terminal(["inspect", "--stats", "defects", "--no-color"], 80, {}, defects)
    assert code == 1 and b"computing statistics over" in raw


def _width_seen(stdout_kind: str, columns: int, tmp_path: Path) -> int:
    """text_width() in a child whose stderr is a pseudo-terminal of ``columns`` and whose stdout is a pipe or
    a regular file (COLUMNS unset, as in a person's shell)."""
    import subprocess

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    code = "from weightaudit.cli.common import text_width; print(text_width())"
    try:
        if stdout_kind == "pipe":
            done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=follower, env=env,
                                  check=True)
            return int(done.stdout)
        out = tmp_path / "report.txt"
        with out.open("w") as handle:
            subprocess.run([sys.executable, "-c", code], stdout=handle, stderr=follower, env=env, check=True)
        return int(out.read_text())
    finally:
        os.close(leader)
        os.close(follower)


def test_piped_report_takes_the_width_of_the_terminal_it_is_read_in(tmp_path: Path) -> None:
    """`weightaudit audit X | less`: stdout is a pipe, the person reads it in stderr's terminal."""
    assert _width_seen("pipe", 133, tmp_path) == 133


def test_report_redirected_to_a_file_keeps_the_fixed_width(tmp_path: Path) -> None:
    from weightaudit.cli.common import DEFAULT_WIDTH

    assert _width_seen("file", 133, tmp_path) == DEFAULT_WIDTH
