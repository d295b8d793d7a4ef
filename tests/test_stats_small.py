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
