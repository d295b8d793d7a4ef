"""Costs linear in datasets (issue 10): an HDF5 file is scanned once, not once per streamed tensor; a deflated
``.keras`` weights file is inflated once, front to back, within ``limits.bytes_inflated``; every limit hit is a
WA132 finding and an unverified file. These tests check findings and call counts, never time (benchmarks do)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.rules import keras_samples as ks
from weightaudit.formats import hdf5_read, hdf5_stream, keras_h5
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.keras_h5 import HDF5_LOADER, KERAS_ZIP_LOADER
from weightaudit.limits import DEFAULT_LIMITS
from weightaudit.stats import compute_stats

DATASETS = 5_000


def _many(path: Path, chunked: bool) -> Path:
    with h5py.File(path, "w") as handle:
        for index in range(DATASETS):
            data = np.full((4,), index, dtype=np.float32)
            handle.create_dataset(f"g{index // 500}/t{index}", data=data, chunks=(4,) if chunked else None)
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    hdf5_stream.close_cached()
    keras_h5._close_spools()
    yield
    hdf5_stream.close_cached()
    keras_h5._close_spools()


def _count_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = hdf5_read.scan_file

    def counting(handle, *source):
        calls[0] += 1
        return original(handle, *source)
    monkeypatch.setattr(hdf5_read, "scan_file", counting)
    return calls


@pytest.mark.parametrize("chunked", [False, True], ids=["contiguous", "chunked"])
def test_streaming_every_dataset_scans_the_file_at_most_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             chunked: bool) -> None:
    path = _many(tmp_path / "many.h5", chunked)
    loaded = HDF5_LOADER.load(path, "many.h5", LoadOptions())
    assert loaded.verified and not loaded.findings and len(loaded.tensors) == DATASETS
    assert loaded.facts["hdf5"]["chunked"] == (DATASETS if chunked else 0)
    scans = _count_scans(monkeypatch)
    for tensor in loaded.tensors:
        data = b"".join(bytes(c) for c in HDF5_LOADER.iter_chunks(path, tensor, 1 << 20))
        assert np.frombuffer(data, np.float32).tolist() == [int(tensor.name.rsplit("t", 1)[1])] * 4
    assert scans[0] == (1 if chunked else 0)   # contiguous tensors are read by offset, never through h5py


def test_statistics_over_many_chunked_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _many(tmp_path / "many.h5", chunked=True)
    loaded = HDF5_LOADER.load(path, "many.h5", LoadOptions())
    scans = _count_scans(monkeypatch)
    stats = compute_stats(tmp_path, [loaded], workers=1)
    assert len(stats) == DATASETS and scans[0] == 1
    assert stats[("many.h5", "g9/t4999")].max == 4999.0


def _deflated_keras(path: Path, weights: bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(ks.benign_sequential()))
        archive.writestr("model.weights.h5", weights)
    return path


def _chunked_weights(count: int = 50) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for index in range(count):
            handle.create_dataset(f"layers/dense_{index}/vars/0", data=np.full((64, 8), index, np.float32),
                                  chunks=(8, 8))
    return buffer.getvalue()


def test_deflated_keras_is_inflated_once_and_never_seeks_back(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = _deflated_keras(tmp_path / "deflated.keras", _chunked_weights())

    def no_seek(self, *args, **kwargs):
        raise AssertionError("seek on a deflate stream re-inflates it from the start")
    monkeypatch.setattr(zipfile.ZipExtFile, "seek", no_seek)
    spools = [0]
    original = keras_h5.spool_member

    def counting(*args, **kwargs):
        spools[0] += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(keras_h5, "spool_member", counting)
    loaded = KERAS_ZIP_LOADER.load(path, "deflated.keras", LoadOptions())
    assert loaded.verified and not loaded.findings and len(loaded.tensors) == 50
    assert spools[0] == 1 and all(t.data_offsets is None for t in loaded.tensors)
    for tensor in loaded.tensors:
        data = b"".join(bytes(c) for c in KERAS_ZIP_LOADER.iter_chunks(path, tensor, 1 << 20))
        assert len(data) == 64 * 8 * 4
    assert spools[0] == 1   # one inflation per audit: the streams read the load's spool


def test_inflation_bound_is_a_finding_and_unverified(tmp_path: Path) -> None:
    path = _deflated_keras(tmp_path / "big.keras", _chunked_weights())
    options = LoadOptions(limits=replace(DEFAULT_LIMITS, bytes_inflated=10_000))
    loaded = KERAS_ZIP_LOADER.load(path, "big.keras", options)
    assert not loaded.verified and not loaded.tensors
    assert [(f.rule_id, f.where) for f in loaded.findings] == [("WA132", "model.weights.h5")]
    assert "limits.bytes_inflated = 10,000" in loaded.findings[0].message
    assert loaded.facts["model_class"] == "Sequential"      # the config is still judged


def test_stored_keras_weights_are_read_in_place(tmp_path: Path) -> None:
    path = ks.write_keras(tmp_path / "stored.keras", ks.benign_sequential())
    loaded = KERAS_ZIP_LOADER.load(path, "stored.keras", LoadOptions())
    assert loaded.verified and loaded.facts["archive"]["weights_stored"]
    kernel = next(t for t in loaded.tensors if t.name == "head/0")
    begin, end = kernel.data_offsets
    assert np.frombuffer(path.read_bytes()[begin:end], np.float32).reshape(8, 3)[1, 0] == pytest.approx(3 / 24)


def test_dataset_limit_is_a_finding_and_unverified(tmp_path: Path) -> None:
    path = tmp_path / "twenty.h5"
    with h5py.File(path, "w") as handle:
        for index in range(20):
            handle.create_dataset(f"d{index:02d}", data=np.zeros(2, np.float32))
    loaded = HDF5_LOADER.load(path, "twenty.h5", LoadOptions(limits=replace(DEFAULT_LIMITS, tensors_per_file=10)))
    assert not loaded.verified and len(loaded.tensors) == 10
    assert [f.rule_id for f in loaded.findings] == ["WA132"]


def test_config_nested_past_the_limit_is_unverified(tmp_path: Path) -> None:
    config = ks.benign_sequential()
    deep: dict = {"class_name": "Dense", "config": {}}
    node = deep
    for _ in range(DEFAULT_LIMITS.nesting_depth + 10):
        node["config"] = {"inner": {}}
        node = node["config"]["inner"]
    config["config"]["layers"].append(deep)
    path = ks.write_keras(tmp_path / "deep.keras", config)
    loaded = KERAS_ZIP_LOADER.load(path, "deep.keras", LoadOptions())
    assert not loaded.verified
    assert [f.rule_id for f in loaded.findings] == ["WA132"] and "nesting_depth" in loaded.findings[0].message


def test_forked_workers_read_the_parents_spool(tmp_path: Path) -> None:
    path = _deflated_keras(tmp_path / "deflated.keras", _chunked_weights(8))
    loaded = KERAS_ZIP_LOADER.load(path, "deflated.keras", LoadOptions())
    alone = compute_stats(tmp_path, [loaded], workers=1)
    forked = compute_stats(tmp_path, [loaded], workers=2)
    assert len(alone) == 8 and {k: (v.max, v.fingerprint) for k, v in alone.items()} == \
        {k: (v.max, v.fingerprint) for k, v in forked.items()}


def test_config_nested_100000_deep_is_refused_and_the_weights_still_read(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    keras = tmp_path / "deep.keras"
    with zipfile.ZipFile(keras, "w") as archive:
        archive.writestr("config.json", deep)
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", ks.weights_h5())
    legacy = tmp_path / "deep.h5"
    with h5py.File(legacy, "w") as handle:
        handle.attrs["model_config"] = deep
        handle.create_dataset("w", data=np.zeros(3, np.float32))
    for loader, path, where in ((KERAS_ZIP_LOADER, keras, "config.json"), (HDF5_LOADER, legacy, "model_config")):
        loaded = loader.load(path, path.name, LoadOptions())
        assert loaded.tensors and not loaded.verified
        assert [(f.rule_id, f.where) for f in loaded.findings] == [("WA132", where)]
        assert "limits.nesting_depth" in loaded.findings[0].message
