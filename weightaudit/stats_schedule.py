"""Scheduling of the statistics pass: byte sources (memory-mapped ranges, re-blocked chunk streams), work
pieces planned from the tensors, batches, and the worker pool (see ``weightaudit.stats``)."""

from __future__ import annotations

import functools
import itertools
import logging
import mmap
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Iterator, Sequence, Union

import numpy as np

from weightaudit.model import FileStatus, LoadedFile, TensorInfo

from weightaudit import stats_small
from weightaudit.stats_decode import (BLOCK_BYTES, HISTOGRAM_EXACT_LIMIT, _DtypeSpec, _decoded_chunks, _quantized,
                                      _spec_of, has_statistics)
from weightaudit.stats_kernels import _Partial, _TensorPlan, _plan, _run_blocks
from weightaudit.stats_small import SmallColumns, small_columns

log = logging.getLogger("weightaudit.stats")

PIECE_BYTES = 64 * 1024 * 1024    # contiguous tensors larger than this are split across workers
MIN_PIECE_BYTES = 4 * 1024 * 1024  # ... but not below this (each piece re-reads the tensor's first block)
TENSOR_COST_BYTES = 8 * 1024       # a tensor's fixed cost in batching, as bytes of work (a few µs)
RUN_BYTES = 4 * 1024 * 1024        # small tensors are sent to workers in runs of about this much work
BATCH_MAX_PIECES = 512            # small pieces are batched into work units of <= PIECE_BYTES / this many

# ---------------------------------------------------------------------------------------------------------
# Byte sources: a memory-mapped range (contiguous tensors) or any chunk stream re-cut into fixed blocks.
# ---------------------------------------------------------------------------------------------------------


def _reblock(chunks: Iterable[memoryview | bytes], block_bytes: int) -> Iterator[memoryview]:
    """Re-cut a stream of arbitrary chunks into ``block_bytes`` blocks (the last may be shorter)."""
    carry = bytearray(block_bytes)
    carry_view = memoryview(carry)
    filled = 0
    for chunk in chunks:
        data = memoryview(chunk).cast("B")
        pos = 0
        if filled:
            take = min(block_bytes - filled, len(data))
            carry_view[filled:filled + take] = data[:take]
            filled += take
            pos = take
            if filled < block_bytes:
                continue
            yield carry_view
            filled = 0
        while len(data) - pos >= block_bytes:
            yield data[pos:pos + block_bytes]
            pos += block_bytes
        rest = len(data) - pos
        if rest:
            carry_view[:rest] = data[pos:]
            filled = rest
    if filled:
        yield carry_view[:filled]


class _FileMaps:
    """Read-only maps of the files one batch reads: each file opened and mapped once per batch."""

    def __init__(self) -> None:
        self._maps: dict[Path, mmap.mmap] = {}

    def get(self, path: Path) -> mmap.mmap:
        found = self._maps.get(path)
        if found is None:
            with open(path, "rb") as handle:
                found = self._maps[path] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return found

    def read(self, path: Path, begin: int, end: int) -> bytes:
        mapped = self.get(path)
        if end > len(mapped):
            raise OSError(f"{path}: file ended before byte {end}")
        return mapped[begin:end]

    def close(self) -> None:
        for mapped in self._maps.values():
            try:
                mapped.close()
            except BufferError:  # a view still held: the map closes when that view is collected
                pass
        self._maps.clear()


def _mapped_blocks(path: Path, begin: int, end: int, release_every: int,
                   maps: _FileMaps | None = None) -> Iterator[memoryview]:
    """Blocks of ``[begin, end)`` of a file, from a read-only map; finished pages are released as we go."""
    if maps is not None:
        yield from _blocks_of(maps.get(path), path, begin, end, release_every)
        return
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield from _blocks_of(mapped, path, begin, end, release_every)
    finally:
        try:
            mapped.close()
        except BufferError:  # a caller still holds a view: the map closes when that view is collected
            pass


def _blocks_of(mapped: mmap.mmap, path: Path, begin: int, end: int, release_every: int) -> Iterator[memoryview]:
    if end > len(mapped):
        raise OSError(f"{path}: tensor bytes end at {end} but the file has {len(mapped)}")
    view = memoryview(mapped)
    released = begin - begin % mmap.PAGESIZE
    try:
        for offset in range(begin, end, BLOCK_BYTES):
            yield view[offset:min(offset + BLOCK_BYTES, end)]
            done = (min(offset + BLOCK_BYTES, end)) // mmap.PAGESIZE * mmap.PAGESIZE
            if done - released >= release_every:
                mapped.madvise(mmap.MADV_DONTNEED, released, done - released)
                released = done
    finally:
        view.release()
    release_pages(mapped, released, end)   # the map may serve the batch's next pieces: keep RSS flat


def release_pages(mapped: mmap.mmap, begin: int, end: int) -> None:
    """Drop the resident pages of ``[begin, end)`` (page-rounded outward) from a read-only file map."""
    start = begin - begin % mmap.PAGESIZE
    stop = min(len(mapped), -(-end // mmap.PAGESIZE) * mmap.PAGESIZE)
    if stop > start:
        mapped.madvise(mmap.MADV_DONTNEED, start, stop - start)


@dataclass(frozen=True)
class _Piece:
    """One unit of work: a byte range of a tensor (mapped), or the whole tensor via its loader's chunks."""

    key: tuple[str, str]
    path: Path
    fmt: str
    tensor: TensorInfo
    begin: int             # absolute byte offsets in the file (mapped pieces), or 0..nbytes (streamed)
    end: int
    mapped: bool
    small: bool = False    # reduced together with the other small tensors of its file (``stats_small``)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def weight(self) -> int:
        """Work of this piece in batching, as bytes (a tensor's fixed cost counts as TENSOR_COST_BYTES)."""
        return self.end - self.begin + TENSOR_COST_BYTES


@dataclass(frozen=True, eq=False)
class _SmallRun:
    """Small contiguous tensors of one file and dtype, in file order, reduced together (``stats_small``):
    planned, sent and answered as one unit with columns of results, never one object per tensor."""

    path: Path
    fmt: str
    dtype: str
    tensors: tuple[TensorInfo, ...]
    begins: np.ndarray     # absolute byte offsets in the file, one per tensor
    ends: np.ndarray
    nbytes: int
    small: ClassVar[bool] = True

    @property
    def weight(self) -> int:
        return self.nbytes + TENSOR_COST_BYTES * len(self.tensors)

    def alone(self) -> list[_Piece]:
        """Each tensor as its own piece (when the vectorised pass fails: each then names its own error)."""
        return [_Piece(t.key, self.path, self.fmt, t, int(b), int(e), True)
                for t, b, e in zip(self.tensors, self.begins.tolist(), self.ends.tolist())]


_Work = Union[_Piece, _SmallRun]


# Loaders whose ``iter_chunks`` reads a tensor with ``data_offsets`` verbatim from those bytes of the file
# (keras_h5._stream: contiguous, uncompressed HDF5 datasets): mapped here like safetensors, not copied through
# 4 MiB preads. Measured 2.35x slower than safetensors for the same F32 bytes through iter_chunks. Torch zips:
# only contiguous little-endian ranges inside stored records carry data_offsets (torch_tensors.build_tensors).
OFFSETS_ARE_RAW = frozenset({"hdf5", "keras-zip", "pytorch-zip", "torchscript"})


def _streams_itself(fmt: str) -> bool:
    """True when the format's loader hands out bytes through its own ``iter_chunks``.

    When the registry cannot answer (unknown name, a loader module that fails to import), contiguous
    ``data_offsets`` are read directly: by contract they are the tensor's raw, uncompressed bytes.
    """
    from weightaudit.formats import get_loader

    try:
        return getattr(get_loader(fmt), "iter_chunks", None) is not None
    except (KeyError, ImportError) as exc:
        log.debug("loader %r not available (%s): reading data_offsets directly", fmt, exc)
        return False


def _file_size(path: Path, known: dict[Path, int]) -> int:
    if path not in known:
        try:
            known[path] = path.stat().st_size
        except OSError:
            known[path] = -1
    return known[path]


def piece_bytes(total: int, workers: int) -> int:
    """Split size of big contiguous tensors: about two pieces per worker, 4..PIECE_BYTES, whole blocks."""
    floor = min(MIN_PIECE_BYTES, PIECE_BYTES)
    size = min(PIECE_BYTES, max(floor, total // max(2 * workers, 1)))
    return max(BLOCK_BYTES, size // BLOCK_BYTES * BLOCK_BYTES)


def _pieces(root: Path, files: Sequence[LoadedFile], workers: int = 1, total: int | None = None) -> list[_Work]:
    """Split every tensor with a supported dtype into work pieces, largest first: big contiguous tensors into
    byte ranges, small ones into runs per file and dtype (``_SmallRun``). ``total``: the tensor bytes the split
    size is planned for (default: these files'; a split fleet audit gives its whole release's)."""
    if total is None:
        total = sum(t.nbytes or 0 for loaded in files for t in loaded.tensors)
    plan = _Planner(root, piece_bytes(total, workers))
    for loaded in files:
        if loaded.status == FileStatus.OK:
            plan.add_file(loaded)
    pieces = plan.pieces + plan.small_runs()
    pieces.sort(key=lambda piece: piece.nbytes, reverse=True)
    return pieces


class _Planner:
    """Builds the pieces of ``_pieces``; per tensor only a few dictionary look-ups (dtype facts are cached)."""

    def __init__(self, root: Path, split: int) -> None:
        self.root, self.split = root, split
        self.pieces: list[_Work] = []
        self.small: dict[tuple[Path, str, str], list[tuple[int, int, TensorInfo]]] = {}
        self.sizes: dict[Path, int] = {}
        self.paths: dict[str, Path] = {}
        self.small_max = min(stats_small.SMALL_MAX_BYTES, BLOCK_BYTES)

    def add_file(self, loaded: LoadedFile) -> None:
        streams_itself = loaded.format not in OFFSETS_ARE_RAW and _streams_itself(loaded.format)
        fmt = loaded.format
        where: dict[tuple[str, str], tuple[Path, int, list]] = {}   # (file, dtype) -> path, size, its small list
        for tensor in loaded.tensors:
            kind = _dtype_kind(tensor.dtype)
            if kind is None:
                continue
            found = where.get((tensor.file, tensor.dtype))
            if found is None:
                path = self.paths.get(tensor.file) or self.paths.setdefault(tensor.file, self.root / tensor.file)
                found = where[(tensor.file, tensor.dtype)] = (
                    path, _file_size(path, self.sizes), self.small.setdefault((path, fmt, tensor.dtype), []))
            path, size, small = found
            offsets = tensor.data_offsets
            if offsets is None or streams_itself or kind.quantized:
                self.pieces.append(_Piece(tensor.key, path, fmt, tensor, 0, tensor.nbytes or 0, mapped=False))
                continue
            begin, end = offsets
            if not 0 <= begin <= end <= size:
                log.warning("%s: tensor %r lies outside the file; no statistics", tensor.file, tensor.name)
                continue
            if (kind.small and kind.itemsize <= end - begin <= self.small_max and tensor.byte_order != "big"
                    and tensor.parameter_count <= HISTOGRAM_EXACT_LIMIT):   # = stats_small.batchable, inlined
                small.append((begin, end, tensor))
                continue
            for start in (range(begin, end, self.split) if end > begin else [begin]):
                self.pieces.append(_Piece(tensor.key, path, fmt, tensor, start, min(start + self.split, end), True))

    def small_runs(self) -> list[_Work]:
        """The small tensors of each (file, format, dtype) in file order, cut into runs of about RUN_BYTES."""
        runs: list[_Work] = []
        for (path, fmt, dtype), members in self.small.items():
            if not members:
                continue
            members.sort(key=lambda member: member[0])
            begins = np.fromiter((m[0] for m in members), np.int64, len(members))
            ends = np.fromiter((m[1] for m in members), np.int64, len(members))
            weights = np.cumsum(ends - begins + TENSOR_COST_BYTES)
            first = 0
            while first < len(members):
                last = max(first + 1, int(np.searchsorted(weights, weights[first - 1] + RUN_BYTES if first else
                                                          RUN_BYTES, "right")))
                tensors = tuple(m[2] for m in members[first:last])
                runs.append(_SmallRun(path, fmt, dtype, tensors, begins[first:last], ends[first:last],
                                      int(ends[first:last].sum() - begins[first:last].sum())))
                first = last
        return runs


@dataclass(frozen=True)
class _DtypeKind:
    quantized: bool   # dequantized by its loader's chunks (GGUF): never read from the map
    small: bool       # stats_small can decode it (``batchable``)
    itemsize: int


@functools.lru_cache(maxsize=None)
def _dtype_kind(dtype: str) -> _DtypeKind | None:
    """What planning needs to know about a dtype (None: no statistics for it)."""
    if not has_statistics(dtype):
        return None
    if _quantized(dtype):
        return _DtypeKind(True, False, 1)
    return _DtypeKind(False, stats_small._element_decoder(dtype) is not None, _spec_of(dtype).itemsize)


def _run_piece(piece: _Piece, chunk_bytes: int, maps: _FileMaps) -> tuple[_Partial, tuple[float, float] | None]:
    """Statistics of one piece (runs in a worker)."""
    tensor = piece.tensor
    spec = _spec_of(tensor.dtype)
    big_endian = tensor.byte_order == "big"
    if not piece.mapped:
        from weightaudit.formats import iter_tensor_chunks

        chunks = _decoded_chunks(iter_tensor_chunks(piece.path, piece.fmt, tensor, chunk_bytes), tensor.dtype)
        stats_part, plan = _stream_whole(chunks, spec, big_endian, tensor.parameter_count)
        return stats_part, plan.histogram_range
    tensor_begin = tensor.data_offsets[0]  # type: ignore[index]
    if (piece.begin, piece.end) == tensor.data_offsets and 0 < piece.end - piece.begin <= BLOCK_BYTES:
        data = memoryview(maps.read(piece.path, piece.begin, piece.end))   # a small tensor: one copy
        plan = _plan(spec, tensor.parameter_count, big_endian, data)
        return _run_blocks(plan, (data,), 0), plan.histogram_range
    first_end = min(tensor_begin + BLOCK_BYTES, tensor.data_offsets[1])  # type: ignore[index]
    first_copy = memoryview(maps.read(piece.path, tensor_begin, first_end)) if first_end > tensor_begin else None
    plan = _plan(spec, tensor.parameter_count, big_endian, first_copy)
    blocks = _mapped_blocks(piece.path, piece.begin, piece.end, max(chunk_bytes, mmap.PAGESIZE), maps)
    part = _run_blocks(plan, blocks, (piece.begin - tensor_begin) // spec.itemsize)
    return part, plan.histogram_range


def _read_range(path: Path, begin: int, end: int) -> bytes:
    with open(path, "rb", buffering=0) as handle:
        data = os.pread(handle.fileno(), end - begin, begin)
    if len(data) != end - begin:
        raise OSError(f"{path}: file ended before byte {end}")
    return data


def _stream_whole(chunks: Iterable[memoryview], spec: _DtypeSpec, big_endian: bool, count: int) -> tuple[_Partial, _TensorPlan]:
    blocks = _reblock(chunks, BLOCK_BYTES)
    first = next(blocks, None)
    if first is None:
        return _Partial(), _plan(spec, count, big_endian, None)
    first = memoryview(bytes(first))
    plan = _plan(spec, count, big_endian, first)
    return _run_blocks(plan, itertools.chain((first,), blocks), 0), plan


# (piece number, result, histogram range, error). A piece's result is a _Partial (None with an error); a small
# run's is its SmallColumns, or when the vectorised pass failed, one (_Partial | None, range, error) per tensor.
_Outcome = tuple[int, "_Partial | SmallColumns | list | None", "tuple[float, float] | None", "str | None"]


def _run_batch(batch: Sequence[tuple[int, _Work]], chunk_bytes: int) -> list[_Outcome]:
    """Run pieces in a worker; a piece that fails reports its error instead of stopping the batch.

    A small run is reduced together (its file mapped once); if that fails, each of its tensors runs alone (so
    one bad tensor names its own error). Every file is opened and mapped once per batch."""
    maps = _FileMaps()
    try:
        return [_run_work(number, piece, chunk_bytes, maps) for number, piece in batch]
    finally:
        maps.close()


def _run_work(number: int, piece: _Work, chunk_bytes: int, maps: _FileMaps) -> _Outcome:
    if isinstance(piece, _SmallRun):
        try:
            columns = small_columns(maps.get(piece.path), piece.dtype, piece.begins, piece.ends)
            if _in_worker:   # the signatures' float formatting is half the per-tensor work: share it too
                columns.with_signatures(_spec_of(piece.dtype).itemsize)
            return number, columns, None, None
        except Exception as exc:  # noqa: BLE001
            log.debug("%s: small tensors one by one (%s)", piece.path, exc)
            return number, [_run_alone(one, chunk_bytes, maps) for one in piece.alone()], None, None
    return (number, *_run_alone(piece, chunk_bytes, maps))


def _run_alone(piece: _Piece, chunk_bytes: int, maps: _FileMaps
               ) -> tuple["_Partial | None", "tuple[float, float] | None", "str | None"]:
    try:
        part, histogram_range = _run_piece(piece, chunk_bytes, maps)
    except Exception as exc:  # noqa: BLE001 - one unreadable tensor must not stop the audit
        return None, None, f"{type(exc).__name__}: {exc}"
    return part, histogram_range, None


def _batches(pieces: Sequence[_Work], workers: int = 1) -> list[list[tuple[int, _Work]]]:
    """Group pieces into work units by bytes (a tensor also counts as TENSOR_COST_BYTES): about four units per
    worker, between 1 MiB and PIECE_BYTES, so both cores get work from a few MB on and tiny tensors do not
    drown in task overhead."""
    weight = [piece.weight for piece in pieces]
    target = min(PIECE_BYTES, max(1 << 20, sum(weight) // max(4 * workers, 1)))
    batches: list[list[tuple[int, _Work]]] = []
    current: list[tuple[int, _Work]] = []
    size = 0
    big = 0
    for number, piece in enumerate(pieces):
        if current and (size + weight[number] > target or big >= BATCH_MAX_PIECES):
            batches.append(current)
            current, size = [], 0
        if not current:
            size = big = 0
        current.append((number, piece))
        size += weight[number]
        big += not piece.small
    if current:
        batches.append(current)
    return batches


_shared_pieces: Sequence[_Work] = ()   # the pass's pieces, inherited by forked workers (never pickled)


_in_worker = False   # True in a pool worker (set by ``_run_numbers``)


def _run_numbers(numbers: Sequence[int], chunk_bytes: int) -> list[_Outcome]:
    """``_run_batch`` on pieces named by their numbers in ``_shared_pieces`` (set before the pool forks):
    pickling 20,000 pieces with their TensorInfo to the workers cost more than the statistics themselves."""
    global _in_worker
    _in_worker = True
    return _run_batch([(number, _shared_pieces[number]) for number in numbers], chunk_bytes)


def _executor(workers: int, pieces: Sequence[_Piece]) -> Executor:
    """Processes (forked: no start-up import cost) where the platform has fork, else threads.

    Measured here: two threads ran *slower* than one (GIL hand-offs between ~20 short numpy calls per block,
    and TLB shoot-downs when one thread drops mapped pages the other's core has cached); two processes scale.
    """
    global _shared_pieces
    _shared_pieces = pieces
    if "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wa-stats")
