"""The C block kernel (weightaudit/_kernel.c) against the numpy kernel: same partial results, block by block.

Every dtype the C kernel folds, every SIMD variant this CPU can run, on random codes (NaN/±Inf/±0/subnormals
included), clean data (the vectorised path), shifted and huge values (the re-centring and float64 paths),
odd lengths, unaligned buffers and multi-block tensors with sampled histograms. Counts, min/max (with the sign
of zero), max |x| and its position, histogram and fingerprint samples must be equal; mean/M2 within tolerance.
"""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import pytest

from weightaudit import stats_kernels
from weightaudit.stats import tensor_stats
from weightaudit.stats_decode import BLOCK_BYTES, HISTOGRAM_EXACT_LIMIT, _SPECS
from weightaudit.stats_kernels import KERNEL_ENV, _Partial, _plan, _run_blocks, kernel_name, select_kernel

_kernel = pytest.importorskip("weightaudit._kernel", reason="C kernel not built (no compiler at install)")

VARIANTS = _kernel.variants()
FAST = ("F32", "BF16", "F16", "F8_E5M2", "F8_E4M3")
DTYPES = tuple(name for name in _kernel.dtypes() if name in _SPECS)
EXACT_FIELDS = ("count", "finite", "zeros", "nan", "pos_inf", "neg_inf", "fp16_overflow", "max_abs_index", "samples")


@pytest.fixture(autouse=True)
def _restore_kernel():
    yield
    import os

    select_kernel(os.environ.get(KERNEL_ENV, "auto"))


def _sign_exact(value: float) -> tuple[float, bool]:
    return value, math.copysign(1.0, value) < 0


def _fold(kernel: str, dtype: str, raw: memoryview, count: int, first_element: int) -> tuple[_Partial, object]:
    select_kernel(kernel)
    spec = _SPECS[dtype]
    plan = _plan(spec, count, False, raw[:BLOCK_BYTES])
    assert (plan.c_dtype is not None) == (kernel != "numpy" and dtype in stats_kernels.C_DTYPES)
    if kernel != "numpy":   # the dtypes left to numpy by default are folded by C here all the same
        plan = dataclasses.replace(plan, c_dtype=dtype)
    blocks = [raw[i:i + BLOCK_BYTES] for i in range(0, len(raw), BLOCK_BYTES)]
    return _run_blocks(plan, blocks, first_element), plan


def assert_same(dtype: str, raw: bytes | memoryview, count: int | None = None, first_element: int = 0,
                unaligned: bool = False) -> _Partial:
    """The numpy kernel's partial, compared with every C variant's (the last one returned)."""
    if unaligned:
        buffer = bytearray(len(raw) + 1)
        buffer[1:] = raw
        view = memoryview(buffer)[1:]
    else:
        view = memoryview(bytes(raw))
    n = len(view) // _SPECS[dtype].itemsize
    count = n if count is None else count
    with np.errstate(over="ignore", invalid="ignore"):   # random codes overflow the numpy kernel's float32 sums
        ref, _ = _fold("numpy", dtype, view, count, first_element)
    for variant in VARIANTS:
        got, _ = _fold(f"c-{variant}", dtype, view, count, first_element)
        _compare(dtype, ref, got, variant)
    return got


def _compare(dtype: str, ref: _Partial, got: _Partial, variant: str) -> None:
    for name in EXACT_FIELDS:
        assert getattr(got, name) == getattr(ref, name), f"c-{variant}: {name}"
    assert tuple(np.asarray(got.histogram).tolist()) == tuple(np.asarray(ref.histogram).tolist()), f"c-{variant}"
    if ref.finite:
        if ref.nan + ref.pos_inf + ref.neg_inf == 0 or dtype not in FAST + ("F64",):
            assert _sign_exact(got.min) == _sign_exact(ref.min), f"c-{variant}"   # from the codes: -0 < +0
            assert _sign_exact(got.max) == _sign_exact(ref.max), f"c-{variant}"
        assert got.min == ref.min and got.max == ref.max, f"c-{variant}"
        assert got.max_abs == ref.max_abs, f"c-{variant}"
        scale = max(abs(ref.mean), math.sqrt(max(ref.m2, 0.0) / ref.finite), 1e-30)
        # random F64 codes overflow float64 squares in both kernels (NaN/Inf moments): nan_ok
        assert got.mean == pytest.approx(ref.mean, rel=1e-5, abs=1e-5 * scale, nan_ok=True), f"c-{variant}"
        m2_tolerance = 1e-9 * scale * scale * ref.finite
        assert got.m2 == pytest.approx(ref.m2, rel=1e-4, abs=m2_tolerance, nan_ok=True), f"c-{variant}"


def _random_codes(dtype: str, n: int, seed: int) -> bytes:
    """Every bit pattern equally likely: NaN, ±Inf, ±0 and subnormals all occur."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, n * _SPECS[dtype].itemsize, dtype=np.uint8).tobytes()


def _clean(dtype: str, n: int, seed: int, loc: float = 0.0, scale: float = 1.0) -> bytes:
    """Finite values (the vectorised path) with zeros, -0 and subnormals sprinkled in."""
    rng = np.random.default_rng(seed)
    values = rng.normal(loc, scale, n).astype(np.float32)
    if n > 8:
        values[rng.integers(0, n, 3)] = 0.0
        values[rng.integers(0, n, 3)] = -0.0
    if dtype == "F32":
        if n > 8:
            values[rng.integers(0, n, 2)] = np.float32(1e-40)
        return values.tobytes()
    if dtype == "F64":
        return values.astype(np.float64).tobytes()
    if dtype == "BF16":
        return (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    if dtype in ("F8_E5M2", "F8_E4M3"):   # finite codes only (no NaN/Inf patterns)
        limit = 0x7B if dtype == "F8_E5M2" else 0x7E
        codes = rng.integers(0, limit + 1, n, dtype=np.uint8) | (rng.integers(0, 2, n, dtype=np.uint8) << 7)
        return codes.tobytes()
    info = np.iinfo(np.dtype(_SPECS[dtype].decoder.numpy_dtype))
    stored = np.dtype(_SPECS[dtype].decoder.numpy_dtype)
    return rng.integers(info.min, info.max, n, dtype=stored, endpoint=True).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 17, 1001, 65536, 200_003])
def test_random_codes_match_numpy(dtype: str, n: int) -> None:
    assert_same(dtype, _random_codes(dtype, n, seed=n))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [5, 4099, 70_001, 300_000])
def test_clean_values_match_numpy(dtype: str, n: int) -> None:
    got = assert_same(dtype, _clean(dtype, n, seed=n), unaligned=n % 2 == 1)
    assert got.finite == n


@pytest.mark.parametrize("dtype", FAST)
def test_layernorm_like_values_are_recentred(dtype: str) -> None:
    """Mean 1, spread 1e-2: the shift guard fails and the block is re-centred (here too)."""
    raw = _clean(dtype, 100_000, seed=7, loc=1.0, scale=1e-2)
    got = assert_same(dtype, raw)
    decoded = {"F32": lambda: np.frombuffer(raw, "<f4"), "F16": lambda: np.frombuffer(raw, "<f2"),
               "BF16": lambda: (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)}.get(dtype)
    if decoded is not None:
        expected = float(decoded().astype(np.float64).std())
        assert math.sqrt(got.m2 / got.finite) == pytest.approx(expected, rel=1e-5)


def test_f32_mean_1_std_1e4_precise() -> None:
    values = np.random.default_rng(3).normal(1.0, 1e-4, 300_000).astype(np.float32)
    got = assert_same("F32", values.tobytes())
    assert math.sqrt(got.m2 / got.finite) == pytest.approx(float(values.astype(np.float64).std()), rel=1e-5)


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_huge_values_and_fp16_overflow(dtype: str) -> None:
    values = np.random.default_rng(5).normal(0, 1e20, 70_000).astype(np.float32)
    values[::7] = 70000.0
    raw = values.tobytes() if dtype == "F32" else (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    got = assert_same(dtype, raw)
    assert got.fp16_overflow > 10_000


@pytest.mark.parametrize("dtype", FAST)
def test_many_blocks_sampled_histogram_and_late_piece(dtype: str) -> None:
    """Above 65,536 elements the histogram samples every 16th block; a piece can start at block 16."""
    itemsize = _SPECS[dtype].itemsize
    n = 18 * BLOCK_BYTES // itemsize + 5
    raw = _clean(dtype, n, seed=11)
    got = assert_same(dtype, raw)
    assert sum(np.asarray(got.histogram).tolist()) > 0
    assert_same(dtype, raw[16 * BLOCK_BYTES:], count=n, first_element=16 * BLOCK_BYTES // itemsize)


@pytest.mark.parametrize("dtype", FAST + ("F64",))
def test_specials_in_a_sampled_block(dtype: str) -> None:
    """Inf/NaN in a histogram-sampled block: the sample counts finite values in numpy's decode order."""
    itemsize = _SPECS[dtype].itemsize
    n = 2 * BLOCK_BYTES // itemsize
    raw = bytearray(_clean(dtype, n, seed=13))
    special = bytearray(_random_codes(dtype, 4096, seed=2))
    raw[1000 * itemsize:1000 * itemsize + len(special)] = special
    assert_same(dtype, bytes(raw), count=HISTOGRAM_EXACT_LIMIT + 1)


def test_subnormal_only_tensor() -> None:
    """A first block spanning ~1e-39: 16 / (hi - lo) overflowed float32 and the numpy kernel's bins went NaN
    (bincount raised, the tensor lost its statistics); such a range is now widened like a constant one's."""
    values = (np.random.default_rng(9).normal(0, 1, 70_000) * 1e-39).astype(np.float32)
    got = assert_same("F32", values.tobytes())
    assert sum(np.asarray(got.histogram).tolist()) > 0
    assert tensor_stats([values.tobytes()], "F32").histogram_range == pytest.approx((-0.5, 0.5), abs=1e-30)


@pytest.mark.parametrize("dtype", FAST)
def test_all_zero_all_nan_and_constant_blocks(dtype: str) -> None:
    itemsize = _SPECS[dtype].itemsize
    for pattern in (b"\x00", b"\x80" if itemsize == 1 else b"\x00" * (itemsize - 1) + b"\x80", b"\xff", b"\x3c"):
        raw = (pattern * (itemsize // len(pattern) or 1)) * 5000
        assert_same(dtype, raw[: 5000 * itemsize])


def test_trailing_partial_element_and_empty_block() -> None:
    assert_same("F32", _clean("F32", 1000, seed=1) + b"\x01\x02")
    assert_same("BF16", b"\x01")


def test_public_tensor_stats_identical_including_fingerprint() -> None:
    raw = _clean("BF16", 150_001, seed=21)
    select_kernel("numpy")
    ref = tensor_stats([raw[:100_000], raw[100_000:]], "BF16")
    select_kernel("auto")
    assert kernel_name().startswith("c-")
    got = tensor_stats([raw[:100_000], raw[100_000:]], "BF16")
    assert (got.fingerprint, got.histogram, got.min, got.max, got.max_abs_index, got.zeros) == (
        ref.fingerprint, ref.histogram, ref.min, ref.max, ref.max_abs_index, ref.zeros)
    assert got.std == pytest.approx(ref.std, rel=1e-5)


def test_big_endian_table_and_integer_dtypes_stay_on_numpy() -> None:
    select_kernel("auto")
    assert _plan(_SPECS["F32"], 10, True, None).c_dtype is None
    assert _plan(_SPECS["F8_E4M3FNUZ"], 10, False, None).c_dtype is None
    assert _plan(_SPECS["I8"], 10, False, None).c_dtype is None
    assert _plan(_SPECS["F64"], 10, False, None).c_dtype is None
    for dtype in stats_kernels.C_DTYPES:
        assert _plan(_SPECS[dtype], 10, False, None).c_dtype == dtype


def test_kernel_selection_names_and_fallbacks(caplog) -> None:
    assert select_kernel("numpy") == "numpy"
    assert select_kernel("c") == f"c-{VARIANTS[0]}"
    for variant in VARIANTS:
        assert select_kernel(f"c-{variant}") == f"c-{variant}"
    with caplog.at_level("WARNING"):
        assert select_kernel("c-nonsense") == f"c-{VARIANTS[0]}"
    assert "not available" in caplog.text


def test_crc_samples_are_zlib_crc32() -> None:
    import zlib

    raw = _random_codes("U8", 3 * BLOCK_BYTES + 7, seed=4)
    select_kernel("auto")
    part, _ = _fold("c", "U8", memoryview(raw), len(raw), 0)
    assert part.samples == [zlib.crc32(raw[i:i + 256]) for i in range(0, len(raw), BLOCK_BYTES)]
    assert struct.calcsize("<I") == 4


def test_json_tool_block_names_the_kernel_only_with_statistics(runner, tmp_path) -> None:
    import json
    import shutil

    from tests.conftest import FIXTURES, invoke

    shutil.copytree(FIXTURES / "tiny-bert", tmp_path / "tiny-bert")
    for kernel in ("numpy", f"c-{VARIANTS[0]}"):
        select_kernel(kernel)
        shown = invoke(runner, "inspect", str(tmp_path / "tiny-bert"), "--stats", "--format", "json").stdout
        with_stats = json.loads(shown)
        assert with_stats["tool"]["statistics_kernel"] == kernel
    without = json.loads(invoke(runner, "inspect", str(tmp_path / "tiny-bert"), "--format", "json").stdout)
    assert "statistics_kernel" not in without["tool"]   # the JSON goldens (no statistics) do not depend on it


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
@hypothesis.given(dtype=st.sampled_from(DTYPES), raw=st.binary(max_size=3000), sampled=st.booleans(),
                  unaligned=st.booleans(), pattern=st.sampled_from([b"", b"\x00", b"\x80", b"\x7f\xff", b"\x3c\x00"]))
def test_any_bytes_match_numpy(dtype: str, raw: bytes, sampled: bool, unaligned: bool, pattern: bytes) -> None:
    """Arbitrary bytes (a repeated pattern stretches runs of ±0 / NaN / equal values across vectors)."""
    raw = raw + pattern * (len(raw) % 97)
    itemsize = _SPECS[dtype].itemsize
    count = HISTOGRAM_EXACT_LIMIT + 1 if sampled else None   # sampled: every 16th value of block 0
    assert_same(dtype, raw, count=count, unaligned=unaligned)
    if sampled:
        assert_same(dtype, raw, count=count, first_element=16 * BLOCK_BYTES // itemsize)


def test_baseline_only_build_defaults_to_numpy(monkeypatch) -> None:
    """Where only the baseline loops were built (no AVX2, or not GCC), auto picks numpy: that loop is slower."""

    class BaselineOnly:
        variants = staticmethod(lambda: ("generic",))
        select = staticmethod(lambda name: None)
        selected = staticmethod(lambda: "generic")
        dtypes = staticmethod(_kernel.dtypes)

    monkeypatch.setattr(stats_kernels, "_compiled_kernel", lambda: BaselineOnly)
    assert select_kernel("auto") == "numpy"
    assert select_kernel("c") == "c-generic"
    monkeypatch.setattr(stats_kernels, "_compiled_kernel", lambda: None)   # not built at all
    assert select_kernel("c-avx2") == "numpy"


def test_fold_blocks_passes_the_iterators_error_on() -> None:
    def blocks():
        yield b"\x00\x00\x80\x3f" * 10
        raise OSError("file ended before byte 80")

    fold = _kernel.Fold("F32", 1, 0.0, 1.0, True, BLOCK_BYTES, 16, 256)
    with pytest.raises(OSError, match="ended"):
        fold.blocks(blocks(), 0)
    with pytest.raises(ValueError):
        fold.block(b"\x00" * 4, -1)
