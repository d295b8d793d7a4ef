"""Streaming per-tensor statistics at memory speed, with numpy only.

One pass per tensor. Bytes are cut into fixed 512 KiB *blocks* (L2-sized, at fixed offsets from the tensor's
first byte, whatever chunks the source yields); each block is decoded once into a reused float scratch buffer
and several reductions run on it while it is in cache. Per tensor (``TensorStats``):

- ``count``: elements; ``nan``, ``pos_inf``, ``neg_inf``: exact counts. NaN/Inf cost nothing on clean blocks:
  ``min``/``max`` propagate NaN and show ±Inf, and only a block whose min or max is not finite is counted.
- ``min``, ``max``, ``mean``, ``std`` (population, ddof=0) over the *finite* values; None when there are none.
  Mean and M2 are computed per block (pairwise float sum, then ``dot`` of the centred block) and merged with
  Chan et al.'s pairwise update — never E[x²]−E[x]², which goes negative on LayerNorm-like tensors.
- ``zeros``: exact count of ±0; ``fp16_overflow``: finite values with ``|x| > 65504`` (float dtypes wider than
  F16 only; always 0 for F16/F8 and for integers and BOOL, which are never down-cast to half precision).
- ``max_abs`` and ``max_abs_index``: the largest finite magnitude and its first flat (row-major) index.
- ``fingerprint``: ``"wa1:"`` + 32 hex digits, equal for byte-identical tensors of the same length. Each
  512 KiB block is hashed with an exact multilinear hash (``dot`` of its bytes as uint64 with a fixed table of
  odd constants, mod 2**64, 3x faster than crc32 here) and the ordered block hashes plus the byte length go
  through BLAKE2b-128. It is a duplicate detector, not a cryptographic hash: crafted collisions are easy.
- ``histogram``: 16 bins over ``histogram_range`` = the finite min..max of the tensor's *first block* (so one
  pass suffices); values outside clamp into the end bins. Tensors above 65,536 elements are sampled: every
  ``HISTOGRAM_STRIDE``-th element is counted, so the bins sum to the sample size, not to ``count``.

Dtypes: F64 F32 F16 BF16, F8_E4M3 F8_E5M2 (bit tricks), F8_E4M3FNUZ F8_E5M2FNUZ F8_E8M0 (256-entry table),
I8..I64, U8..U64, BOOL; big-endian bytes are swapped. Integers above 2**53 lose precision in min/max/mean.
Not computed (no entry in the result, i.e. stats None): F4, F6_*, C64/C128 (complex), STRING/OBJECT, quantized.

Reading: a contiguous tensor (``data_offsets`` set, no loader ``iter_chunks``) is read through a read-only
memory map, block by block, and each finished 4 MiB range is dropped with ``madvise(MADV_DONTNEED)`` so
resident memory stays flat (measured faster here than ``readinto`` a reused buffer: the copy costs a pass).
Large contiguous tensors are cut into 64 MiB pieces whose partial results merge exactly, so both cores work
even on one big tensor. Other tensors stream through ``formats.iter_tensor_chunks``.
Work runs on a thread pool: numpy releases the GIL in every reduction used here.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from weightaudit.model import FileStatus, LoadedFile, TensorInfo, TensorStats

__all__ = ["compute_stats", "tensor_stats", "supported_dtype", "FP16_MAX", "HISTOGRAM_BINS"]

log = logging.getLogger(__name__)

BLOCK_BYTES = 512 * 1024          # decode + reduce unit; multiple of 8 and of every item size
PIECE_BYTES = 64 * 1024 * 1024    # contiguous tensors larger than this are split across workers
FP16_MAX = 65504.0
FLOAT32_SAFE_MAGNITUDE = 1e15     # above this a float32 block's moments are computed in float64
HISTOGRAM_BINS = 16
HISTOGRAM_EXACT_LIMIT = 65536     # tensors with more elements get a sampled histogram
HISTOGRAM_STRIDE = 64

# ---------------------------------------------------------------------------------------------------------
# Decoding: raw bytes of one block -> a 1-D float array (float32 or float64) in a scratch buffer.
# ---------------------------------------------------------------------------------------------------------


class _Scratch:
    """Reused per-thread buffers, keyed by (numpy dtype, role); grown on demand, never shrunk."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, str], np.ndarray] = {}

    def get(self, dtype: np.dtype | type, n: int, role: str = "work") -> np.ndarray:
        key = (np.dtype(dtype).str, role)
        buf = self._buffers.get(key)
        if buf is None or buf.size < n:
            buf = np.empty(max(n, BLOCK_BYTES // np.dtype(dtype).itemsize), dtype)
            self._buffers[key] = buf
        return buf[:n]


_local = threading.local()


def _scratch() -> _Scratch:
    found = getattr(_local, "scratch", None)
    if found is None:
        found = _local.scratch = _Scratch()
    return found


def _native_codes(raw: memoryview, code_dtype: str, big_endian: bool, scratch: _Scratch) -> np.ndarray:
    """The block's elements as native unsigned/float codes (a byte-swapped copy when stored big-endian)."""
    stored = np.frombuffer(raw, np.dtype(code_dtype).newbyteorder(">" if big_endian else "<"))
    if not big_endian or stored.dtype.itemsize == 1:
        return stored
    out = scratch.get(np.dtype(code_dtype), stored.size, "swap")
    np.copyto(out, stored)
    return out


@dataclass(frozen=True)
class _SmallFloat:
    """A sign/exponent/mantissa format widened to float32 with integer shifts and one exact multiply.

    The magnitude bits are moved so the mantissa lands in float32's mantissa field; reading that as float32
    and multiplying by 2**(127 - bias) is exact for normals and subnormals alike. Codes beyond ``max_finite``
    after that are the format's Inf/NaN codes, fixed up only in blocks where they occur.
    """

    bits: int
    mantissa_bits: int
    bias: int
    max_finite: float
    has_inf: bool             # IEEE-like: all-ones exponent is Inf (mantissa 0) or NaN
    nan_code: int | None = None   # formats without Inf: the magnitude code meaning NaN (E4M3FN: 0x7F)

    def decode(self, raw: memoryview, big_endian: bool, scratch: _Scratch) -> np.ndarray:
        codes = _native_codes(raw, f"u{self.bits // 8}", big_endian, scratch)
        out = scratch.get(np.uint32, codes.size)
        np.left_shift(codes, 32 - self.bits, out=out, dtype=np.uint32)   # sign bit -> bit 31
        shift = (32 - self.bits) - (23 - self.mantissa_bits)
        if shift:  # BF16 is the top half of float32 already: nothing more to do
            signed = out.view(np.int32)
            np.right_shift(signed, shift, out=signed)                      # arithmetic: copies the sign
            np.bitwise_and(out, np.uint32(0x80000000 | ((1 << (31 - shift)) - 1)), out=out)
        values = out.view(np.float32)
        if self.bias != 127:
            np.multiply(values, np.float32(2.0 ** (127 - self.bias)), out=values)
        return values

    def fix_specials(self, raw: memoryview, big_endian: bool, values: np.ndarray) -> None:
        """Turn the values decoded from Inf/NaN codes (all beyond max_finite) into real Inf/NaN."""
        codes = np.frombuffer(raw, np.dtype(f"u{self.bits // 8}").newbyteorder(">" if big_endian else "<"))
        magnitude = codes & ((1 << (self.bits - 1)) - 1)
        if self.has_inf:
            exponent_all_ones = ((1 << (self.bits - 1 - self.mantissa_bits)) - 1) << self.mantissa_bits
            special = (magnitude & exponent_all_ones) == exponent_all_ones
            is_nan = special & ((magnitude & ((1 << self.mantissa_bits) - 1)) != 0)
            values[special & ~is_nan] = np.copysign(np.float32(np.inf), values[special & ~is_nan])
            values[is_nan] = np.nan
        else:
            values[magnitude == self.nan_code] = np.nan


def _table_fnuz(exponent_bits: int, mantissa_bits: int, bias: int) -> np.ndarray:
    """Float32 values of the 256 codes of an FNUZ fp8 format (no Inf, no -0: code 0x80 is the only NaN)."""
    codes = np.arange(256)
    exponent = (codes >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = codes & ((1 << mantissa_bits) - 1)
    normal = (1.0 + mantissa / (1 << mantissa_bits)) * np.exp2(exponent - bias)
    subnormal = (mantissa / (1 << mantissa_bits)) * np.exp2(1 - bias)
    table = np.where(exponent == 0, subnormal, normal) * np.where(codes & 0x80, -1.0, 1.0)
    table[0x80] = np.nan
    return table.astype(np.float32)


def _table_e8m0() -> np.ndarray:
    """Float32 values of F8_E8M0 (scale) codes: 2**(code - 127), code 0xFF is NaN."""
    with np.errstate(over="ignore"):
        table = np.exp2(np.arange(256, dtype=np.float64) - 127).astype(np.float32)
    table[0xFF] = np.nan
    return table


@dataclass(frozen=True)
class _Table:
    """An 8-bit format decoded through a 256-entry table (slower; used for the rarer fp8 variants)."""

    table: np.ndarray

    def decode(self, raw: memoryview, big_endian: bool, scratch: _Scratch) -> np.ndarray:
        codes = np.frombuffer(raw, np.uint8)
        out = scratch.get(np.float32, codes.size)
        np.take(self.table, codes, out=out)
        return out


@dataclass(frozen=True)
class _Native:
    """A dtype numpy has: viewed in place (native float32/float64) or converted into a float scratch."""

    numpy_dtype: str     # little-endian code, e.g. "<f4", "<i8", "|b1"
    work_dtype: str      # "float32" or "float64"

    def decode(self, raw: memoryview, big_endian: bool, scratch: _Scratch) -> np.ndarray:
        stored_dtype = np.dtype(self.numpy_dtype)
        if big_endian and stored_dtype.itemsize > 1:
            stored_dtype = stored_dtype.newbyteorder(">")
        stored = np.frombuffer(raw, stored_dtype)
        if stored.dtype == np.dtype(self.work_dtype) and stored.dtype.isnative:
            return stored
        out = scratch.get(np.dtype(self.work_dtype), stored.size)
        np.copyto(out, stored, casting="unsafe")
        return out


@dataclass(frozen=True)
class _DtypeSpec:
    itemsize: int
    decoder: "_Native | _SmallFloat | _Table"
    is_float: bool          # NaN/Inf possible; fp16 overflow meaningful when wider than F16
    can_overflow_fp16: bool


_F16 = _SmallFloat(bits=16, mantissa_bits=10, bias=15, max_finite=65504.0, has_inf=True)
_BF16 = _SmallFloat(bits=16, mantissa_bits=7, bias=127, max_finite=float(np.finfo(np.float32).max), has_inf=True)
_E5M2 = _SmallFloat(bits=8, mantissa_bits=2, bias=15, max_finite=57344.0, has_inf=True)
_E4M3 = _SmallFloat(bits=8, mantissa_bits=3, bias=7, max_finite=448.0, has_inf=False, nan_code=0x7F)

_SPECS: dict[str, _DtypeSpec] = {
    "F64": _DtypeSpec(8, _Native("<f8", "float64"), True, True),
    "F32": _DtypeSpec(4, _Native("<f4", "float32"), True, True),
    "F16": _DtypeSpec(2, _F16, True, False),
    "BF16": _DtypeSpec(2, _BF16, True, True),
    "F8_E5M2": _DtypeSpec(1, _E5M2, True, False),
    "F8_E4M3": _DtypeSpec(1, _E4M3, True, False),
    "F8_E4M3FNUZ": _DtypeSpec(1, _Table(_table_fnuz(4, 3, 8)), True, False),
    "F8_E5M2FNUZ": _DtypeSpec(1, _Table(_table_fnuz(5, 2, 16)), True, False),
    "F8_E8M0": _DtypeSpec(1, _Table(_table_e8m0()), True, True),
    "I8": _DtypeSpec(1, _Native("|i1", "float32"), False, False),
    "U8": _DtypeSpec(1, _Native("|u1", "float32"), False, False),
    "BOOL": _DtypeSpec(1, _Native("|u1", "float32"), False, False),
    "I16": _DtypeSpec(2, _Native("<i2", "float32"), False, False),
    "U16": _DtypeSpec(2, _Native("<u2", "float32"), False, False),
    "I32": _DtypeSpec(4, _Native("<i4", "float64"), False, False),
    "U32": _DtypeSpec(4, _Native("<u4", "float64"), False, False),
    "I64": _DtypeSpec(8, _Native("<i8", "float64"), False, False),
    "U64": _DtypeSpec(8, _Native("<u8", "float64"), False, False),
}


def supported_dtype(dtype: str) -> bool:
    """True when statistics can be computed for this dtype code."""
    return dtype in _SPECS


# ---------------------------------------------------------------------------------------------------------
# Fingerprint: exact multilinear hash per block, block hashes chained through BLAKE2b.
# ---------------------------------------------------------------------------------------------------------

_HASH_TABLE = np.random.default_rng(0x5741_3130).integers(0, 2**64, BLOCK_BYTES // 8, dtype=np.uint64, endpoint=False)
_HASH_TABLE |= np.uint64(1)


def _block_hash(raw: memoryview, scratch: _Scratch) -> int:
    """sum(word[i] * table[i]) mod 2**64 over the block's bytes read as little-endian uint64 (zero-padded)."""
    n = len(raw)
    if n % 8:
        padded = scratch.get(np.uint8, (n + 7) // 8 * 8, "pad")
        padded[n:] = 0
        padded[:n] = np.frombuffer(raw, np.uint8)
        words = padded.view("<u8")
    else:
        words = np.frombuffer(raw, "<u8")
    return int(np.dot(words, _HASH_TABLE[: words.size]))


def _fingerprint(nbytes: int, block_hashes: Sequence[int]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(nbytes.to_bytes(8, "little"))
    digest.update(np.asarray(block_hashes, dtype="<u8").tobytes())
    return "wa1:" + digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Mergeable partial results.
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Partial:
    """Statistics of a contiguous run of elements; two runs merge exactly (Chan et al. for mean/M2)."""

    count: int = 0
    finite: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    zeros: int = 0
    nan: int = 0
    pos_inf: int = 0
    neg_inf: int = 0
    fp16_overflow: int = 0
    max_abs: float = -1.0
    max_abs_index: int = -1
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(HISTOGRAM_BINS, np.int64))
    block_hashes: list[int] = field(default_factory=list)

    def add_moments(self, n: int, mean: float, m2: float) -> None:
        if n == 0:
            return
        total = self.finite + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.finite * n / total
        self.finite = total

    def merge(self, later: "_Partial") -> None:
        """Append the statistics of the run that directly follows this one."""
        self.add_moments(later.finite, later.mean, later.m2)
        self.count += later.count
        self.min = min(self.min, later.min)
        self.max = max(self.max, later.max)
        self.zeros += later.zeros
        self.nan += later.nan
        self.pos_inf += later.pos_inf
        self.neg_inf += later.neg_inf
        self.fp16_overflow += later.fp16_overflow
        if later.max_abs > self.max_abs:
            self.max_abs, self.max_abs_index = later.max_abs, later.max_abs_index
        self.histogram += later.histogram
        self.block_hashes.extend(later.block_hashes)

    def result(self, nbytes: int, histogram_range: tuple[float, float] | None) -> TensorStats:
        finite = self.finite > 0
        return TensorStats(
            count=self.count,
            min=self.min if finite else None,
            max=self.max if finite else None,
            mean=self.mean if finite else None,
            std=math.sqrt(max(self.m2, 0.0) / self.finite) if finite else None,
            zeros=self.zeros,
            nan=self.nan,
            pos_inf=self.pos_inf,
            neg_inf=self.neg_inf,
            fp16_overflow=self.fp16_overflow,
            max_abs=self.max_abs if finite else None,
            max_abs_index=self.max_abs_index if finite else None,
            fingerprint=_fingerprint(nbytes, self.block_hashes),
            histogram=tuple(int(c) for c in self.histogram) if histogram_range else (),
            histogram_range=histogram_range,
        )


# ---------------------------------------------------------------------------------------------------------
# The per-block kernel.
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TensorPlan:
    """What every block of one tensor needs to know."""

    spec: _DtypeSpec
    big_endian: bool
    histogram_stride: int
    histogram_range: tuple[float, float] | None


def _decode(plan: _TensorPlan, raw: memoryview, scratch: _Scratch) -> np.ndarray:
    return plan.spec.decoder.decode(raw, plan.big_endian, scratch)


def _finite_extremes(values: np.ndarray) -> tuple[float, float] | None:
    """Finite min and max of an array (None when it has no finite value); used once per tensor."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def _histogram_range(plan_spec: _DtypeSpec, big_endian: bool, first_block: memoryview) -> tuple[float, float] | None:
    values = plan_spec.decoder.decode(first_block, big_endian, _scratch())
    decoder = plan_spec.decoder
    if isinstance(decoder, _SmallFloat):
        values = values.copy()
        decoder.fix_specials(first_block, big_endian, values)
    extremes = _finite_extremes(values)
    if extremes is None:
        return None
    lo, hi = extremes
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _process_block(plan: _TensorPlan, raw: memoryview, first_index: int, part: _Partial, scratch: _Scratch) -> None:
    """Fold one block (whole elements) into ``part``; ``first_index`` is its first element's flat index."""
    part.block_hashes.append(_block_hash(raw, scratch))
    values = _decode(plan, raw, scratch)
    n = values.size
    part.count += n
    if n == 0:
        return
    low = float(np.minimum.reduce(values))
    high = float(np.maximum.reduce(values))
    decoder = plan.spec.decoder
    if isinstance(decoder, _SmallFloat) and (high > decoder.max_finite or low < -decoder.max_finite):
        decoder.fix_specials(raw, plan.big_endian, values)
        low = high = math.nan  # the block holds Inf/NaN codes: take the slow path below
    index_of: np.ndarray | None = None
    if not (math.isfinite(low) and math.isfinite(high)):
        values, index_of, low, high = _drop_non_finite(values, part)
        if values.size == 0:
            return
    _fold_finite(plan, values, low, high, first_index, index_of, part, scratch)


def _drop_non_finite(values: np.ndarray, part: _Partial) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Slow path for a block holding NaN/Inf: count them and keep the finite values (with their indices)."""
    part.nan += int(np.count_nonzero(np.isnan(values)))
    part.pos_inf += int(np.count_nonzero(values == np.inf))
    part.neg_inf += int(np.count_nonzero(values == -np.inf))
    keep = np.flatnonzero(np.isfinite(values))
    finite = values[keep]
    if finite.size == 0:
        return finite, keep, math.nan, math.nan
    return finite, keep, float(finite.min()), float(finite.max())


def _fold_finite(
    plan: _TensorPlan,
    values: np.ndarray,
    low: float,
    high: float,
    first_index: int,
    index_of: np.ndarray | None,
    part: _Partial,
    scratch: _Scratch,
) -> None:
    n = values.size
    part.min = min(part.min, low)
    part.max = max(part.max, high)
    magnitude = max(-low, high)
    part.add_moments(n, *_block_moments(values, magnitude, scratch))
    if low <= 0.0 <= high:
        flags = scratch.get(np.bool_, n, "flags")
        part.zeros += int(np.count_nonzero(np.equal(values, 0, out=flags)))
    if plan.spec.can_overflow_fp16 and magnitude > FP16_MAX:
        part.fp16_overflow += int(np.count_nonzero(np.abs(values) > FP16_MAX))
    if magnitude > part.max_abs:
        local = int(np.argmax(values)) if high >= -low else int(np.argmin(values))
        if index_of is not None:
            local = int(index_of[local])
        part.max_abs, part.max_abs_index = magnitude, first_index + local
    if plan.histogram_range is not None:
        _add_histogram(plan, values, first_index, index_of, part, scratch)


def _block_moments(values: np.ndarray, magnitude: float, scratch: _Scratch) -> tuple[float, float]:
    """Mean and M2 (sum of squared deviations) of one block, from shifted sums.

    With shift c: S1 = sum(x - c), S2 = sum((x - c)^2), mean = c + S1/n, M2 = S2 - S1^2/n. The cancellation in
    the last step costs a factor E[(x-c)^2]/var in relative precision, so c = 0 (two ``einsum`` calls, no extra
    pass) is only kept when the block mean is small against its spread (mean^2 <= E[x^2]/4, factor <= 4/3);
    otherwise the block is centred on its own mean first (factor ~1). The textbook E[x^2] - E[x]^2 without
    that guard is what turns LayerNorm weights (mean 1, std 1e-4) into negative variances.
    Blocks whose squares could overflow float32 are done in float64. ``einsum`` (numpy's own SIMD loops) rather
    than ``dot``: OpenBLAS threads its dot above 10k elements and those threads spin against our workers.
    """
    if values.dtype == np.float32 and magnitude > FLOAT32_SAFE_MAGNITUDE:
        values = values.astype(np.float64)
    n = values.size
    s1 = float(np.einsum("i->", values))
    s2 = float(np.einsum("i,i->", values, values))
    if s1 * s1 <= 0.25 * s2 * n:
        return s1 / n, max(s2 - s1 * s1 / n, 0.0)
    shift = values.dtype.type(s1 / n)
    centred = scratch.get(values.dtype, n, "centred")
    np.subtract(values, shift, out=centred)
    t1 = float(np.einsum("i->", centred))
    t2 = float(np.einsum("i,i->", centred, centred))
    return float(shift) + t1 / n, max(t2 - t1 * t1 / n, 0.0)


def _add_histogram(
    plan: _TensorPlan, values: np.ndarray, first_index: int, index_of: np.ndarray | None,
    part: _Partial, scratch: _Scratch,
) -> None:
    stride = plan.histogram_stride
    if stride == 1:
        sample = values
    elif index_of is None:
        sample = values[(-first_index) % stride::stride]
    else:  # finite values of a bad block: keep those whose original flat index is on the sampling grid
        sample = values[(first_index + index_of) % stride == 0]
    if sample.size == 0:
        return
    lo, hi = plan.histogram_range  # type: ignore[misc]
    positions = scratch.get(values.dtype, sample.size, "histogram")
    np.subtract(sample, lo, out=positions)
    np.multiply(positions, HISTOGRAM_BINS / (hi - lo), out=positions)
    np.clip(positions, 0, HISTOGRAM_BINS - 1, out=positions)
    part.histogram += np.bincount(positions.astype(np.intp), minlength=HISTOGRAM_BINS)[:HISTOGRAM_BINS]


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


def _mapped_blocks(path: Path, begin: int, end: int, release_every: int) -> Iterator[memoryview]:
    """Blocks of ``[begin, end)`` of a file, from a read-only map; finished pages are released as we go."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if end > size:
            raise OSError(f"{path}: tensor bytes end at {end} but the file has {size}")
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
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
    finally:
        try:
            mapped.close()
        except BufferError:  # a caller still holds a view: the map closes when that view is collected
            pass


# ---------------------------------------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------------------------------------


def _plan(spec: _DtypeSpec, count: int, big_endian: bool, first_block: memoryview | None) -> _TensorPlan:
    histogram_range = None
    if first_block is not None and len(first_block) >= spec.itemsize:
        histogram_range = _histogram_range(spec, big_endian, first_block)
    stride = 1 if count <= HISTOGRAM_EXACT_LIMIT else HISTOGRAM_STRIDE
    return _TensorPlan(spec, big_endian, stride, histogram_range)


def _run_blocks(plan: _TensorPlan, blocks: Iterable[memoryview], first_element: int) -> _Partial:
    part = _Partial()
    scratch = _scratch()
    index = first_element
    itemsize = plan.spec.itemsize
    for raw in blocks:
        usable = len(raw) - len(raw) % itemsize
        _process_block(plan, raw[:usable], index, part, scratch)
        index += usable // itemsize
    return part


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
        return _Partial().result(0, None)
    first = memoryview(bytes(first))  # _reblock reuses its carry buffer: keep our own copy of block 0
    second = next(blocks, None)
    if count is None:
        count = len(first) // spec.itemsize if second is None else HISTOGRAM_EXACT_LIMIT + 1
    plan = _plan(spec, count, big_endian, first)
    rest: Iterable[memoryview] = () if second is None else itertools.chain((second,), blocks)
    part = _run_blocks(plan, itertools.chain((first,), rest), 0)
    return part.result(part.count * spec.itemsize, plan.histogram_range)


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

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


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


def _pieces(root: Path, files: Sequence[LoadedFile]) -> list[_Piece]:
    """Split every tensor with a supported dtype into work pieces, largest first."""
    pieces: list[_Piece] = []
    for loaded in files:
        if loaded.status != FileStatus.OK:
            continue
        streams_itself = _streams_itself(loaded.format)
        for tensor in loaded.tensors:
            if tensor.dtype not in _SPECS:
                continue
            path = root / tensor.file
            if tensor.data_offsets is None or streams_itself:
                size = tensor.nbytes or 0
                pieces.append(_Piece(tensor.key, path, loaded.format, tensor, 0, size, mapped=False))
                continue
            begin, end = tensor.data_offsets
            starts = range(begin, end, PIECE_BYTES) if end > begin else [begin]
            for start in starts:
                pieces.append(_Piece(tensor.key, path, loaded.format, tensor, start, min(start + PIECE_BYTES, end), True))
    pieces.sort(key=lambda piece: piece.nbytes, reverse=True)
    return pieces


def _run_piece(piece: _Piece, chunk_bytes: int) -> tuple[_Partial, tuple[float, float] | None]:
    """Statistics of one piece (runs on a worker thread)."""
    tensor = piece.tensor
    spec = _SPECS[tensor.dtype]
    big_endian = tensor.byte_order == "big"
    if not piece.mapped:
        from weightaudit.formats import iter_tensor_chunks

        chunks = iter_tensor_chunks(piece.path, piece.fmt, tensor, chunk_bytes)
        stats_part, plan = _stream_whole(chunks, spec, big_endian, tensor.parameter_count)
        return stats_part, plan.histogram_range
    tensor_begin = tensor.data_offsets[0]  # type: ignore[index]
    first_end = min(tensor_begin + BLOCK_BYTES, tensor.data_offsets[1])  # type: ignore[index]
    first_copy = memoryview(_read_range(piece.path, tensor_begin, first_end)) if first_end > tensor_begin else None
    plan = _plan(spec, tensor.parameter_count, big_endian, first_copy)
    blocks = _mapped_blocks(piece.path, piece.begin, piece.end, max(chunk_bytes, mmap.PAGESIZE))
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


def compute_stats(
    root: Path,
    files: Sequence[LoadedFile],
    *,
    workers: int | None = None,
    chunk_bytes: int = 4 * 1024 * 1024,
    on_progress: Callable[[int], None] | None = None,
) -> dict[tuple[str, str], TensorStats]:
    """Statistics of every tensor with a supported dtype in the files that loaded OK, keyed by ``TensorInfo.key``.

    ``workers`` threads share the pieces (default: the number of CPUs). ``chunk_bytes`` is the read size of
    streamed tensors and how often mapped pages are released. ``on_progress(bytes_done)`` is called on the
    calling thread as pieces finish. A tensor whose bytes cannot be read is left out (and logged).
    """
    pieces = _pieces(Path(root), files)
    dtypes = {piece.key: piece.tensor.dtype for piece in pieces}
    workers = max(1, workers or os.cpu_count() or 1)
    done: dict[tuple[str, str], list[tuple[int, _Partial, tuple[float, float] | None]]] = {}
    failed: set[tuple[str, str]] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wa-stats") as pool:
        futures = {pool.submit(_run_piece, piece, chunk_bytes): piece for piece in pieces}
        for future in as_completed(futures):
            piece = futures[future]
            try:
                part, histogram_range = future.result()
            except Exception as exc:  # noqa: BLE001 - one unreadable tensor must not stop the audit
                if piece.key not in failed:
                    log.warning("%s: statistics of tensor %r skipped: %s", piece.tensor.file, piece.tensor.name, exc)
                failed.add(piece.key)
            else:
                done.setdefault(piece.key, []).append((piece.begin, part, histogram_range))
            if on_progress is not None:
                on_progress(piece.nbytes)
    results: dict[tuple[str, str], TensorStats] = {}
    for key, parts in done.items():
        if key in failed:
            continue
        parts.sort(key=lambda item: item[0])
        merged = parts[0][1]
        for _, later, _ in parts[1:]:
            merged.merge(later)
        itemsize = _SPECS[dtypes[key]].itemsize
        results[key] = merged.result(merged.count * itemsize, parts[0][2])
    return results
