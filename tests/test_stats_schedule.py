"""Work planning of the statistics pass: pieces by bytes, batches for every worker, small tensors grouped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weightaudit import stats as S
from weightaudit import stats_schedule as schedule
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.safetensors import LOADER


def _release(tmp_path: Path, tensors: dict[str, np.ndarray]):
    from safetensors.numpy import save_file

    save_file(tensors, str(tmp_path / "m.safetensors"))
    return LOADER.load(tmp_path / "m.safetensors", "m.safetensors", LoadOptions())


def test_a_few_megabytes_give_every_worker_batches(tmp_path: Path) -> None:
    big = np.random.default_rng(0).standard_normal(3 * 1024 * 1024).astype(np.float32)   # 12 MiB, one tensor
    loaded = _release(tmp_path, {"big": big})
    pieces = schedule._pieces(tmp_path, [loaded], workers=2)
    assert len(pieces) >= 2 and all(p.nbytes % S.BLOCK_BYTES == 0 for p in pieces[:-1])
    assert len(schedule._batches(pieces, workers=2)) >= 2
    whole = S.compute_stats(tmp_path, [loaded], workers=1)[("m.safetensors", "big")]
    split = S.compute_stats(tmp_path, [loaded], workers=2)[("m.safetensors", "big")]
    assert (split.min, split.max, split.count, split.fingerprint, split.histogram) == \
        (whole.min, whole.max, whole.count, whole.fingerprint, whole.histogram)
    assert np.isclose(split.std, whole.std, rtol=1e-6)


def test_small_tensors_are_planned_as_one_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {f"t{i}": rng.standard_normal(256).astype(np.float32) for i in range(300)}
    tensors["big"] = rng.standard_normal(100_000).astype(np.float32)   # 400 KB: the block kernel's
    loaded = _release(tmp_path, tensors)
    pieces = schedule._pieces(tmp_path, [loaded], workers=1)
    runs = [p for p in pieces if p.small]
    assert len(runs) == 1 and len(runs[0].tensors) == 300       # one unit of work, not 300 objects
    assert list(runs[0].begins) == sorted(runs[0].begins) and runs[0].nbytes == 300 * 256 * 4
    assert [p.tensor.name for p in pieces if not p.small] == ["big"]
    assert len(schedule._batches(pieces, workers=1)) <= 4      # 300 tiny tensors do not make 300 tasks
    result = S.compute_stats(tmp_path, [loaded], workers=2)
    assert len(result) == 301
    assert result[("m.safetensors", "t7")].count == 256


def test_an_unreadable_small_tensor_fails_alone(tmp_path: Path) -> None:
    loaded = _release(tmp_path, {"a": np.ones(8, np.float32), "b": np.arange(8, dtype=np.float32)})
    (tmp_path / "m.safetensors").write_bytes((tmp_path / "m.safetensors").read_bytes()[:-16])   # cut b's bytes
    result = S.compute_stats(tmp_path, [loaded], workers=1)
    assert ("m.safetensors", "a") in result and ("m.safetensors", "b") not in result
