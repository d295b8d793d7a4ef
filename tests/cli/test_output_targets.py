"""``-o PATH`` writes a regular file atomically (temporary file, then rename), but a path that is not a regular
file is written *to*, never replaced: ``-o /dev/null`` used to rename a regular file over the device node (and
every later writer to /dev/null filled a file), a FIFO became a file nobody read, and a symbolic link was
replaced by a file instead of updating what it points to."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from weightaudit.cli.common import write_output


def test_a_fifo_is_written_to_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_output('{"ok": true}', str(fifo))
    reader.join(timeout=10)
    assert received == [b'{"ok": true}\n']
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)                 # still a FIFO
    assert not list(tmp_path.glob(".*.partial"))


def test_a_symlink_keeps_pointing_where_it_did(tmp_path: Path) -> None:
    real = tmp_path / "reports" / "latest.json"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "report.json"
    link.symlink_to(real)
    write_output("new", str(link))
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_regular_file_is_still_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    out.write_text("old\n")
    write_output("new", str(out))
    assert out.read_text() == "new\n" and not list(tmp_path.glob(".*.partial"))
