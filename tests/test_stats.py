"""The streaming statistics engine agrees with a float64 reference for every dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weightaudit import stats as S
from weightaudit import stats_schedule
from weightaudit.formats.safetensors import LOADER
from weightaudit.formats.base import LoadOptions
from weightaudit.model import LoadedFile, TensorInfo

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------------------------------------- helpers

def bf16_codes(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 codes (round to nearest even), NaN kept NaN."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    rounded[nan] = 0x7FC0
    return rounded


def bf16_values(codes: np.ndarray) -> np.ndarray:
    return (codes.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def reference(values: np.ndarray) -> dict:
    """float64 reference statistics over the finite values."""
    with np.errstate(invalid="ignore"):
        v = np.asarray(values, np.float64).ravel()
    finite = v[np.isfinite(v)]
    out = {
        "count": v.size,
        "nan": int(np.isnan(v).sum()),
        "pos_inf": int((v == np.inf).sum()),
        "neg_inf": int((v == -np.inf).sum()),
        "zeros": int((finite == 0).sum()),
        "fp16_overflow": int((np.abs(finite) > 65504).sum()),
    }
    if finite.size:
        absolute = np.where(np.isfinite(v), np.abs(v), -1.0)
        out.update(min=finite.min(), max=finite.max(), mean=finite.mean(), std=finite.std(),
                   max_abs=np.abs(finite).max(), max_abs_index=int(np.argmax(absolute)))
    return out


def assert_matches(stats, ref: dict, *, rtol: float = 2e-6, check_overflow: bool = True) -> None:
    assert stats.count == ref["count"]
    for key in ("nan", "pos_inf", "neg_inf", "zeros"):
        assert getattr(stats, key) == ref[key], key
    if check_overflow:
        assert stats.fp16_overflow == ref["fp16_overflow"]
    if "min" not in ref:
        assert stats.mean is None and stats.std is None
        return
    assert stats.min == ref["min"] and stats.max == ref["max"]
    assert stats.max_abs == ref["max_abs"]
    assert stats.max_abs_index == ref["max_abs_index"]
    scale = ref["std"] + abs(ref["mean"]) * 1e-6 + 1e-30
    assert abs(stats.mean - ref["mean"]) <= rtol * scale, (stats.mean, ref["mean"])
    assert stats.std == pytest.approx(ref["std"], rel=rtol * 10, abs=1e-30)


def decode_natural(decoder, codes: np.ndarray) -> np.ndarray:
    """Decode every code with the engine's decoder (Inf/NaN fixed up), back in natural order."""
    raw = memoryview(codes.tobytes())
    scratch = S._Scratch()
    values, lanes = decoder.decode(raw, False, scratch)
    values = values.copy()
    if isinstance(decoder, S._SmallFloat):
        decoder.fix_specials(raw, False, values, scratch)
    order = np.array([S._natural_index(i, values.size, lanes) for i in range(values.size)])
    natural = np.empty_like(values)
    natural[order] = values
    return natural


def chunked(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield memoryview(data)[i:i + size]


# ---------------------------------------------------------------------------------------------- floats

@pytest.mark.parametrize("n", [1, 7, 1000, 300_001])
def test_f32_with_nan_inf_zeros(n: int) -> None:
    values = RNG.standard_normal(n).astype(np.float32) * 3
    if n > 10:
        values[[1, 5, n - 1]] = [np.nan, np.inf, -np.inf]
        values[2:4] = 0
        values[n // 2] = 70000.0
    stats = S.tensor_stats(chunked(values.tobytes(), 1 << 20), "F32")
    assert_matches(stats, reference(values))


def test_f64_and_big_endian() -> None:
    values = RNG.standard_normal(200_000) * 1e3
    values[10] = np.nan
    ref = reference(values)
    assert_matches(S.tensor_stats([values.tobytes()], "F64"), ref)
    assert_matches(S.tensor_stats([values.astype(">f8").tobytes()], "F64", "big"), ref)
    f32 = values.astype(np.float32)
    assert_matches(S.tensor_stats([f32.astype(">f4").tobytes()], "F32", "big"), reference(f32))


def test_layernorm_like_variance_is_stable() -> None:
    """mean 1, std 1e-4: the textbook E[x²]−E[x]² would lose every digit here (or go negative)."""
    values = (1.0 + 1e-4 * RNG.standard_normal(2_000_000)).astype(np.float32)
    stats = S.tensor_stats(chunked(values.tobytes(), 4 << 20), "F32")
    ref = reference(values)
    assert stats.std == pytest.approx(ref["std"], rel=1e-5)
    assert stats.mean == pytest.approx(ref["mean"], rel=1e-7)


def test_bf16_with_nans_matches_reference() -> None:
    source = RNG.standard_normal(400_000).astype(np.float32)
    source[[3, 99, 300_000]] = np.nan
    source[7] = np.inf
    source[8] = -np.inf
    source[9] = 1e6            # beyond fp16
    source[10:20] = 0
    codes = bf16_codes(source)
    stats = S.tensor_stats(chunked(codes.tobytes(), 1 << 20), "BF16")
    assert_matches(stats, reference(bf16_values(codes)))
    assert stats.nan == 3 and stats.pos_inf == 1 and stats.neg_inf == 1 and stats.fp16_overflow == 1
    swapped = codes.astype(">u2").tobytes()
    assert_matches(S.tensor_stats([swapped], "BF16", "big"), reference(bf16_values(codes)))


def test_bf16_decoding_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    codes = np.arange(65536, dtype=np.uint16)
    ours = decode_natural(S._BF16, codes)
    theirs = torch.from_numpy(codes.view(np.int16)).view(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_f16_every_code_matches_numpy() -> None:
    codes = np.arange(65536, dtype=np.uint16)
    ours = decode_natural(S._F16, codes)
    np.testing.assert_array_equal(ours, codes.view(np.float16).astype(np.float32))
    stats = S.tensor_stats([codes.tobytes()], "F16")
    assert_matches(stats, reference(codes.view(np.float16)), check_overflow=False)
    assert stats.fp16_overflow == 0


@pytest.mark.parametrize("dtype,torch_name", [
    ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"),
    ("F8_E4M3FNUZ", "float8_e4m3fnuz"), ("F8_E5M2FNUZ", "float8_e5m2fnuz"), ("F8_E8M0", "float8_e8m0fnu"),
])
def test_fp8_decoding_matches_torch(dtype: str, torch_name: str) -> None:
    torch = pytest.importorskip("torch")
    if not hasattr(torch, torch_name):
        pytest.skip(f"torch has no {torch_name}")
    codes = np.arange(256, dtype=np.uint8)
    decoder = S._SPECS[dtype].decoder
    ours = decode_natural(decoder, codes)
    theirs = torch.from_numpy(codes).view(getattr(torch, torch_name)).float().numpy()
    np.testing.assert_array_equal(ours, theirs)
    # whole-tensor stats over every code, repeated
    tiled = np.tile(codes, 50)
    stats = S.tensor_stats([tiled.tobytes()], dtype)
    assert_matches(stats, reference(np.tile(theirs, 50)), check_overflow=False)


# ---------------------------------------------------------------------------------------------- integers

@pytest.mark.parametrize("dtype,numpy_dtype", [
    ("I8", np.int8), ("U8", np.uint8), ("I16", np.int16), ("U16", np.uint16),
    ("I32", np.int32), ("U32", np.uint32), ("I64", np.int64), ("U64", np.uint64),
])
def test_integers(dtype: str, numpy_dtype: type) -> None:
    info = np.iinfo(numpy_dtype)
    values = RNG.integers(max(info.min, -100_000), min(info.max, 100_000), 100_000, dtype=numpy_dtype, endpoint=True)
    values[:5] = 0
    stats = S.tensor_stats([values.tobytes()], dtype)
    ref = reference(values)
    ref["fp16_overflow"] = 0
    assert_matches(stats, ref)
    big = values.astype(np.dtype(numpy_dtype).newbyteorder(">")).tobytes()
    assert_matches(S.tensor_stats([big], dtype, "big"), ref)


def test_bool() -> None:
    values = RNG.random(10_000) < 0.3
    stats = S.tensor_stats([values.tobytes()], "BOOL")
    assert stats.zeros == int((~values).sum())
    assert stats.mean == pytest.approx(values.mean())


def test_unsupported_dtypes_have_no_stats() -> None:
    for dtype in ("F4", "F6_E2M3", "C64", "STRING"):
        assert S.tensor_stats([b"\x00" * 16], dtype) is None


# ---------------------------------------------------------------------------------------------- details

def test_chunking_does_not_change_results() -> None:
    values = RNG.standard_normal(700_000).astype(np.float32)
    data = values.tobytes()
    a = S.tensor_stats(chunked(data, 4 << 20), "F32")
    b = S.tensor_stats(chunked(data, 12_345), "F32")  # odd chunk sizes, not element aligned
    assert a == b


def test_fingerprint_is_a_function_of_the_bytes() -> None:
    values = RNG.standard_normal(300_000).astype(np.float32)
    fp = S.tensor_stats([values.tobytes()], "F32").fingerprint
    assert fp == S.tensor_stats(chunked(values.tobytes(), 77_777), "F32").fingerprint
    assert fp != S.tensor_stats([values[:-1].tobytes()], "F32").fingerprint
    changed_max = values.copy()
    changed_max[values.argmax()] += 1.0
    assert fp != S.tensor_stats([changed_max.tobytes()], "F32").fingerprint
    assert fp.startswith("wa1:") and len(fp) == 36


def test_compute_stats_confirms_colliding_signatures_with_a_full_hash(tmp_path: Path) -> None:
    """Same min/max/zeros/argmax and sampled bytes, one value different deep inside: not the same bytes."""
    values = RNG.standard_normal(300_000).astype(np.float32)
    near = values.copy()
    near[200_000] = np.nextafter(near[200_000], np.float32(0))
    write_safetensors(tmp_path / "m.safetensors", {"a": values, "b": near, "c": values.copy()})
    loaded = LOADER.load(tmp_path / "m.safetensors", "m.safetensors", LoadOptions())
    result = S.compute_stats(tmp_path, [loaded], workers=1)
    a, b, c = (result[("m.safetensors", name)].fingerprint for name in "abc")
    assert a == c and a != b


def test_histogram_exact_for_small_tensors() -> None:
    values = np.linspace(-1, 1, 1600, dtype=np.float32)
    stats = S.tensor_stats([values.tobytes()], "F32")
    assert stats.histogram_range == (-1.0, 1.0)
    assert sum(stats.histogram) == 1600
    assert len(stats.histogram) == S.HISTOGRAM_BINS
    assert max(stats.histogram) - min(stats.histogram) <= 2


def test_constant_and_empty_tensors() -> None:
    ones = np.ones(5000, np.float32)
    stats = S.tensor_stats([ones.tobytes()], "F32")
    assert stats.min == stats.max == stats.mean == 1.0 and stats.std == 0.0 and stats.zeros == 0
    empty = S.tensor_stats([], "F32")
    assert empty.count == 0 and empty.mean is None
    all_nan = S.tensor_stats([np.full(10, np.nan, np.float32).tobytes()], "F32")
    assert all_nan.nan == 10 and all_nan.min is None and all_nan.max_abs is None


# ---------------------------------------------------------------------------------------------- compute_stats

def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def test_compute_stats_over_a_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_schedule, "PIECE_BYTES", 1 << 20)  # force big tensors to be split into pieces
    big = RNG.standard_normal(1_500_000).astype(np.float32)
    big[1_400_000] = 500.0
    small = np.arange(12, dtype=np.int64).reshape(3, 4)
    write_safetensors(tmp_path / "model.safetensors", {"big": big.reshape(1500, 1000), "small": small})
    loaded = LOADER.load(tmp_path / "model.safetensors", "model.safetensors", LoadOptions())
    progress: list[int] = []
    result = S.compute_stats(tmp_path, [loaded], workers=2, on_progress=progress.append)
    assert set(result) == {("model.safetensors", "big"), ("model.safetensors", "small")}
    whole = result[("model.safetensors", "big")]
    assert_matches(whole, reference(big))
    single = S.tensor_stats(chunked(big.tobytes(), 1 << 20), "F32", count=big.size)
    assert whole.fingerprint == single.fingerprint and whole.histogram == single.histogram
    assert whole.max_abs_index == 1_400_000
    assert sum(progress) == big.nbytes + small.nbytes


def test_compute_stats_skips_unreadable_tensors(tmp_path: Path) -> None:
    tensor = TensorInfo("w", "F32", (1000,), "gone.safetensors", data_offsets=(8, 4008))
    loaded = LoadedFile("gone.safetensors", "safetensors", 4008, tensors=(tensor,))
    assert S.compute_stats(tmp_path, [loaded]) == {}


def test_mapped_path_keeps_memory_flat(tmp_path: Path) -> None:
    """Touched pages of the map are released as the pass goes (RSS would otherwise grow by the file size)."""
    import resource

    values = np.zeros(64 * 1024 * 1024 // 4, np.float32)
    write_safetensors(tmp_path / "z.safetensors", {"z": values})
    loaded = LOADER.load(tmp_path / "z.safetensors", "z.safetensors", LoadOptions())
    del values
    before = _rss_bytes()
    result = S.compute_stats(tmp_path, [loaded], workers=1)
    assert result[("z.safetensors", "z")].zeros == 16 * 1024 * 1024
    assert _rss_bytes() - before < 32 * 1024 * 1024
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def test_offsets_beyond_the_file_are_refused_without_splitting(tmp_path: Path) -> None:
    (tmp_path / "small.bin").write_bytes(b"\x00" * 64)
    hostile = TensorInfo("w", "F32", (2**58,), "small.bin", data_offsets=(0, 2**60))
    loaded = LoadedFile("small.bin", "safetensors", 64, tensors=(hostile,))
    assert S.compute_stats(tmp_path, [loaded]) == {}


# ---------------------------------------------------------------------------------------------- integer-code fast path

def _codes_and_values(dtype: str, source: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Raw little-endian bytes of ``source`` stored as ``dtype``, and the float64 values those bytes hold."""
    if dtype == "BF16":
        codes = bf16_codes(source)
        return codes.tobytes(), bf16_values(codes)
    if dtype == "F8_E5M2":  # the top byte of an F16 code is an E5M2 code (truncation)
        codes = (source.astype(np.float16).view(np.uint16) >> 8).astype(np.uint8)
        return codes.tobytes(), (codes.astype(np.uint16) << 8).view(np.float16).astype(np.float64)
    if dtype == "F8_E4M3":  # random finite magnitude codes, with the source's signs and zeros
        magnitude = np.where(source == 0, 0, RNG.integers(1, 0x7F, source.size))
        codes = (magnitude | np.where(np.signbit(source), 0x80, 0)).astype(np.uint8)
        return codes.tobytes(), decode_natural(S._SPECS["F8_E4M3"].decoder, codes).astype(np.float64)
    stored = source.astype({"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype])
    return stored.tobytes(), stored.astype(np.float64)


@pytest.mark.parametrize("dtype", ["F64", "F32", "F16", "BF16", "F8_E5M2", "F8_E4M3"])
@pytest.mark.parametrize("case", ["positive", "negative", "mixed", "plus_zero", "minus_zero", "negative_extreme"])
def test_sign_magnitude_fast_path_matches_reference(dtype: str, case: str) -> None:
    """min/max/zeros/max|x| come from integer reductions on the raw codes: every sign layout of a block."""
    n = 300_000   # spans several blocks of every width
    magnitudes = np.abs(RNG.standard_normal(n)) + 0.01
    source = {"positive": magnitudes, "negative": -magnitudes}.get(case, magnitudes * RNG.choice([-1.0, 1.0], n))
    if case == "plus_zero":
        source[[3, n - 2]] = 0.0
    elif case == "minus_zero":
        source = -magnitudes
        source[[5, n // 2]] = -0.0
    elif case == "negative_extreme":
        source[n // 3] = -40.0   # max |x| on the negative side
    raw, values = _codes_and_values(dtype, source)
    stats = S.tensor_stats(chunked(raw, 1 << 20), dtype)
    ref = reference(values)
    assert_matches(stats, ref, rtol=2e-6 if dtype in ("F64", "F32") else 1e-5, check_overflow=False)
    assert stats.fp16_overflow == 0
    assert stats.zeros == int(np.count_nonzero(values == 0))


def test_sign_magnitude_extremes_fall_back_on_specials() -> None:
    """Inf/NaN codes at either end of a block are handed to the exact slow path."""
    spec = S._SPECS["BF16"].codes
    codes = bf16_codes(np.array([1.0, -2.0, 0.5], np.float32))
    assert spec.extremes(memoryview(codes.tobytes())) == (-2.0, 1.0, False)
    for special in (np.inf, -np.inf, np.nan):
        with_special = bf16_codes(np.array([1.0, -2.0, special], np.float32))
        assert spec.extremes(memoryview(with_special.tobytes())) is None
    assert spec.extremes(memoryview(bf16_codes(np.array([-0.0, 3.0], np.float32)).tobytes())) == (-0.0, 3.0, True)
