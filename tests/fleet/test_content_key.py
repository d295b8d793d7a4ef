"""The content key: unchanged bytes and times give the same key; a change in size, mtime, the first or last
64 KiB (or, with --paranoid, anywhere) gives another; special files are keyed without being read."""

from __future__ import annotations

import os
from pathlib import Path

from weightaudit.fleet.content_key import EDGE_BYTES, release_key


def _release(folder: Path, middle: bytes = b"m") -> Path:
    folder.mkdir(exist_ok=True)
    data = b"a" * EDGE_BYTES + middle * EDGE_BYTES + b"z" * EDGE_BYTES
    (folder / "model.safetensors").write_bytes(data)
    os.utime(folder / "model.safetensors", ns=(1_000_000_000, 1_000_000_000))
    return folder


def test_key_is_stable_and_follows_size_mtime_and_edges(tmp_path: Path) -> None:
    folder = _release(tmp_path / "r")
    first = release_key(str(folder))
    assert release_key(str(folder)) == first and first.files == 1 and first.total_bytes == 3 * EDGE_BYTES
    os.utime(folder / "model.safetensors", ns=(2_000_000_000, 2_000_000_000))
    assert release_key(str(folder)).key != first.key
    _release(folder, middle=b"X")          # same size and mtime, only the middle differs
    assert release_key(str(folder)).key == first.key                   # the default key does not read it
    twin = _release(tmp_path / "s")                                    # the original bytes elsewhere
    assert release_key(str(twin)).key == first.key
    assert release_key(str(folder), paranoid=True).key != release_key(str(twin), paranoid=True).key
    (folder / "README.md").write_text("# card\n")
    assert release_key(str(folder)).key != first.key                   # a new file


def test_special_files_are_keyed_not_read(tmp_path: Path) -> None:
    folder = _release(tmp_path / "r")
    os.mkfifo(folder / "pipe.bin")
    key = release_key(str(folder))      # would block forever if the FIFO were opened for reading
    assert key.files == 2 and key.total_bytes == 3 * EDGE_BYTES
