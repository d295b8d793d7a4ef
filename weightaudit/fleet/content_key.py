"""What "unchanged" means: per file its relative path, size, mtime_ns and the sha256 of its first and last
64 KiB (``paranoid``: of the whole file); the release key hashes those in path order. Files behind symlinks
(Hub snapshots link into blobs/) are keyed by their target's content."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

EDGE_BYTES = 64 * 1024          # hashed at each end of a file
CHUNK_BYTES = 1024 * 1024       # read size for a full (paranoid) hash
MAX_FILES = 100_000             # a release with more files is keyed on the first MAX_FILES (sorted by path)


@dataclass(frozen=True)
class ReleaseKey:
    key: str
    files: int
    total_bytes: int


def file_key(path: str, size: int, mtime_ns: int, paranoid: bool) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)     # never blocks on a FIFO swapped in after the stat
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return f"special:{size}:{mtime_ns}"
    with os.fdopen(fd, "rb") as handle:
        if paranoid or size <= 2 * EDGE_BYTES:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(chunk)
        else:
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return f"{size}:{mtime_ns}:{'full' if paranoid else 'edges'}:{digest.hexdigest()}"


def _files(root: Path) -> list[tuple[str, str]]:
    """(relative path, absolute path) of every file under ``root`` (links to folders are not followed)."""
    if not root.is_dir():
        return [(root.name, str(root))]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            out.append((os.path.relpath(full, root), full))
    return sorted(out)[:MAX_FILES]


def release_key(path: str, paranoid: bool = False) -> ReleaseKey:
    """The release's content key; a file that cannot be read is keyed by its error (it changes when it heals)."""
    digest = hashlib.sha256(b"weightaudit-release-key-1")
    total = 0
    files = _files(Path(path))
    for relative, full in files:
        try:
            info = os.stat(full)
            if not stat.S_ISREG(info.st_mode):
                entry = f"{relative}\0special:{stat.S_IFMT(info.st_mode)}"
            else:
                total += info.st_size
                entry = f"{relative}\0{file_key(full, info.st_size, info.st_mtime_ns, paranoid)}"
        except OSError as exc:
            entry = f"{relative}\0error:{exc.errno}"
        digest.update(entry.encode("utf-8", "surrogateescape") + b"\n")
    return ReleaseKey(digest.hexdigest(), len(files), total)
