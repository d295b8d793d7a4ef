"""Small tensors reduced together (stats_small) give the block kernel's results, tensor by tensor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from weightaudit import stats as S
from weightaudit import stats_small
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.safetensors import LOADER

RNG = np.random.default_rng(99)
EXACT = ("count", "min", "max", "zeros", "nan", "pos_inf", "neg_inf", "fp16_overflow", "max_abs", "max_abs_index",
         "fingerprint", "histogram", "histogram_range")


def _tensors(dtype: np.dtype) -> dict[str, np.ndarray]:
    """Edge cases of one dtype: normal values, zeros, constant, one element, NaN/±Inf, all-NaN, LayerNorm-like."""
    wide = np.dtype(dtype).kind == "f"
    base = {
        "normal": RNG.standard_normal(1000) * (0.02 if wide else 50),
        "zeros": np.zeros(17),
        "constant": np.full(33, 3.0),
        "one": np.array([-2.0]),
        "norm": 1.0 + 1e-4 * RNG.standard_normal(512),
        "ties": np.array([1.0, -5.0, 5.0, 0.0, -5.0]),
    }
    if wide:
        base["specials"] = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -0.0, 7e4, -2.5])
        base["all_nan"] = np.full(9, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        return {name: values.astype(dtype) for name, values in base.items()}


def _both(tmp_path: Path, tensors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch):
    from safetensors.numpy import save_file

    save_file(tensors, str(tmp_path / "m.safetensors"))
    loaded = LOADER.load(tmp_path / "m.safetensors", "m.safetensors", LoadOptions())
    together = S.compute_stats(tmp_path, [loaded], workers=1)
    monkeypatch.setattr(stats_small, "SMALL_MAX_BYTES", 0)          # every tensor through the block kernel
    alone = S.compute_stats(tmp_path, [loaded], workers=1)
    return together, alone


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int8", "int32", "uint16", "int64"])
def test_small_tensors_together_match_the_block_kernel(tmp_path: Path, monkeypatch, dtype: str) -> None:
    together, alone = _both(tmp_path, _tensors(np.dtype(dtype)), monkeypatch)
    assert together.keys() == alone.keys() and together
    for key, mine in together.items():
        theirs = alone[key]
        for name in EXACT:
            assert getattr(mine, name) == getattr(theirs, name), (key, name)
        for name in ("mean", "std"):   # float64 two-pass here, float32 block sums there: summation order differs
            a, b = getattr(mine, name), getattr(theirs, name)
            assert (a is None) == (b is None), (key, name)
            if a is not None:
                assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9), (key, name, a, b)


def test_bf16_small_tensors_match(tmp_path: Path, monkeypatch) -> None:
    import torch
    from safetensors.torch import save_file

    values = {"w": torch.randn(700).to(torch.bfloat16), "c": torch.full((5,), 2.0, dtype=torch.bfloat16),
              "s": torch.tensor([1.0, float("nan"), float("inf"), 0.0, -3.0], dtype=torch.bfloat16)}
    save_file(values, str(tmp_path / "m.safetensors"))
    loaded = LOADER.load(tmp_path / "m.safetensors", "m.safetensors", LoadOptions())
    together = S.compute_stats(tmp_path, [loaded], workers=1)
    monkeypatch.setattr(stats_small, "SMALL_MAX_BYTES", 0)
    alone = S.compute_stats(tmp_path, [loaded], workers=1)
    assert together.keys() == alone.keys() == {("m.safetensors", k) for k in values}
    for key, mine in together.items():
        assert all(getattr(mine, n) == getattr(alone[key], n) for n in EXACT), key
        assert math.isclose(mine.std, alone[key].std, rel_tol=1e-5, abs_tol=1e-9)


def test_duplicate_small_tensors_share_a_fingerprint(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    a = RNG.standard_normal(300).astype(np.float32)
    b = a.copy()
    b[-1] += 1e-3
    save_file({"a": a, "copy": a.copy(), "b": b}, str(tmp_path / "m.safetensors"))
    loaded = LOADER.load(tmp_path / "m.safetensors", "m.safetensors", LoadOptions())
    result = S.compute_stats(tmp_path, [loaded], workers=1)
    prints = {name: result[("m.safetensors", name)].fingerprint for name in ("a", "copy", "b")}
    assert prints["a"] == prints["copy"] != prints["b"]


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int16"])
def test_equal_length_tensors_take_the_broadcast_path_with_the_same_results(dtype: str) -> None:
    """Tensors of one length are reduced as a 2-D grid; the general (repeat per element) path gives the same bits."""
    values = RNG.standard_normal(64 * 100) * (0.02 if np.dtype(dtype).kind == "f" else 50)
    values[5 * 64:6 * 64] = 0.0
    values[7 * 64] = values[7 * 64 + 9] = -np.ceil(np.abs(values).max() + 1)   # max |x| twice: the first counts
    decoded = values.astype(dtype).astype(np.float64 if dtype in ("float64", "int16") else np.float32)
    counts = np.full(100, 64, np.int64)
    samples = np.arange(100, dtype=np.uint32)
    grid = stats_small._Segments(decoded, counts, np.dtype(dtype).kind == "f", dtype != "float16")
    assert grid.uniform
    flat = stats_small._Segments(decoded, counts, np.dtype(dtype).kind == "f", dtype != "float16")
    flat.uniform, flat.grid = False, decoded
    flat.segment_of = np.repeat(np.arange(100, dtype=np.intp), counts)
    a, b = grid.columns(samples), flat.columns(samples)
    for name in ("count", "finite", "mean", "m2", "low", "high", "zeros", "max_abs", "max_abs_index", "histogram",
                 "hist_low", "hist_high"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.max_abs_index[7] == 0 and a.zeros[5] == 64


def test_a_small_tensor_past_the_end_of_the_map_fails_alone(tmp_path: Path) -> None:
    import mmap

    data = RNG.standard_normal(64).astype(np.float32).tobytes()
    (tmp_path / "raw.bin").write_bytes(data)
    with open(tmp_path / "raw.bin", "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    columns = stats_small.small_columns(mapped, "F32", np.array([0, 128, 192]), np.array([128, 256, 512]))
    assert set(columns.failed) == {2} and "512" in columns.failed[2]
    assert columns.count.tolist()[:2] == [32, 32]
    assert columns.low[1] == np.frombuffer(data[128:], np.float32).min()


def test_small_tensors_are_hashed_together_as_each_alone(tmp_path: Path) -> None:
    """The full-hash confirmation of colliding small tensors, many at once, equals the one-tensor digest."""
    import mmap

    data = RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (tmp_path / "raw.bin").write_bytes(data)
    spans = [(0, 8), (8, 21), (100, 101), (200, 1000), (1000, 1013), (4000, 5000)]
    with open(tmp_path / "raw.bin", "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    found = S._small_digests(mapped, [((str(i), ""), b, e) for i, (b, e) in enumerate(spans)])
    for i, (b, e) in enumerate(spans):
        assert found[(str(i), "")] == S._full_digest((memoryview(data[b:e]),)), (b, e)


@pytest.mark.parametrize("name, values", [
    ("subnormals", np.array([1e-45, 2e-45, 3e-45, 0.0], np.float32)),
    ("huge constant", np.full(8, 1e20, np.float32)),
    ("huge int constant", np.full(8, 2**60, np.int64)),
    ("narrow", np.array([1.0, 1.0 + 2**-23, 1.0], np.float32)),
])
def test_histogram_ranges_widen_as_the_block_kernel_does(tmp_path: Path, monkeypatch, name: str, values) -> None:
    together, alone = _both(tmp_path, {"t": values, "u": values[::-1].copy()}, monkeypatch)
    for key, mine in together.items():
        assert (mine.histogram_range, mine.histogram) == (alone[key].histogram_range, alone[key].histogram), name
