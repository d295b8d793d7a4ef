"""The per-block statistics kernel and its mergeable partial result (see ``weightaudit.stats``).

One block of whole elements is folded into a ``_Partial``; partials of consecutive runs merge exactly
(Chan et al. for mean/M2). The fingerprint signature is gathered here too.

Two kernels fold the blocks, chosen at import (``kernel_name()``, the JSON ``tool.statistics_kernel``):

- **C** (``weightaudit/_kernel.c``, built by setup.py as an *optional* extension): one pass per block over the
  raw codes (the same integer extremes, float32 lane sums flushed to float64, the same shift guard and Chan
  merge), the rare passes (zeros, fp16 overflow, re-centring, max-|x| search, sampled histogram) only where
  needed, GIL released. Its AVX-512 / AVX2 loops are picked at run time on the running CPU (never
  ``-march=native``). ``C_DTYPES`` (F32 BF16 F16 F8_E5M2 F8_E4M3), little-endian (or 1-byte); results equal
  this module's numpy kernel (tests/test_stats_kernel_c.py): counts, min/max, max |x| and its position,
  histogram and fingerprint exactly, mean/std within float tolerance. Measured in-cache per 256 KiB block:
  ~7 / 10 / 13 / 55-60 us (F32 / BF16 / F16 / F8) against ~37 / 73 / 121 / 550-870 us for numpy, whose ~6
  passes cannot be fused. It folds F64 and the integers too (tested equal) but element by element, slower than numpy.
- **numpy** (below): always there (no compiler needed), and for big-endian, table-decoded fp8, F64 and integer
  tensors.
  ``WEIGHTAUDIT_KERNEL=numpy`` forces it; ``c-avx512`` / ``c-avx2`` / ``c-generic`` force a C variant (the
  baseline ``c-generic`` loop is slower than numpy for BF16/F16, so it is never picked by itself).
  After editing the C sources of an editable install, rebuild: ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import zlib
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from weightaudit.model import TensorStats

from weightaudit.stats_decode import (BLOCK_BYTES, FP16_MAX, HISTOGRAM_BINS, HISTOGRAM_BLOCK_EVERY, HISTOGRAM_EXACT_LIMIT,
    HISTOGRAM_STRIDE, FLOAT32_SAFE_MAGNITUDE, _SPECS, _DtypeSpec, _Scratch, _SignMagnitude, _SmallFloat, _scratch)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------
# Fingerprint: a cheap signature during the pass, confirmed by a full hash when two signatures collide.
# ---------------------------------------------------------------------------------------------------------

HISTOGRAM_MIN_SPREAD = 1e-30    # narrower first-block ranges are widened as a constant block's (by 0.5 each way)
SAMPLE_BYTES = 256                # bytes of each block that go into the signature verbatim (as crc32)
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
    return int(np.einsum("i,i->", words, _HASH_TABLE[: words.size]))  # uint64 arithmetic wraps mod 2**64


def _full_digest(blocks: Iterable[memoryview]) -> bytes:
    """Hash of every byte: exact multilinear hash per block, block hashes chained through BLAKE2b."""
    digest = hashlib.blake2b(digest_size=16)
    scratch = _scratch()
    for raw in blocks:
        digest.update(len(raw).to_bytes(4, "little") + _block_hash(raw, scratch).to_bytes(8, "little"))
    return digest.digest()


def _fingerprint(signature: bytes, full_digest: bytes = b"") -> str:
    return "wa1:" + hashlib.blake2b(signature + full_digest, digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Mergeable partial results.
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# Which kernel folds the blocks: the compiled one (weightaudit/_kernel.c, optional at install) or numpy.
# ---------------------------------------------------------------------------------------------------------

KERNEL_ENV = "WEIGHTAUDIT_KERNEL"   # "numpy", "c", "c-avx512", "c-avx2", "c-generic"; unset/"auto": best available
_C = None                           # the weightaudit._kernel module when the C kernel is in use
_C_DTYPES: dict[int, str] = {}      # id(_DtypeSpec) -> dtype code the C kernel folds
# The dtypes the C kernel takes by default: its vectorised ones. It folds the integers and F64 too (tested equal),
# but element by element, and there numpy was faster (CPU us per 256 KiB block: I8 977 vs 170, F64 253 vs 37).
C_DTYPES = ("F32", "BF16", "F16", "F8_E5M2", "F8_E4M3")


def _compiled_kernel():  # noqa: ANN202 - an extension module, or None
    try:
        from weightaudit import _kernel
    except ImportError:   # built without a compiler (setup.py: optional extension)
        return None
    return _kernel


def select_kernel(choice: str = "auto") -> str:
    """Use the kernel ``choice`` names (see ``KERNEL_ENV``); an unknown or unusable choice keeps the best
    available one, with a warning. Returns ``kernel_name()``. Forked workers inherit the choice."""
    global _C
    choice = (choice or "auto").strip().lower()
    compiled = None if choice == "numpy" else _compiled_kernel()
    if compiled is not None and choice in ("auto", "") and compiled.variants() == ("generic",):
        compiled = None   # the baseline (non-AVX2) loop measured slower than numpy for BF16/F16: ask for "c-generic"
    if compiled is not None:
        variants = compiled.variants()
        wanted = choice[2:] if choice.startswith("c-") else variants[0]
        if wanted not in variants:
            log.warning("%s=%s: not available here (usable: %s); using %s", KERNEL_ENV, choice,
                        ", ".join(f"c-{name}" for name in variants) or "none", f"c-{variants[0]}")
            wanted = variants[0]
        compiled.select(wanted)
        _C_DTYPES.clear()
        _C_DTYPES.update({id(_SPECS[name]): name for name in compiled.dtypes() if name in C_DTYPES})
    elif choice not in ("numpy", "auto", ""):
        log.warning("%s=%s: the C kernel is not built here; using numpy", KERNEL_ENV, choice)
    _C = compiled
    return kernel_name()


def kernel_name() -> str:
    """The statistics kernel in use: "c-avx512", "c-avx2", "c-generic" (compiled) or "numpy" (no compiler)."""
    return "numpy" if _C is None else f"c-{_C.selected()}"


select_kernel(os.environ.get(KERNEL_ENV, "auto"))


def _int_tuple(counts: "np.ndarray | tuple[int, ...]") -> tuple[int, ...]:
    return counts if isinstance(counts, tuple) else tuple(counts.tolist())


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
    samples: list[int] = field(default_factory=list)   # crc32 of the first SAMPLE_BYTES of each block

    def __getstate__(self) -> dict:
        """Pickled (worker -> parent) with the histogram as a tuple: cheaper than a numpy array per tensor."""
        state = dict(self.__dict__)
        state["histogram"] = tuple(np.asarray(self.histogram).tolist())
        return state

    def __setstate__(self, state: dict) -> None:   # the histogram stays a tuple until a merge adds to it
        self.__dict__.update(state)

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
        self.histogram = np.add(self.histogram, later.histogram, dtype=np.int64)
        self.samples.extend(later.samples)

    def signature(self, nbytes: int) -> bytes:
        """Order-independent, exactly computed facts about the bytes: equal for byte-identical tensors on any
        machine (unlike mean/std, whose last bits depend on the summation order)."""
        facts = (nbytes, self.count, self.min + 0.0, self.max + 0.0, self.zeros, self.nan, self.pos_inf,
                 self.neg_inf, self.max_abs_index)
        return repr(facts).encode() + np.asarray(self.samples, dtype="<u4").tobytes()

    def result(self, fingerprint: str, histogram_range: tuple[float, float] | None) -> TensorStats:
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
            fingerprint=fingerprint,
            histogram=_int_tuple(self.histogram) if histogram_range else (),
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
    codes: _SignMagnitude | None = None   # the integer-code fast path, when it applies (see ``_plan``)
    c_dtype: str | None = None            # the C kernel folds this tensor's blocks (little-endian or 1-byte)

    @property
    def special_limit(self) -> float | None:
        """Decoded magnitudes beyond this are Inf/NaN codes still to be fixed up (bit-trick decoders only)."""
        decoder = self.spec.decoder
        return decoder.max_finite if isinstance(decoder, _SmallFloat) else None


@dataclass(frozen=True)
class _Positions:
    """Maps an element of the array the kernel sees back to its flat index in the tensor."""

    first_index: int                 # flat index of the block's first element
    decoded_size: int                # elements in the decoded block
    lanes: int = 1                   # decoded lane by lane (see _top_aligned)
    kept: np.ndarray | None = None   # the block had NaN/Inf: indices (in decoded order) of the finite values

    def first_natural(self, local: np.ndarray) -> int:
        """The smallest tensor index among these positions of the kernel's array."""
        if self.kept is not None:
            local = self.kept[local]
        if self.lanes > 1:
            words = self.decoded_size // self.lanes
            local = (local % words) * self.lanes + local // words
        return self.first_index + int(local.min())


def _finite_extremes(values: np.ndarray) -> tuple[float, float] | None:
    """Finite min and max of an array (None when it has no finite value); used once per tensor."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def _histogram_range(spec: _DtypeSpec, big_endian: bool, first_block: memoryview,
                     c_dtype: str | None = None) -> tuple[float, float] | None:
    """The histogram's range: the finite min..max of the tensor's first block (widened when constant).
    ``c_dtype``: the C kernel reads a clean block's extremes (same values, ~4x less time per tensor)."""
    found = None
    # Whole elements only: a truncated tensor's partial last element made the integer decoders raise.
    first_block = first_block[:len(first_block) - len(first_block) % spec.itemsize]
    if c_dtype is not None:
        found = _C.extremes(c_dtype, first_block)  # type: ignore[union-attr]
    if found is None and spec.codes is not None and (not big_endian or spec.itemsize == 1):  # finite: 4 reductions
        found = spec.codes.extremes(first_block)
    if found is not None:
        extremes: tuple[float, float] | None = found[:2]
    else:
        scratch = _scratch()
        values, _ = spec.decoder.decode(first_block, big_endian, scratch)
        values = values.copy()
        if isinstance(spec.decoder, _SmallFloat):
            spec.decoder.fix_specials(first_block, big_endian, values, scratch)
        extremes = _finite_extremes(values)
    if extremes is None:
        return None
    lo, hi = extremes
    if hi - lo < HISTOGRAM_MIN_SPREAD:   # constant, or so narrow (subnormals) that 16 / (hi - lo) overflows float32
        lo, hi = lo - 0.5, hi + 0.5
        if lo == hi:   # |value| >= 2**53: the 0.5 vanished (the bin width divided by zero)
            lo, hi = lo - abs(lo) * 2.0**-20, hi + abs(hi) * 2.0**-20
    return lo, hi


def _process_block(plan: _TensorPlan, raw: memoryview, first_index: int, part: _Partial, scratch: _Scratch) -> None:
    """Fold one block (whole elements) into ``part``; ``first_index`` is its first element's flat index."""
    part.samples.append(zlib.crc32(raw[:SAMPLE_BYTES]))
    decoder = plan.spec.decoder
    if plan.codes is not None:
        extremes = plan.codes.extremes(raw)
        if extremes is not None:  # the common case: finite values only, min/max already known
            values, lanes = decoder.decode(raw, False, scratch)
            part.count += values.size
            low, high, maybe_zero = extremes
            _fold_finite(plan, values, low, high, (first_index, values.size, lanes, None), part, scratch, maybe_zero)
            return
    values, lanes = decoder.decode(raw, plan.big_endian, scratch)
    n = values.size
    part.count += n
    if n == 0:
        return
    low = float(np.minimum.reduce(values))
    high = float(np.maximum.reduce(values))
    limit = plan.special_limit
    if limit is not None and (high > limit or low < -limit):
        decoder.fix_specials(raw, plan.big_endian, values, scratch)  # type: ignore[union-attr]
        low = high = math.nan  # the block holds Inf/NaN codes: take the slow path below
    kept: np.ndarray | None = None
    if not (math.isfinite(low) and math.isfinite(high)):
        values, kept, low, high = _drop_non_finite(values, part)
        if values.size == 0:
            return
    _fold_finite(plan, values, low, high, (first_index, n, lanes, kept), part, scratch)


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
    plan: _TensorPlan, values: np.ndarray, low: float, high: float,
    where: tuple[int, int, int, np.ndarray | None], part: _Partial, scratch: _Scratch, maybe_zero: bool = True,
) -> None:
    """Fold the finite values of a block (``low``/``high`` are their min/max) into ``part``.

    ``maybe_zero`` False: the caller knows the block holds no ±0 (see ``_SignMagnitude``), so none are counted.
    """
    n = values.size
    part.min = min(part.min, low)
    part.max = max(part.max, high)
    magnitude = max(-low, high)
    part.add_moments(n, *_block_moments(values, magnitude, scratch))
    if maybe_zero and low <= 0.0 <= high:
        flags = scratch.get(np.bool_, n, "flags")
        part.zeros += int(np.count_nonzero(np.equal(values, 0, out=flags)))
    if plan.spec.can_overflow_fp16 and magnitude > FP16_MAX:
        part.fp16_overflow += int(np.count_nonzero(np.abs(values) > FP16_MAX))
    if magnitude > part.max_abs:  # a new largest |x| (rare after the first blocks): its first position
        if high != magnitude:         # one comparison pass instead of abs + comparison where one side wins
            candidates = np.flatnonzero(values == low)
        elif -low != magnitude:
            candidates = np.flatnonzero(values == high)
        else:
            candidates = np.flatnonzero(np.abs(values) == magnitude)
        part.max_abs, part.max_abs_index = magnitude, _Positions(*where).first_natural(candidates)
    if plan.histogram_range is not None:
        _add_histogram(plan, values, where[0], part, scratch)


def _block_moments(values: np.ndarray, magnitude: float, scratch: _Scratch) -> tuple[float, float]:
    """Mean and M2 (sum of squared deviations) of one block, from shifted sums.

    With shift c: S1 = sum(x - c), S2 = sum((x - c)^2), mean = c + S1/n, M2 = S2 - S1^2/n. The cancellation in
    the last step costs a factor E[(x-c)^2]/var in relative precision, so c = 0 (two reductions, no extra
    pass) is only kept when the block mean is small against its spread (mean^2 <= E[x^2]/4, factor <= 4/3);
    otherwise the block is centred on its own mean first (factor ~1). The textbook E[x^2] - E[x]^2 without
    that guard is what turns LayerNorm weights (mean 1, std 1e-4) into negative variances.
    Blocks whose squares could overflow float32 are done in float64. ``np.vecdot``/``einsum`` rather than
    ``np.dot``: OpenBLAS threads its dot above 10k elements and those threads spin against our workers
    (measured: 2x the CPU time); ``vecdot`` is single-threaded and twice as fast as ``einsum`` here.
    """
    if values.dtype == np.float32 and magnitude > FLOAT32_SAFE_MAGNITUDE:
        values = values.astype(np.float64)
    n = values.size
    s1 = float(np.einsum("i->", values))
    s2 = float(np.vecdot(values, values))
    if s1 * s1 <= 0.25 * s2 * n:
        return s1 / n, max(s2 - s1 * s1 / n, 0.0)
    shift = values.dtype.type(s1 / n)
    centred = scratch.get(values.dtype, n, "centred")
    np.subtract(values, shift, out=centred)
    t1 = float(np.einsum("i->", centred))
    t2 = float(np.vecdot(centred, centred))
    return float(shift) + t1 / n, max(t2 - t1 * t1 / n, 0.0)


def _add_histogram(plan: _TensorPlan, values: np.ndarray, first_index: int, part: _Partial, scratch: _Scratch) -> None:
    """Count (a sample of) the block into the 16 bins over the tensor's histogram range."""
    stride = plan.histogram_stride
    if stride == 1:
        sample = values
    elif (first_index * plan.spec.itemsize // BLOCK_BYTES) % HISTOGRAM_BLOCK_EVERY:
        return
    else:
        sample = values[::stride]
    if sample.size == 0:
        return
    lo, hi = plan.histogram_range  # type: ignore[misc]
    positions = scratch.get(values.dtype, sample.size, "histogram")
    if math.isfinite(hi - lo):
        np.subtract(sample, lo, out=positions)
        np.multiply(positions, HISTOGRAM_BINS / (hi - lo), out=positions)
    else:   # an F64 range wider than float64 holds (inf * 0 gave NaN bins): the same bins on halved values
        np.multiply(sample, 0.5, out=positions)
        np.subtract(positions, lo * 0.5, out=positions)
        np.multiply(positions, HISTOGRAM_BINS / (hi * 0.5 - lo * 0.5), out=positions)
    np.clip(positions, 0, HISTOGRAM_BINS - 1, out=positions)
    part.histogram += np.bincount(positions.astype(np.intp), minlength=HISTOGRAM_BINS)[:HISTOGRAM_BINS]


def _plan(spec: _DtypeSpec, count: int, big_endian: bool, first_block: memoryview | None) -> _TensorPlan:
    in_place = not big_endian or spec.itemsize == 1    # both kernels read little-endian codes in place
    codes = spec.codes if in_place else None
    c_dtype = _C_DTYPES.get(id(spec)) if in_place and _C is not None else None
    histogram_range = None
    if first_block is not None and len(first_block) >= spec.itemsize:
        histogram_range = _histogram_range(spec, big_endian, first_block, c_dtype)
    stride = 1 if count <= HISTOGRAM_EXACT_LIMIT else HISTOGRAM_STRIDE
    return _TensorPlan(spec, big_endian, stride, histogram_range, codes, c_dtype)


def _run_blocks(plan: _TensorPlan, blocks: Iterable[memoryview], first_element: int) -> _Partial:
    if plan.c_dtype is not None:
        return _run_blocks_c(plan, blocks, first_element)
    part = _Partial()
    scratch = _scratch()
    index = first_element
    itemsize = plan.spec.itemsize
    for raw in blocks:
        usable = len(raw) - len(raw) % itemsize
        _process_block(plan, raw[:usable], index, part, scratch)
        index += usable // itemsize
    return part


def _run_blocks_c(plan: _TensorPlan, blocks: Iterable[memoryview], first_element: int) -> _Partial:
    """``_run_blocks`` by the C kernel: the same blocks, the same partial (mean/M2 within float tolerance)."""
    lo, hi = plan.histogram_range or (0.0, 0.0)
    kernel = _C or _compiled_kernel()   # a plan with c_dtype was made while the C kernel was selected
    fold = kernel.Fold(plan.c_dtype, plan.histogram_stride, lo, hi,  # type: ignore[union-attr]
                       plan.histogram_range is not None, BLOCK_BYTES, HISTOGRAM_BLOCK_EVERY, SAMPLE_BYTES)
    fold.blocks(blocks, first_element)
    row = fold.result()
    return _Partial(*row[:13], histogram=np.array(row[13], np.int64), samples=row[14])
