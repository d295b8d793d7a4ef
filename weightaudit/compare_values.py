"""Element-wise comparison of two tensors, block by block: decoding (the statistics engine's decoders, stats.py)
and the running sums behind max |a-b|, relative L2 and cosine similarity.

Work precision: float32 when every value of both dtypes is exact in float32 (F32, F16, BF16, FP8, 8/16-bit
integers), else float64. Per-block sums are pairwise (``np.add.reduce``, never BLAS ``dot``: a threaded BLAS on a
busy machine was 100x slower here) in float64 and carried across blocks as Python floats.

Two tensors of the same dtype are decoded in the decoder's own lane order (identical on both sides, and no sum,
maximum or count depends on order); different dtypes are decoded back into element order first.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["decodable", "decode_block", "work_dtype", "Accumulator"]

_FLOAT32_EXACT = frozenset({"F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0",
                            "I8", "U8", "BOOL", "I16", "U16"})
_F32_MAX = float(np.finfo(np.float32).max)


def decodable(dtype: str) -> bool:
    from weightaudit.stats import supported_dtype

    return supported_dtype(dtype)


def work_dtype(dtype_a: str, dtype_b: str) -> np.dtype:
    both_exact = dtype_a in _FLOAT32_EXACT and dtype_b in _FLOAT32_EXACT
    return np.dtype(np.float32 if both_exact else np.float64)


def decode_block(raw: memoryview, dtype: str, work: np.dtype = np.dtype(np.float64),
                 element_order: bool = True) -> np.ndarray:
    """Little-endian raw bytes of whole elements -> a fresh 1-D array of ``work`` values (element order unless
    ``element_order`` is False: then the decoder's lane order, the same for every block of the same length)."""
    from weightaudit.stats import _SPECS, _scratch

    spec = _SPECS[dtype]
    scratch = _scratch()
    values, lanes = spec.decoder.decode(raw, False, scratch)
    max_finite = getattr(spec.decoder, "max_finite", None)
    if max_finite is not None and max_finite < _F32_MAX and values.size and \
            not np.all(np.abs(values) <= max_finite):      # Inf/NaN codes of F16/FP8 decode as large finite values
        spec.decoder.fix_specials(raw, False, values, scratch)
    if lanes > 1 and element_order:
        values = values.reshape(lanes, -1).T
    return np.array(values, dtype=work, copy=True).reshape(-1)


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
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            finite = np.isfinite(a) & np.isfinite(b)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            mismatched = int(np.count_nonzero(~same & ~finite))
            self.nonfinite += mismatched
            self.differing += mismatched
            a, b = a[finite], b[finite]
        if not a.size:
            return
        delta = np.subtract(a, b)
        self.differing += int(np.count_nonzero(delta))     # IEEE with subnormals: a - b == 0 only when a == b
        np.abs(delta, out=delta)                            # |a-b|: its square is (a-b)^2 as well
        self.max_abs = max(self.max_abs, float(np.maximum.reduce(delta)))
        scratch = np.empty_like(a)
        self.diff_sq += float(np.add.reduce(np.multiply(delta, delta, out=scratch), dtype=np.float64))
        self.a_sq += float(np.add.reduce(np.multiply(a, a, out=scratch), dtype=np.float64))
        self.b_sq += float(np.add.reduce(np.multiply(b, b, out=scratch), dtype=np.float64))
        self.dot += float(np.add.reduce(np.multiply(a, b, out=scratch), dtype=np.float64))

    def result(self):
        from weightaudit.compare import ValueDiff

        max_abs = math.inf if self.nonfinite else self.max_abs
        if self.a_sq > 0:
            rel_l2 = math.sqrt(self.diff_sq) / math.sqrt(self.a_sq)
        else:
            rel_l2 = 0.0 if self.diff_sq == 0 else math.inf
        if self.a_sq > 0 and self.b_sq > 0:
            cosine = min(1.0, max(-1.0, self.dot / (math.sqrt(self.a_sq) * math.sqrt(self.b_sq))))
        else:
            cosine = 1.0 if self.a_sq == self.b_sq else 0.0
        return ValueDiff(max_abs, rel_l2, cosine, self.differing, self.nonfinite)
