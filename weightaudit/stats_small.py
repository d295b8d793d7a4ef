"""Statistics of many small tensors at once: one vectorised pass over their concatenated values.

The block kernel (``stats_kernels``) costs ~20 numpy calls per block whatever its size, so a release of
20,000 tiny tensors paid ~100+ µs each. Here, the small contiguous tensors of one file and dtype are read from
one memory map, concatenated (up to ``GROUP_BYTES`` at a time), decoded in natural order and reduced per
tensor with ``ufunc.reduceat`` over segment starts: a few dozen numpy calls per group instead of per tensor.

Results are those of the block kernel: counts, min/max, max |x| and its first position, zeros, NaN/±Inf, fp16
overflow, histogram bins (same float width and rounding as ``_add_histogram``) and the fingerprint signature
are identical; mean and M2 are computed in float64 by two passes (centred on each tensor's mean), so they may
differ from the block kernel's float32 sums in the last bits (within float tolerance).
"""

from __future__ import annotations

import functools
import mmap
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from weightaudit.stats_decode import (BLOCK_BYTES, FP16_MAX, HISTOGRAM_BINS, HISTOGRAM_EXACT_LIMIT, _SPECS, _Native,
                                      _Table)
from weightaudit.stats_kernels import SAMPLE_BYTES, _Partial

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
    return (0 < nbytes <= min(SMALL_MAX_BYTES, BLOCK_BYTES) and count <= HISTOGRAM_EXACT_LIMIT
            and byte_order != "big" and _element_decoder(dtype) is not None)


@dataclass(frozen=True)
class SmallTensor:
    """One small tensor to reduce: its byte range in the file."""

    number: int     # the caller's identifier (returned with the result)
    begin: int
    end: int


Result = tuple[int, _Partial, "tuple[float, float] | None"]


def small_stats(mapped: mmap.mmap, path: Path, dtype: str, tensors: Sequence[SmallTensor]) -> list[Result]:
    """Partials (and histogram ranges) of small tensors of one dtype in one mapped file (``path`` names it)."""
    ordered = sorted(tensors, key=lambda t: t.begin)
    results: list[Result] = []
    whole = np.frombuffer(mapped, np.uint8)
    group: list[SmallTensor] = []
    size = 0
    for tensor in ordered:
        if tensor.end > whole.size:
            raise OSError(f"{path}: tensor bytes end at {tensor.end} but the file has {whole.size}")
        if group and size + tensor.end - tensor.begin > GROUP_BYTES:
            results.extend(_finish_group(mapped, whole, dtype, group))
            group, size = [], 0
        group.append(tensor)
        size += tensor.end - tensor.begin
    if group:
        results.extend(_finish_group(mapped, whole, dtype, group))
    return results


def _finish_group(mapped: mmap.mmap, whole: np.ndarray, dtype: str, group: Sequence[SmallTensor]) -> list[Result]:
    found = _group_stats(whole, dtype, group)
    from weightaudit.stats_schedule import release_pages   # (import cycle: the schedule imports this module)

    release_pages(mapped, group[0].begin, group[-1].end)   # resident memory stays flat over many small tensors
    return found


def _group_stats(whole: np.ndarray, dtype: str, group: Sequence[SmallTensor]) -> list[Result]:
    spec = _SPECS[dtype]
    itemsize = spec.itemsize
    spans = [(t.begin, t.begin + (t.end - t.begin) // itemsize * itemsize) for t in group]
    raw = np.concatenate([whole[b:e] for b, e in spans])
    samples = [zlib.crc32(whole[b:min(e, b + SAMPLE_BYTES)]) for b, e in spans]
    values = _element_decoder(dtype)(raw)  # type: ignore[misc]
    counts = np.fromiter(((e - b) // itemsize for b, e in spans), np.int64, len(spans))
    starts = np.zeros(len(spans), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    seg = _Segments(values, counts, starts, spec.is_float, spec.can_overflow_fp16)
    return [(t.number, part, hist_range) for t, (part, hist_range) in zip(group, seg.partials(samples))]


class _Segments:
    """Per-segment reductions of one decoded array (segment i = values[starts[i] : starts[i] + counts[i]])."""

    def __init__(self, values: np.ndarray, counts: np.ndarray, starts: np.ndarray, is_float: bool,
                 fp16: bool) -> None:
        self.values, self.counts, self.starts = values, counts, starts
        finite = np.isfinite(values) if is_float else None
        self.all_finite = finite is None or bool(finite.all())
        self.finite = finite
        self.fp16 = fp16
        self.segment_of = np.repeat(np.arange(starts.size, dtype=np.intp), counts)   # element -> its tensor

    def _sum(self, flags: np.ndarray) -> np.ndarray:
        return np.add.reduceat(flags.astype(np.int64), self.starts)

    def _per_element(self, per_segment: np.ndarray) -> np.ndarray:
        return per_segment.take(self.segment_of)

    def partials(self, samples: list[int]) -> list[tuple[_Partial, tuple[float, float] | None]]:
        v, starts = self.values, self.starts
        n_seg = starts.size
        if self.all_finite:
            finite_n = self.counts
            nan = pos_inf = neg_inf = np.zeros(n_seg, np.int64)
            low_src, high_src, sum_src = v, v, v
        else:
            finite = self.finite
            finite_n = self._sum(finite)
            nan = self._sum(np.isnan(v))
            pos_inf = self._sum(v == np.inf)
            neg_inf = self._sum(v == -np.inf)
            low_src = np.where(finite, v, np.inf)
            high_src = np.where(finite, v, -np.inf)
            sum_src = np.where(finite, v, 0)
        low = np.minimum.reduceat(low_src, starts).astype(np.float64)
        high = np.maximum.reduceat(high_src, starts).astype(np.float64)
        wide = sum_src.astype(np.float64)
        safe_n = np.maximum(finite_n, 1)
        mean = np.add.reduceat(wide, starts) / safe_n
        centred = wide - self._per_element(mean)
        if not self.all_finite:
            centred[~self.finite] = 0.0
        m2 = np.add.reduceat(centred * centred, starts)
        zeros = self._sum(v == 0)
        magnitude = np.maximum(-low, high)
        overflow = self._sum(np.abs(wide) > FP16_MAX) if self.fp16 else np.zeros(n_seg, np.int64)
        where_max = self._max_abs_positions(wide, magnitude)
        histograms, ranges = self._histograms(low, high, finite_n)
        none = finite_n == 0
        mean[none] = m2[none] = 0.0
        magnitude[none] = -1.0
        where_max[none] = -1
        columns = zip(self.counts.tolist(), finite_n.tolist(), mean.tolist(), m2.tolist(), low.tolist(),
                      high.tolist(), zeros.tolist(), nan.tolist(), pos_inf.tolist(), neg_inf.tolist(),
                      overflow.tolist(), magnitude.tolist(), where_max.tolist(), histograms, samples)
        return [(_Partial(*row[:13], histogram=row[13], samples=[row[14]]), hist_range)
                for row, hist_range in zip(columns, ranges)]

    def _max_abs_positions(self, wide: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        """First index inside each segment where |x| equals the segment's largest finite magnitude."""
        hits = np.abs(wide) == self._per_element(magnitude)
        if not self.all_finite:
            hits &= self.finite
        positions = np.flatnonzero(hits)
        segment_of = np.searchsorted(self.starts, positions, side="right") - 1
        found, first = np.unique(segment_of, return_index=True)
        where = np.full(self.starts.size, -1, np.int64)
        where[found] = positions[first] - self.starts[found]
        return where

    def _histograms(self, low: np.ndarray, high: np.ndarray, finite_n: np.ndarray):
        """16 bins per segment over its finite min..max (widened by 0.5 when constant), as ``_add_histogram``."""
        v = self.values
        n_seg = self.starts.size
        has = finite_n > 0
        lo = np.where(low == high, low - 0.5, low)
        hi = np.where(low == high, high + 0.5, high)
        ranges = [(float(lo[i]), float(hi[i])) if has[i] else None for i in range(n_seg)]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            scale = np.where(has, HISTOGRAM_BINS / np.where(has, hi - lo, 1.0), 0.0)
        positions = v - self._per_element(lo.astype(v.dtype))
        positions *= self._per_element(scale.astype(v.dtype))
        if not self.all_finite:
            positions[~self.finite] = 0
        np.clip(positions, 0, HISTOGRAM_BINS - 1, out=positions)
        bins = positions.astype(np.intp) + self._per_element(np.arange(n_seg, dtype=np.intp) * HISTOGRAM_BINS)
        weights = None if self.all_finite else self.finite.astype(np.float64)
        counts = np.bincount(bins, weights, minlength=n_seg * HISTOGRAM_BINS).astype(np.int64)
        table = counts.reshape(n_seg, HISTOGRAM_BINS)
        return list(table), ranges
