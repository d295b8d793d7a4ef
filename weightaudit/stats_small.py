"""Statistics of many small tensors at once: one vectorised pass over their values, results as columns.

The block kernel (``stats_kernels``) costs ~20 numpy calls per block whatever its size, so a release of
20,000 tiny tensors paid ~100+ µs each. Here the small contiguous tensors of one file and dtype are read from
one memory map (a run of tensors that follow each other in the file is one slice, not a copy per tensor),
decoded in natural order in groups of up to ``GROUP_BYTES`` and reduced per tensor with ``ufunc.reduceat``
over segment starts: a few dozen numpy calls per group instead of per tensor. Per-tensor values (a segment's
mean, histogram offset ...) are broadcast over a 2-D view when a group's tensors have one length (the common
case) instead of being repeated element by element. Results come back as columns (``SmallColumns``, numpy
arrays: cheap to send from a worker), never as one Python object per tensor until the report needs one.

Results are those of the block kernel: counts, min/max, max |x| and its first position, zeros, NaN/±Inf, fp16
overflow, histogram bins (same float width and rounding as ``_add_histogram``) and the fingerprint signature
are identical; mean and M2 are computed in float64 by two passes (centred on each tensor's mean), so they may
differ from the block kernel's float32 sums in the last bits (within float tolerance).
"""

from __future__ import annotations

import functools
import mmap
import zlib
from dataclasses import dataclass, field, fields
from typing import Callable, Sequence

import numpy as np

from weightaudit.stats_decode import (BLOCK_BYTES, FP16_MAX, HISTOGRAM_BINS, HISTOGRAM_EXACT_LIMIT, _SPECS, _Native,
                                      _Table)
from weightaudit.stats_kernels import HISTOGRAM_MIN_SPREAD, SAMPLE_BYTES, _fingerprint

# _Partial.signature's bytes, repr(facts) + the crc32 samples, for the ints and floats of a small tensor's row
# (one sample): formatting bytes directly is 25% cheaper than repr of a tuple, and float repr is most of it.
_SIGNATURE = b"(%d, %d, %r, %r, %d, %d, %d, %d, %d)%b"
SMALL_MAX_BYTES = 64 * 1024      # tensors up to this size (and one block, exact histogram) take this path
GROUP_BYTES = 256 * 1024      # bytes concatenated and reduced together (float64 temporaries stay in L2)


def _bf16(raw: np.ndarray) -> np.ndarray:
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)


def _f16(raw: np.ndarray) -> np.ndarray:
    return raw.view("<f2").astype(np.float32)


@functools.lru_cache(maxsize=None)
def _element_decoder(dtype: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """Natural-order decoder of a dtype for this path (None: the block kernel handles it)."""
    if dtype == "BF16":
        return _bf16
    if dtype == "F16":
        return _f16
    spec = _SPECS.get(dtype)
    if spec is None:
        return None
    decoder = spec.decoder
    if isinstance(decoder, _Native):
        stored, work = np.dtype(decoder.numpy_dtype), np.dtype(decoder.work_dtype)
        return lambda raw: raw.view(stored).astype(work, copy=stored != work)
    if isinstance(decoder, _Table):
        return lambda raw: np.take(decoder.table, raw)
    return None   # the 8-bit bit-trick formats (E4M3, E5M2) decode lane by lane: block kernel


def batchable(dtype: str, byte_order: str, nbytes: int, count: int) -> bool:
    """True when a mapped tensor may be reduced together with others of its file and dtype."""
    return (_element_decoder(dtype) is not None and byte_order != "big" and count <= HISTOGRAM_EXACT_LIMIT
            and _SPECS[dtype].itemsize <= nbytes <= min(SMALL_MAX_BYTES, BLOCK_BYTES))


@dataclass
class SmallColumns:
    """Per-tensor results of small tensors, row i for the i-th tensor asked for (see ``small_columns``).

    ``low``/``high`` are the finite min/max (+inf/-inf when a tensor has no finite value, as ``_Partial``),
    ``max_abs``/``max_abs_index`` -1 then; ``hist_low``/``hist_high`` the histogram range (rows with finite
    values); ``sample`` the crc32 of each tensor's first ``SAMPLE_BYTES``; ``failed`` row -> why it failed
    (its other values are meaningless)."""

    count: np.ndarray
    finite: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray
    zeros: np.ndarray
    nan: np.ndarray
    pos_inf: np.ndarray
    neg_inf: np.ndarray
    fp16_overflow: np.ndarray
    max_abs: np.ndarray
    max_abs_index: np.ndarray
    histogram: np.ndarray      # (rows, HISTOGRAM_BINS) int64
    hist_low: np.ndarray
    hist_high: np.ndarray
    sample: np.ndarray         # uint32
    failed: dict[int, str] = field(default_factory=dict)
    signatures: list[bytes] | None = None   # set by ``with_signatures`` (in the worker that computed the rows) ...
    fingerprints: list[str] | None = None   # ... with each signature's own fingerprint (``_fingerprint``)

    def signature_list(self, itemsize: int) -> list[bytes]:
        """``_Partial.signature`` of every row (repr of the exact facts + the crc32 sample), built column-wise."""
        samples = self.sample.astype("<u4").tobytes()
        facts = zip((self.count * itemsize).tolist(), self.count.tolist(), (self.low + 0.0).tolist(),
                    (self.high + 0.0).tolist(), self.zeros.tolist(), self.nan.tolist(), self.pos_inf.tolist(),
                    self.neg_inf.tolist(), self.max_abs_index.tolist(),
                    [samples[i:i + 4] for i in range(0, len(samples), 4)])
        return [_SIGNATURE % fact for fact in facts]

    def rows(self, index: np.ndarray) -> "SmallColumns":
        """These columns with their rows taken in ``index`` order (before signatures are made)."""
        return SmallColumns(**{f.name: getattr(self, f.name)[index] for f in fields(SmallColumns)
                               if f.name not in ("failed", "signatures", "fingerprints")},
                            failed={new: self.failed[old] for new, old in enumerate(index.tolist())
                                    if old in self.failed} if self.failed else {})

    def with_signatures(self, itemsize: int) -> "SmallColumns":
        self.signatures = self.signature_list(itemsize)
        self.fingerprints = [_fingerprint(signature) for signature in self.signatures]
        return self

    @classmethod
    def concat(cls, parts: Sequence["SmallColumns"]) -> "SmallColumns":
        if len(parts) == 1:
            return parts[0]
        arrays = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)
                  if f.name not in ("failed", "signatures", "fingerprints")}
        failed, offset = {}, 0
        for part in parts:
            failed.update({offset + row: error for row, error in part.failed.items()})
            offset += len(part.count)
        return cls(**arrays, failed=failed)


def small_columns(mapped: mmap.mmap, dtype: str, begins: np.ndarray, ends: np.ndarray) -> SmallColumns:
    """Statistics of the small tensors ``[begins[i], ends[i])`` (sorted by ``begins``) of one dtype in one mapped
    file; a tensor whose bytes lie past the end of the map is a failed row, the others are still computed."""
    from weightaudit.stats_schedule import release_pages   # (import cycle: the schedule imports this module)

    whole = np.frombuffer(mapped, np.uint8)
    outside = ends > whole.size
    if outside.any():
        return _with_failed_rows(mapped, dtype, begins, ends, outside, whole.size)
    if begins.size == 0:
        return _empty_columns(np.zeros(0, np.int64), np.zeros(0, np.uint32))
    itemsize = _SPECS[dtype].itemsize
    counts = (ends - begins) // itemsize
    order = None
    if (counts[1:] != counts[:-1]).any():   # several lengths: reduce each length's tensors together (2-D grids)
        order = np.argsort(counts, kind="stable")
        begins, ends, counts = begins[order], ends[order], counts[order]
    sizes = ends - begins
    limits = np.cumsum(sizes)
    length_ends = np.append(np.flatnonzero(counts[1:] != counts[:-1]) + 1, begins.size)
    parts, first = [], 0
    while first < begins.size:   # groups of about GROUP_BYTES (at least one tensor) of one length
        last = max(first + 1, int(np.searchsorted(limits, limits[first] - sizes[first] + GROUP_BYTES, "right")))
        last = min(last, int(length_ends[np.searchsorted(length_ends, first, "right")]))
        parts.append(_group_columns(whole, mapped, dtype, itemsize, begins[first:last], ends[first:last]))
        release_pages(mapped, int(begins[first]), int(ends[last - 1]))   # resident memory stays flat
        first = last
    found = SmallColumns.concat(parts)
    return found if order is None else found.rows(np.argsort(order))


def _with_failed_rows(mapped: mmap.mmap, dtype: str, begins: np.ndarray, ends: np.ndarray, outside: np.ndarray,
                      size: int) -> SmallColumns:
    """The rows inside the file computed, the rows past its end (``outside``) failed."""
    inside = np.flatnonzero(~outside)
    done = small_columns(mapped, dtype, begins[inside], ends[inside])
    out = SmallColumns(**{f.name: _spread(getattr(done, f.name), inside, begins.size)
                          for f in fields(SmallColumns) if f.name not in ("failed", "signatures", "fingerprints")})
    out.failed = {row: f"OSError: tensor bytes end at {int(ends[row])} but the file has {size}"
                  for row in np.flatnonzero(outside).tolist()}
    return out


def _spread(column: np.ndarray, rows: np.ndarray, total: int) -> np.ndarray:
    out = np.zeros((total,) + column.shape[1:], column.dtype)
    out[rows] = column
    return out


def _group_columns(whole: np.ndarray, mapped: mmap.mmap, dtype: str, itemsize: int, begins: np.ndarray,
                   ends: np.ndarray) -> SmallColumns:
    spec = _SPECS[dtype]
    counts = (ends - begins) // itemsize
    stops = begins + counts * itemsize                 # a trailing partial element is ignored
    breaks = np.flatnonzero(begins[1:] != stops[:-1]) + 1
    if breaks.size == 0:                               # tensors that follow each other: one slice, no copy
        raw = whole[int(begins[0]):int(stops[-1])]
    else:
        edges = [0, *breaks.tolist(), begins.size]
        raw = np.concatenate([whole[int(begins[a]):int(stops[b - 1])] for a, b in zip(edges, edges[1:])])
    view = memoryview(mapped)
    try:
        sample_ends = np.minimum(stops, begins + SAMPLE_BYTES).tolist()
        samples = np.fromiter((zlib.crc32(view[b:e]) for b, e in zip(begins.tolist(), sample_ends)),
                              np.uint32, begins.size)
    finally:
        view.release()
    values = _element_decoder(dtype)(raw)  # type: ignore[misc]
    return _Segments(values, counts, spec.is_float, spec.can_overflow_fp16).columns(samples)


class _Segments:
    """Per-segment reductions of one decoded array (segment i = the next ``counts[i]`` values).

    ``grid`` is the values as (segments, length) when every segment has one length, else the flat array;
    ``_each`` spreads one value per segment over that shape (a broadcast column, or a repeat per element)."""

    def __init__(self, values: np.ndarray, counts: np.ndarray, is_float: bool, fp16: bool) -> None:
        self.values, self.counts = values, counts
        self.starts = np.zeros(counts.size, np.int64)
        np.cumsum(counts[:-1], out=self.starts[1:])
        self.uniform = counts.size > 0 and bool((counts == counts[0]).all()) and counts[0] > 0
        self.grid = values.reshape(counts.size, int(counts[0])) if self.uniform else values
        self.segment_of = None if self.uniform else np.repeat(np.arange(counts.size, dtype=np.intp), counts)
        self.is_float, self.fp16 = is_float, fp16

    def _each(self, per_segment: np.ndarray) -> np.ndarray:
        return per_segment[:, None] if self.uniform else per_segment.take(self.segment_of)

    def _reduce(self, ufunc: np.ufunc, array: np.ndarray, dtype=None) -> np.ndarray:
        return ufunc.reduceat(array.reshape(-1), self.starts, dtype=dtype)

    def _count(self, flags: np.ndarray) -> np.ndarray:
        return self._reduce(np.add, flags, np.int64)

    def columns(self, samples: np.ndarray) -> SmallColumns:
        n_seg = self.counts.size
        if n_seg == 0 or self.values.size == 0:
            return _empty_columns(self.counts, samples)
        low = self._reduce(np.minimum, self.values)    # NaN and ±Inf show in the extremes: the common case is
        high = self._reduce(np.maximum, self.values)   # proven finite here without a pass of its own
        finite_mask = None
        if self.is_float and not (np.isfinite(low).all() and np.isfinite(high).all()):
            finite_mask = np.isfinite(self.grid)
        zero = np.zeros(n_seg, np.int64)
        if finite_mask is None:
            finite_n, nan, pos_inf, neg_inf, sum_src = self.counts, zero, zero, zero, self.grid
        else:
            finite_n, sum_src = self._count(finite_mask), np.where(finite_mask, self.grid, 0)
            nan, pos_inf = self._count(np.isnan(self.grid)), self._count(self.grid == np.inf)
            neg_inf = self._count(self.grid == -np.inf)
            low = self._reduce(np.minimum, np.where(finite_mask, self.grid, np.inf))
            high = self._reduce(np.maximum, np.where(finite_mask, self.grid, -np.inf))
        low, high = low.astype(np.float64), high.astype(np.float64)
        mean, m2 = self._moments(sum_src, finite_n, finite_mask)
        magnitude = np.maximum(-low, high)
        overflow = zero
        if self.fp16 and (magnitude > FP16_MAX).any():   # finite values only: ``sum_src`` has 0 for the others
            overflow = self._count(np.abs(sum_src) > FP16_MAX)
        where_max = self._max_abs_positions(magnitude, finite_mask)
        histogram, hist_low, hist_high = self._histograms(low, high, finite_n, finite_mask)
        none = finite_n == 0
        mean[none] = m2[none] = 0.0
        magnitude[none] = -1.0
        where_max[none] = -1
        return SmallColumns(self.counts, finite_n, mean, m2, low, high, self._count(self.grid == 0), nan, pos_inf,
                            neg_inf, overflow, magnitude, where_max, histogram, hist_low, hist_high, samples)

    def _moments(self, sum_src: np.ndarray, finite_n: np.ndarray, finite_mask: np.ndarray | None):
        """Mean and M2 per segment in float64, two passes (the second centred on the segment's mean)."""
        wide = sum_src.astype(np.float64)
        mean = self._reduce(np.add, wide) / np.maximum(finite_n, 1)
        centred = np.subtract(wide, self._each(mean), out=wide)
        if finite_mask is not None:
            centred[~finite_mask] = 0.0
        np.multiply(centred, centred, out=centred)
        return mean, self._reduce(np.add, centred)

    def _max_abs_positions(self, magnitude: np.ndarray, finite_mask: np.ndarray | None) -> np.ndarray:
        """First index inside each segment where |x| equals the segment's largest finite magnitude."""
        size = np.abs(self.grid)
        if self.uniform and finite_mask is None:
            return np.argmax(size, axis=1).astype(np.int64)   # the first largest |x| of each row
        hits = np.equal(size, self._each(magnitude.astype(size.dtype)), out=np.empty(size.shape, bool))
        if finite_mask is not None:
            hits &= finite_mask
        positions = np.flatnonzero(hits)
        segment_of = np.searchsorted(self.starts, positions, side="right") - 1
        found, first = np.unique(segment_of, return_index=True)
        where = np.full(self.starts.size, -1, np.int64)
        where[found] = positions[first] - self.starts[found]
        return where

    def _histograms(self, low: np.ndarray, high: np.ndarray, finite_n: np.ndarray, finite_mask: np.ndarray | None):
        """16 bins per segment over its finite min..max (widened as ``_histogram_range`` widens), as
        ``_add_histogram`` counts them."""
        grid = self.grid
        n_seg = self.starts.size
        has = finite_n > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):   # (rows without finite values: ±inf)
            narrow = high - low < HISTOGRAM_MIN_SPREAD       # as ``_histogram_range``: constant, or subnormals
            lo = np.where(narrow, low - 0.5, low)
            hi = np.where(narrow, high + 0.5, high)
            vanished = lo == hi                              # |value| >= 2**53: the 0.5 was lost
            lo = np.where(vanished, lo - np.abs(lo) * 2.0**-20, lo)
            hi = np.where(vanished, hi + np.abs(hi) * 2.0**-20, hi)
            scale = np.where(has, HISTOGRAM_BINS / np.where(has, hi - lo, 1.0), 0.0)
        positions = np.subtract(grid, self._each(lo.astype(grid.dtype)), dtype=grid.dtype)
        positions *= self._each(scale.astype(grid.dtype))
        if finite_mask is not None:
            positions[~finite_mask] = 0
        np.clip(positions, 0, HISTOGRAM_BINS - 1, out=positions)
        bins = positions.astype(np.intp)
        bins += self._each(np.arange(n_seg, dtype=np.intp) * HISTOGRAM_BINS)
        weights = None if finite_mask is None else finite_mask.reshape(-1).astype(np.float64)
        counts = np.bincount(bins.reshape(-1), weights, minlength=n_seg * HISTOGRAM_BINS).astype(np.int64)
        return counts.reshape(n_seg, HISTOGRAM_BINS), lo, hi


def _empty_columns(counts: np.ndarray, samples: np.ndarray) -> SmallColumns:
    n = counts.size
    ints, floats = np.zeros(n, np.int64), np.zeros(n, np.float64)
    return SmallColumns(counts.astype(np.int64), ints, floats, floats.copy(), np.full(n, np.inf), np.full(n, -np.inf),
                        ints, ints, ints, ints, ints, np.full(n, -1.0), np.full(n, -1, np.int64),
                        np.zeros((n, HISTOGRAM_BINS), np.int64), floats, floats, samples.astype(np.uint32))
