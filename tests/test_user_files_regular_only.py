"""Files the user names on the command line (a knowledge file, a MOF declaration, a manifest) are opened like the
release's own side files: regular files only. A FIFO given by mistake (or by a script) is a usage error naming
it, never a read that waits forever."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from weightaudit.errors import UsageError
from weightaudit.manifest import read_manifest
from weightaudit.openness.declaration import load_declaration
from weightaudit.openness.knowledge import load_knowledge


@pytest.mark.parametrize("reader", [load_knowledge, load_declaration, read_manifest])
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, reader: Callable[[Path], object]) -> None:
    fifo = tmp_path / "input.yaml"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        reader(fifo)
