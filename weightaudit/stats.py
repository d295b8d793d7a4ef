"""Streaming per-tensor statistics at memory speed: a compiled block kernel, or numpy where it is not built.

One pass per tensor. Bytes are cut into fixed 256 KiB *blocks* (L2-sized — measured best here — at fixed
offsets from the tensor's first byte, whatever chunks the source yields); each block is decoded once into a
reused float32/float64 scratch buffer and several reductions run on it while it is in cache (sum, sum of
squares; the rest only in the rare blocks that need it). For IEEE-like floats (F64 F32 F16 BF16 F8_E4M3
F8_E5M2, stored little-endian) min, max, "may hold ±0" and "holds Inf/NaN" come first from four integer
reductions on the raw codes (``_SignMagnitude``), so the zero count and the NaN/Inf counting only run on the
blocks that need them. Per tensor (``TensorStats``):

- ``count``: elements; ``nan``, ``pos_inf``, ``neg_inf``: exact counts. NaN/Inf cost nothing on clean blocks:
  the code extremes (or ``min``/``max``, which propagate NaN) show them, and only such a block is counted.
- ``min``, ``max``, ``mean``, ``std`` (population, ddof=0) over the *finite* values; None when there are none.
  Mean and M2 come per block from shifted sums (see ``_block_moments``: shift 0 only when the block mean is
  small against its spread, else the block mean) and are merged with Chan et al.'s pairwise update — never
  an unguarded E[x²]−E[x]², which goes negative on LayerNorm-like tensors.
- ``zeros``: exact count of ±0; ``fp16_overflow``: finite values with ``|x| > 65504`` (float dtypes wider than
  F16 only; always 0 for F16/F8 and for integers and BOOL, which are never down-cast to half precision).
- ``max_abs`` and ``max_abs_index``: the largest finite magnitude and its first flat (row-major) index.
- ``fingerprint``: ``"wa1:"`` + 32 hex digits, for duplicate detection. Hashing every byte cost 17% of the
  pass, so the pass only records a *signature* computed exactly and order-independently (byte length, min,
  max, zero/NaN/Inf counts, position of max |x|, crc32 of the first 256 bytes of every block); the
  fingerprint is its BLAKE2b-128. When two tensors of one ``compute_stats`` call share a signature, their
  bytes are hashed in full (multilinear hash per block, mod 2**64, chained through BLAKE2b) and, if they
  differ, that hash is folded in. So within one result equal fingerprints mean identical bytes; identical
  bytes always give equal fingerprints, on any machine. Not a cryptographic hash: crafted collisions are easy.
- ``histogram``: 16 bins over ``histogram_range`` = the finite min..max of the tensor's *first block* (so one
  pass suffices); values outside clamp into the end bins. Tensors above 65,536 elements are sampled (every
  16th element of every 16th block, 1 in 256), so the bins sum to the sample size, not to ``count``.

Dtypes: F64 F32, F16 BF16 F8_E4M3 F8_E5M2 (integer shifts on uint32 words, one lane at a time: numpy's own
f16 cast runs at 0.8 GB/s here and u16->u32 widening is slow), F8_E4M3FNUZ F8_E5M2FNUZ F8_E8M0 (256-entry table),
I8..I64, U8..U64, BOOL; big-endian bytes are swapped. Integers above 2**53 lose precision in min/max/mean.
Not computed (no entry in the result, i.e. stats None): F4, F6_*, C64/C128 (complex), STRING/OBJECT, and the
quantized types gguf_quant.py does not dequantize (IQ*, TQ*, MXFP4 ...). GGUF Q4_0 ... Q8_K tensors are
dequantized to F32, whole blocks at a time, and take the F32 path (``has_statistics``).

Reading: a contiguous tensor (``data_offsets`` set and no loader ``iter_chunks``, or a loader in
``stats_schedule.OFFSETS_ARE_RAW`` such as HDF5) is read through a read-only memory map, block by block, and
each finished 4 MiB range is dropped with ``madvise(MADV_DONTNEED)`` so resident memory stays flat (measured
faster here than ``readinto`` a reused 4 MiB buffer, whose copy costs a pass). A batch maps each file once.
Work is planned by bytes (``stats_schedule``): big contiguous tensors are cut into block-aligned pieces (about
two per worker, 4..64 MiB) whose partial results merge exactly; tensors up to 64 KiB are reduced together per
file and dtype with ``ufunc.reduceat`` (``stats_small``: same results, mean/std within float tolerance);
batches are about a quarter of a worker's share. Other tensors stream through ``formats.iter_tensor_chunks``.
Work runs in forked worker processes that inherit the planned pieces (threads where fork is missing: two
threads ran slower than one here); below 4 MiB of big-tensor bytes, one process does everything.
Layout: ``stats_decode`` (decoders per dtype), ``stats_kernels`` (block kernel, partial results),
``stats_small`` (many small tensors at once), ``stats_schedule`` (planning, byte sources, pool), this module
(public API, merge, duplicate confirmation). ``kernel_name()`` says which kernel folds the blocks: "c-avx512" /
"c-avx2" (``_kernel.c``, one fused pass, see ``stats_kernels``) or "numpy" (no compiler, or
``WEIGHTAUDIT_KERNEL=numpy``); the description above is numpy's.
``np.dot`` is avoided: OpenBLAS threads it and those threads spin against the workers (2x the CPU time).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
from concurrent.futures import as_completed
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from weightaudit.model import LoadedFile, TensorInfo, TensorStats

from weightaudit.stats_decode import (  # noqa: F401 - re-exported: the public names and what tests/others use
    BLOCK_BYTES, FP16_MAX, HISTOGRAM_BINS, HISTOGRAM_EXACT_LIMIT, _SPECS, _BF16, _F16, _Scratch, _SmallFloat,
    _natural_index, _scratch, _spec_of, has_statistics, supported_dtype)
from weightaudit.stats_kernels import (  # noqa: F401
    _HASH_TABLE, _Partial, _full_digest, _fingerprint, _plan, _run_blocks, kernel_name)
from weightaudit import stats_schedule
from weightaudit.stats_schedule import (  # noqa: F401
    PIECE_BYTES, _FileMaps, _Outcome, _Piece, _SmallRun, _Work, _batches, _executor, _mapped_blocks, _pieces,
    _read_range, _reblock, _run_batch, _run_numbers)
from weightaudit.stats_small import SmallColumns

__all__ = ["compute_stats", "tensor_stats", "supported_dtype", "has_statistics", "kernel_name", "FP16_MAX", "HISTOGRAM_BINS"]

log = logging.getLogger(__name__)

PARALLEL_MIN_BYTES = 4 * 1024 * 1024   # below this many bytes of big tensors ...
PARALLEL_MIN_SMALL_WEIGHT = 128 * 1024 * 1024   # ... and this much small-tensor work (~10,000 tiny tensors:
# TENSOR_COST_BYTES each), one process does the pass; above, workers reduce the small runs too (and format their
# signatures), which halves the pass's wall time on two free cores for ~50 ms of pool start-up

def tensor_stats(
    chunks: Iterable[memoryview | bytes], dtype: str, byte_order: str = "little", count: int | None = None,
) -> TensorStats | None:
    """Statistics of one tensor from its raw bytes, streamed in chunks of any size; None for unsupported dtypes.

    ``count`` (elements) only decides whether the histogram is exact or sampled; when it is not given, a tensor
    that fits in one block counts as small. A trailing partial element (a truncated tensor) is ignored.
    """
    spec = _SPECS.get(dtype)
    if spec is None:
        return None
    big_endian = byte_order == "big"
    blocks = _reblock(chunks, BLOCK_BYTES)
    first = next(blocks, None)
    if first is None:
        return _Partial().result(_fingerprint(_Partial().signature(0)), None)
    first = memoryview(bytes(first))  # _reblock reuses its carry buffer: keep our own copy of block 0
    second = next(blocks, None)
    if count is None:
        count = len(first) // spec.itemsize if second is None else HISTOGRAM_EXACT_LIMIT + 1
    plan = _plan(spec, count, big_endian, first)
    rest: Iterable[memoryview] = () if second is None else itertools.chain((second,), blocks)
    part = _run_blocks(plan, itertools.chain((first,), rest), 0)
    return part.result(_fingerprint(part.signature(part.count * spec.itemsize)), plan.histogram_range)



def compute_stats(
    root: Path,
    files: Sequence[LoadedFile],
    *,
    workers: int | None = None,
    chunk_bytes: int = 4 * 1024 * 1024,
    on_progress: Callable[[int], None] | None = None,
) -> dict[tuple[str, str], TensorStats]:
    """Statistics of every tensor with a supported dtype in the files that loaded OK, keyed by ``TensorInfo.key``.

    ``workers`` processes share the work (default: the number of CPUs; 1 runs in this process). Large
    contiguous tensors are split into pieces, small ones batched. ``chunk_bytes`` is the read size of
    streamed tensors and how often mapped pages are released. ``on_progress(bytes_done)`` is called in the
    calling process as batches finish. A tensor whose bytes cannot be read is left out (and logged).
    """
    wanted = max(1, workers or os.cpu_count() or 1)
    pieces = _pieces(Path(root), files, wanted)
    if (sum(piece.nbytes for piece in pieces if not piece.small) < PARALLEL_MIN_BYTES
            and sum(piece.weight for piece in pieces if piece.small) < PARALLEL_MIN_SMALL_WEIGHT):
        wanted = 1   # forking a pool and pickling results back costs more than the pass
    batches = _batches(pieces, wanted)
    workers = max(1, min(wanted, len(batches)))
    outcomes: list[_Outcome] = []

    def collect(batch_outcomes: list[_Outcome]) -> None:
        outcomes.extend(batch_outcomes)
        if on_progress is not None:
            on_progress(sum(pieces[number].nbytes for number, *_ in batch_outcomes))

    if workers == 1:
        for batch in batches:
            collect(_run_batch(batch, chunk_bytes))
    else:
        with _executor(workers, pieces) as pool:
            futures = [pool.submit(_run_numbers, [number for number, _ in batch], chunk_bytes) for batch in batches]
            for future in as_completed(futures):
                collect(future.result())
        stats_schedule._shared_pieces = ()
    return _merge(pieces, outcomes)


def _merge(pieces: Sequence[_Work], outcomes: Iterable[_Outcome]) -> dict[tuple[str, str], TensorStats]:
    """Join each tensor's pieces in byte order; a tensor with a failed piece gets no statistics."""
    return _finished(_joined(pieces, outcomes), pieces)


# Each tensor's statistics, fingerprinted from its signature alone, and that signature: where signatures collide,
# ``_finished`` hashes the bytes and gives the tensors that differ fingerprints with their hash folded in.
_Joined = dict[tuple[str, str], tuple[TensorStats, bytes]]
_NOT_FINGERPRINT = tuple(f.name for f in dataclasses.fields(TensorStats) if f.name != "fingerprint")


def measure_files(root: Path, files: Sequence[LoadedFile], total_bytes: int,
                  chunk_bytes: int = 4 * 1024 * 1024) -> _Joined:
    """Some files of a release measured in this process exactly as ``compute_stats(workers=1)`` over the whole
    release measures them (pieces planned for the release's ``total_bytes``), before fingerprints are confirmed:
    a split fleet audit measures its parts apart and joins them with :func:`finish_measured`."""
    pieces = _pieces(Path(root), files, 1, total_bytes)
    outcomes = [outcome for batch in _batches(pieces, 1) for outcome in _run_batch(batch, chunk_bytes)]
    return _joined(pieces, outcomes)


def finish_measured(root: Path, files: Sequence[LoadedFile], measured: _Joined) -> dict[tuple[str, str], TensorStats]:
    """The statistics of the whole release from its parts' measures (``files``: all of its files): fingerprints
    confirmed across every file, as ``compute_stats`` confirms them."""
    return _finished(dict(measured), _pieces(Path(root), files, 1))


def _joined(pieces: Sequence[_Work], outcomes: Iterable[_Outcome]) -> _Joined:
    """Every tensor's values and signature: small runs row by row from their columns, pieces merged in order."""
    parts: dict[tuple[str, str], list[tuple[int, _Partial, tuple[float, float] | None]]] = {}
    failed: dict[tuple[str, str], tuple[TensorInfo, str]] = {}
    joined: _Joined = {}
    for number, result, histogram_range, error in outcomes:
        piece = pieces[number]
        if isinstance(piece, _SmallRun) and isinstance(result, SmallColumns):
            joined.update(_small_rows(piece, result, failed))
        elif isinstance(piece, _SmallRun):   # the run's vectorised pass failed: its tensors ran one by one
            for one, (part, one_range, one_error) in zip(piece.alone(), result):
                _add_part(parts, failed, one, part, one_range, one_error)
        else:
            _add_part(parts, failed, piece, result, histogram_range, error)
    for key, found in parts.items():
        if len(found) > 1:
            found.sort(key=lambda item: item[0])
        whole = found[0][1]
        for _, later, *_ in found[1:]:
            whole.merge(later)
        signature = whole.signature(whole.count * _spec_of(found[0][3]).itemsize)
        joined[key] = (whole.result(_fingerprint(signature), found[0][2]), signature)
    for key, (tensor, error) in failed.items():
        log.warning("%s: statistics of tensor %r skipped: %s", tensor.file, tensor.name, error)
        joined.pop(key, None)
    return joined


def _add_part(parts: dict, failed: dict, piece: _Piece, part: _Partial | None,
              histogram_range: tuple[float, float] | None, error: str | None) -> None:
    if part is None:
        failed.setdefault(piece.key, (piece.tensor, error or "failed"))
    else:
        parts.setdefault(piece.key, []).append((piece.begin, part, histogram_range, piece.tensor.dtype))


def _small_rows(run: _SmallRun, columns: SmallColumns, failed: dict
                ) -> Iterator[tuple[tuple[str, str], tuple[TensorStats, bytes]]]:
    """(key, (stats, signature)) of every tensor of a small run, from its columns: what ``_Partial.result`` and
    ``_Partial.signature`` give for the same numbers, built column-wise."""
    c = columns
    count, zeros, nan, pos_inf, neg_inf = (a.tolist() for a in (c.count, c.zeros, c.nan, c.pos_inf, c.neg_inf))
    max_abs_index = c.max_abs_index.tolist()
    std = np.sqrt(np.maximum(c.m2, 0.0) / np.maximum(c.finite, 1))
    rows = list(zip(count, c.low.tolist(), c.high.tolist(), c.mean.tolist(), std.tolist(), zeros, nan, pos_inf,
                    neg_inf, c.fp16_overflow.tolist(), c.max_abs.tolist(), max_abs_index,
                    map(tuple, c.histogram.tolist()), zip(c.hist_low.tolist(), c.hist_high.tolist())))
    for row in np.flatnonzero(c.finite == 0).tolist():   # no finite value: as ``_Partial.result`` says it
        values = rows[row]
        rows[row] = (values[0], None, None, None, None, *values[5:10], None, None, (), None)
    if c.signatures is None:
        c.with_signatures(_spec_of(run.dtype).itemsize)
    for row, error in c.failed.items():
        tensor = run.tensors[row]
        failed.setdefault(tensor.key, (tensor, error))
    return ((tensor.key, (_new_stats(values, fingerprint), signature))
            for tensor, values, signature, fingerprint in zip(run.tensors, rows, c.signatures, c.fingerprints))


def _finished(joined: _Joined, pieces: Sequence[_Work]) -> dict[tuple[str, str], TensorStats]:
    """The statistics with confirmed fingerprints: where signatures collide, a full hash of the bytes decides.

    So within one result, equal fingerprints mean byte-identical tensors (up to a 2**-64 hash collision).
    """
    results = {key: stats for key, (stats, _) in joined.items()}
    if len({signature for _, signature in joined.values()}) == len(joined):
        return results   # (the usual case, tested at C speed)
    groups: dict[bytes, list[tuple[str, str]]] = {}
    for key, (_, signature) in joined.items():
        groups.setdefault(signature, []).append(key)
    colliding = [keys for keys in groups.values() if len(keys) > 1]
    digests = _digests([key for keys in colliding for key in keys], pieces)
    for keys in colliding:
        if len({digests[key] for key in keys}) > 1:   # same signature, different bytes
            signature = joined[keys[0]][1]
            for key in keys:
                results[key] = dataclasses.replace(results[key], fingerprint=_fingerprint(signature, digests[key]))
    return results


def _new_stats(values: tuple, fingerprint: str, _new=object.__new__, _names=_NOT_FINGERPRINT) -> TensorStats:
    """``TensorStats(...)`` from its values in ``_NOT_FINGERPRINT`` order and the fingerprint, built by filling the
    instance dict: a frozen dataclass's generated ``__init__`` pays an ``object.__setattr__`` per field (15), 3x
    this, which showed over 20,000 tensors. Every field is set (the values cover all but the fingerprint)."""
    stats = _new(TensorStats)
    fields = stats.__dict__
    fields.update(zip(_names, values))
    fields["fingerprint"] = fingerprint
    return stats


def _digests(keys: Sequence[tuple[str, str]], pieces: Sequence[_Work]) -> dict[tuple[str, str], bytes]:
    """Full hashes of these tensors' bytes; the small ones of a run hashed together from one map per file."""
    wanted = set(keys)
    out: dict[tuple[str, str], bytes] = {}
    small: dict[Path, list[tuple[tuple[str, str], int, int]]] = {}
    for piece in pieces:
        if isinstance(piece, _SmallRun):
            small.setdefault(piece.path, []).extend(
                (t.key, b, e) for t, b, e in zip(piece.tensors, piece.begins.tolist(), piece.ends.tolist())
                if t.key in wanted)
        elif piece.key in wanted and piece.key not in out:
            out[piece.key] = _tensor_digest(piece)
    maps = _FileMaps()
    try:
        for path, members in small.items():
            try:
                out.update(_small_digests(maps.get(path), members))
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: could not hash small tensors: %s", path, exc)
                out.update((key, repr(key).encode()) for key, _, _ in members)
    finally:
        maps.close()
    return out


def _small_digests(mapped, members: Sequence[tuple[tuple[str, str], int, int]]) -> dict[tuple[str, str], bytes]:
    """``_full_digest`` of tensors of at most one block each, computed for many at once: the multilinear hash of
    each (zero-padded) tensor as one row of a matrix product mod 2**64, then BLAKE2b of (length, hash)."""
    whole = np.frombuffer(mapped, np.uint8)
    by_length: dict[int, list[tuple[tuple[str, str], int]]] = {}
    for key, begin, end in members:
        if end > whole.size:
            raise OSError(f"tensor bytes end at {end} but the file has {whole.size}")
        by_length.setdefault(end - begin, []).append((key, begin))
    out: dict[tuple[str, str], bytes] = {}
    for length, group in by_length.items():
        words = (length + 7) // 8
        table = _HASH_TABLE[:words]
        prefix = length.to_bytes(4, "little")
        for first in range(0, len(group), 4096):   # bounded temporaries
            rows = group[first:first + 4096]
            starts = np.fromiter((begin for _, begin in rows), np.int64, len(rows))
            matrix = np.zeros((len(rows), words * 8), np.uint8)
            matrix[:, :length] = whole[starts[:, None] + np.arange(length)]
            hashes = np.einsum("ij,j->i", matrix.view("<u8"), table).tolist()   # uint64: wraps mod 2**64
            out.update((key, hashlib.blake2b(prefix + h.to_bytes(8, "little"), digest_size=16).digest())
                       for (key, _), h in zip(rows, hashes))
    return out


def _tensor_digest(piece: _Piece) -> bytes:
    """Full hash of a tensor's bytes (a unique stand-in when they cannot be read: never a false match)."""
    tensor = piece.tensor
    try:
        if piece.mapped and tensor.data_offsets is not None:
            begin, end = tensor.data_offsets
            if end - begin <= BLOCK_BYTES:   # small: one read (100,000 identical small tensors all get here)
                return _full_digest((memoryview(_read_range(piece.path, begin, end)),) if end > begin else ())
            return _full_digest(_mapped_blocks(piece.path, begin, end, 4 * 1024 * 1024))
        from weightaudit.formats import iter_tensor_chunks

        return _full_digest(_reblock(iter_tensor_chunks(piece.path, piece.fmt, tensor), BLOCK_BYTES))
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: could not hash tensor %r: %s", tensor.file, tensor.name, exc)
        return repr(piece.key).encode()
