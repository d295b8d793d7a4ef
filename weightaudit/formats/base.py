"""The loader interface. One module per format implements it; ``formats/__init__.py`` registers them.

A loader never executes code from a file and never reads a whole file into memory: it parses headers,
walks structures, and hands out tensor bytes as zero-copy views or fixed-size chunks.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import FileStatus, Finding, LoadedFile, TensorInfo

HEAD_BYTES = 4096
LFS_MAGIC = b"version https://git-lfs.github.com/spec/"   # how a Git LFS pointer file starts
DEFAULT_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Probe:
    """What discovery shows a loader so it can claim a path: the first bytes, the last 8, the size.

    For a folder (SavedModel), ``is_dir`` is True, ``head``/``tail`` are empty and ``entries`` lists names.
    """

    path: Path
    size: int
    head: bytes
    tail: bytes
    is_dir: bool = False
    entries: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()


@dataclass(frozen=True)
class LoadOptions:
    """Options that shape how loaders read. Limits keep hostile files from costing unbounded time/memory."""

    verify_checksums: bool = False
    max_pickle_opcodes: int = 10_000_000
    max_header_bytes: int = 100_000_000
    extra: dict[str, object] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS   # the one budget model (weightaudit/limits.py); set from the user's policy
    pickle_allow: tuple[object, ...] = ()   # the user's policy pickle.allow entries (never from the release)


class Loader(Protocol):
    """A format reader. ``name`` is the format's name in reports (``safetensors``, ``pytorch-zip`` ...)."""

    name: str

    def sniff(self, probe: Probe) -> bool:
        """True when this loader recognises the content (by magic bytes, never by extension alone)."""
        ...

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        """Parse the file and return its inventory, facts and parse findings. Must not raise on bad
        input: a file it cannot read becomes a LoadedFile with status ERROR and a one-line reason."""
        ...


class ChunkedLoader(Protocol):
    """Optional: loaders whose tensors are not all contiguous on disk stream them chunk by chunk."""

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int) -> Iterator[memoryview]:
        ...


def unreadable(rel: str, fmt: str, size: int, reason: str, findings: list[Finding] | tuple[Finding, ...] = ()) -> LoadedFile:
    """The LoadedFile of a file a loader could not read: status error, not verified, a one-line reason."""
    return LoadedFile(path=rel, format=fmt, size_bytes=size, findings=tuple(findings), status=FileStatus.ERROR,
                      reason=reason, verified=False)


def folder_size(folder: Path) -> int:
    """Bytes of every file below a folder (links not followed); unreadable entries count as 0."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def read_probe(path: Path) -> Probe:
    """Read what ``sniff`` needs: at most 4 KiB from the start and 8 bytes from the end."""
    if path.is_dir():
        try:
            entries = tuple(sorted(p.name for p in path.iterdir()))
        except OSError:
            entries = ()
        return Probe(path=path, size=0, head=b"", tail=b"", is_dir=True, entries=entries)
    from weightaudit.safe_read import open_regular

    with open_regular(path) as handle:   # a FIFO or device raises NotRegularFile (an OSError), never blocks
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(HEAD_BYTES)
        tail = b""
        if size >= 8:
            handle.seek(size - 8)
            tail = handle.read(8)
    return Probe(path=path, size=size, head=head, tail=tail)


def iter_contiguous_chunks(path: Path, begin: int, end: int, chunk_bytes: int = DEFAULT_CHUNK) -> Iterator[memoryview]:
    """Stream ``[begin, end)`` of a file through one reused buffer (flat memory, no mmap residency).

    Each yielded view is only valid until the next one is requested.
    """
    if end <= begin:
        return
    buffer = bytearray(min(chunk_bytes, end - begin))
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(begin)
        remaining = end - begin
        while remaining > 0:
            want = min(len(buffer), remaining)
            got = handle.readinto(view[:want])
            if not got:
                raise OSError(f"{path}: file ended {remaining} bytes early")
            remaining -= got
            yield view[:got]


def tensor_view(path: Path, tensor: TensorInfo) -> memoryview:
    """The tensor's raw bytes as a zero-copy view of a read-only memory map (contiguous tensors only).

    The map stays open while the view is referenced. Raises ValueError when the tensor is not contiguous.
    """
    if tensor.data_offsets is None:
        raise ValueError(f"{tensor.name}: bytes are not contiguous in {tensor.file}")
    begin, end = tensor.data_offsets
    if end == begin:
        return memoryview(b"")
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mapped)[begin:end]
