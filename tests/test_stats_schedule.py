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


def test_small_tensors_of_any_loader_with_raw_offsets_are_batched(tmp_path: Path, monkeypatch) -> None:
    """Whatever the loader: tensors whose data_offsets are raw bytes (OFFSETS_ARE_RAW, or a loader that does not
    stream by itself) join the small-tensor runs; a loader that streams by itself keeps streaming until it is
    listed in OFFSETS_ARE_RAW (the one-line change a loader makes once its offsets are raw)."""
    from weightaudit.model import LoadedFile, TensorInfo

    rng = np.random.default_rng(3)
    values = [rng.standard_normal(64).astype(np.float32) for _ in range(50)]
    (tmp_path / "raw.bin").write_bytes(b"".join(v.tobytes() for v in values))
    tensors = tuple(TensorInfo(f"t{i}", "F32", (64,), "raw.bin", (256 * i, 256 * (i + 1))) for i in range(50))

    def planned(fmt: str):
        pieces = schedule._pieces(tmp_path, [LoadedFile("raw.bin", fmt, 50 * 256, tensors=tensors)], workers=1)
        return sum(len(p.tensors) for p in pieces if p.small), [p for p in pieces if not p.small]

    assert planned("hdf5")[0] == 50                  # listed in OFFSETS_ARE_RAW
    assert planned("no-such-loader")[0] == 50        # unknown: offsets are raw by contract
    real = schedule._streams_itself                  # a loader with its own iter_chunks (any real one may list itself)
    monkeypatch.setattr(schedule, "_streams_itself", lambda fmt: fmt == "self-streaming" or real(fmt))
    streamed = planned("self-streaming")
    assert streamed[0] == 0 and all(not p.mapped for p in streamed[1])   # streams through its iter_chunks
    monkeypatch.setattr(schedule, "OFFSETS_ARE_RAW", schedule.OFFSETS_ARE_RAW | {"self-streaming"})
    assert planned("self-streaming")[0] == 50
    result = S.compute_stats(tmp_path, [LoadedFile("raw.bin", "self-streaming", 50 * 256, tensors=tensors)], workers=1)
    assert result[("raw.bin", "t7")].min == float(values[7].min()) and result[("raw.bin", "t7")].count == 64
