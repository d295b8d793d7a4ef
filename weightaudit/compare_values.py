"""Element-wise comparison of two tensors, block by block: decoding to float64 in element order and the running
sums behind max |a-b|, relative L2 and cosine similarity. Decoders are the statistics engine's (stats.py)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["decodable", "decode_block", "Accumulator"]


def decodable(dtype: str) -> bool:
    from weightaudit.stats import supported_dtype

    return supported_dtype(dtype)


def decode_block(raw: memoryview, dtype: str) -> np.ndarray:
    """Little-endian raw bytes of whole elements -> float64 values in element order (a fresh array)."""
    from weightaudit.stats import _SPECS, _scratch

    spec = _SPECS[dtype]
    scratch = _scratch()
    values, lanes = spec.decoder.decode(raw, False, scratch)
    fix = getattr(spec.decoder, "fix_specials", None)
    if fix is not None and values.size and not np.all(np.abs(values) <= spec.decoder.max_finite):
        fix(raw, False, values, scratch)
    if lanes > 1:   # the decoder lists lane 0 of every word, then lane 1...: back to element order
        values = values.reshape(lanes, -1).T
    return values.astype(np.float64).reshape(-1)


class Accumulator:
    """Running sums over aligned blocks; NaN equals NaN and Inf equals the same Inf (same stored value)."""

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.diff_sq = self.a_sq = self.b_sq = self.dot = 0.0
        self.differing = 0
        self.nonfinite = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if a.shape != b.shape:
            raise ValueError("blocks of different lengths")
        finite = np.isfinite(a) & np.isfinite(b)
        if not finite.all():
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            self.nonfinite += int(np.count_nonzero(~same & ~finite))
            self.differing += int(np.count_nonzero(~same & ~finite))
            a, b = a[finite], b[finite]
        delta = a - b
        self.differing += int(np.count_nonzero(delta))
        if delta.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(delta))))
        self.diff_sq += float(np.dot(delta, delta))
        self.a_sq += float(np.dot(a, a))
        self.b_sq += float(np.dot(b, b))
        self.dot += float(np.dot(a, b))

    def result(self):
        from weightaudit.compare import ValueDiff

        max_abs = math.inf if self.nonfinite else self.max_abs
        if self.a_sq > 0:
            rel_l2 = math.sqrt(self.diff_sq) / math.sqrt(self.a_sq)
        else:
            rel_l2 = 0.0 if self.diff_sq == 0 else math.inf
        if self.a_sq > 0 and self.b_sq > 0:
            cosine = self.dot / (math.sqrt(self.a_sq) * math.sqrt(self.b_sq))
        else:
            cosine = 1.0 if self.a_sq == self.b_sq else 0.0
        return ValueDiff(max_abs, rel_l2, cosine, self.differing, self.nonfinite)
