"""The native HDF5 reader (hdf5_native.py) against libhdf5 through h5py, the oracle: on every file it reads, the
same objects in the same order and the same dataset records as h5py's visit and low-level opens; whatever it does
not understand falls back to h5py (never a guess); and whole loads give the same tensors and findings either way.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.rules import keras_samples as ks
from weightaudit.formats import hdf5_native, hdf5_read, hdf5_stream, keras_h5
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.keras_h5 import HDF5_LOADER, KERAS_ZIP_LOADER

DTYPES = ("<f4", ">f4", "<f8", ">f8", "<f2", "<i1", "<i2", ">i4", "<i8", "<u1", "<u2", ">u4", "<u8", "?", "<c8")


def _compact() -> h5py.h5p.PropDCID:
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_layout(h5py.h5d.COMPACT)
    return plist


def _write_mixed(handle: h5py.File, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for index in range(60):
        dtype = DTYPES[index % len(DTYPES)]
        shape = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(0, 4))))
        data = (rng.standard_normal(shape) * 50).astype(dtype) if shape else np.array(3, dtype=dtype)
        name = f"g{index % 5}/sub{index % 3}/d{index}" if index % 4 else f"d{index}"
        layout = index % 5
        if layout == 1 and shape:
            handle.create_dataset(name, data=data, chunks=True)
        elif layout == 2 and shape:
            handle.create_dataset(name, data=data, compression="gzip", shuffle=True)
        elif layout == 3 and data.nbytes < 1000:
            handle.create_dataset(name, data=data, dcpl=_compact())
        else:
            handle.create_dataset(name, data=data)
        if index % 9 == 0:
            handle.create_dataset(f"{name}_times", data=data, track_times=True)
        if index % 6 == 0:
            handle[name].attrs["note"] = "x" * index
    handle.create_dataset("empty", shape=(0, 3), dtype="<f4")
    handle.create_dataset("unwritten", shape=(4,), dtype="<f4")
    handle["alias"] = handle["d0"]
    handle["g1/alias_group"] = handle["g2"]
    handle.create_dataset("text", data=np.array([b"a", b"bc"]))
    handle.create_dataset("bf16", data=np.zeros(4, np.uint16)).attrs["dtype"] = "bfloat16"
    handle.create_dataset("resizable", data=np.arange(6.0), maxshape=(None,), chunks=(3,))
    handle.create_group("empty_group")


def _many_entries(handle: h5py.File, seed: int) -> None:
    """Groups big enough for multi-level group B-trees and several symbol nodes."""
    for index in range(700):
        handle.create_dataset(f"wide/{(index * 7919 + seed) % 10007:05d}", data=np.float32(index))


FILES = {
    "earliest": lambda path, seed: h5py.File(path, "w"),
    "userblock": lambda path, seed: h5py.File(path, "w", userblock_size=1024),
    "track_order": lambda path, seed: h5py.File(path, "w", track_order=True),
    "v108": lambda path, seed: h5py.File(path, "w", libver=("v108", "v108")),
    "latest": lambda path, seed: h5py.File(path, "w", libver="latest"),
}


def _build(path: Path, kind: str, seed: int) -> Path:
    with FILES[kind](path, seed) as handle:
        _write_mixed(handle, seed)
        _many_entries(handle, seed)
    return path


def _native(path: Path) -> hdf5_native.NativeScan:
    with h5py.File(path, "r") as handle:
        fd = os.open(path, os.O_RDONLY)
        try:
            return hdf5_native.scan_descriptor(fd, 0, os.fstat(fd).st_size, handle.userblock_size)
        finally:
            os.close(fd)


def _oracle_record(handle: h5py.File, path: str) -> tuple:
    data = hdf5_read._Dataset.open(handle, path, hdf5_read._GroupIds())
    return (data.dtype, data.shape, data.layout, data.filters, data.external, data.stored, data.offset,
            data.keras_dtype)


def _compare_with_h5py(path: Path) -> int:
    """Native scan == h5py visit, and every native record == the h5py open; returns the records compared."""
    native = _native(path)
    compared = 0
    with h5py.File(path, "r") as handle:
        oracle = hdf5_read._visit(handle)
        assert native.datasets == oracle.datasets
        assert native.groups == oracle.groups
        for dataset, record in native.records.items():
            if record is not None:
                assert _oracle_record(handle, dataset) == (record.dtype, record.shape, record.layout, record.filters,
                                                           False, record.stored, record.offset, None), dataset
                compared += 1
    return compared


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("kind", ["earliest", "userblock"])
def test_native_scan_and_records_match_h5py(tmp_path: Path, kind: str, seed: int) -> None:
    path = _build(tmp_path / f"{kind}.h5", kind, seed)
    assert _compare_with_h5py(path) > 700


@pytest.mark.parametrize("kind", ["track_order", "v108", "latest"])
def test_newer_structures_are_left_to_h5py(tmp_path: Path, kind: str) -> None:
    path = _build(tmp_path / f"{kind}.h5", kind, 1)           # version 2 object headers, superblock v2/v3
    with pytest.raises(hdf5_native.Unsupported):
        _native(path)


def test_links_and_named_types_are_left_to_h5py(tmp_path: Path) -> None:
    soft = tmp_path / "soft.h5"
    with h5py.File(soft, "w") as handle:
        handle["a"] = np.zeros(3)
        handle["link"] = h5py.SoftLink("/a")
    with pytest.raises(hdf5_native.Unsupported, match="cache type 2"):
        _native(soft)
    named = tmp_path / "named.h5"
    with h5py.File(named, "w") as handle:
        handle["t"] = np.dtype("<f4")
        handle.create_dataset("a", data=np.zeros(3, "<f4"), dtype=handle["t"])
    with pytest.raises(hdf5_native.Unsupported):
        _native(named)


def test_unusual_datasets_get_no_native_record(tmp_path: Path) -> None:
    path = _build(tmp_path / "mixed.h5", "earliest", 1)
    native = _native(path)
    aside = {name for name, record in native.records.items() if record is None}
    assert {"bf16", "text", "resizable"} <= aside            # an attribute, a string type, unlimited dimensions
    with h5py.File(path, "r") as handle:
        chunked = {name for name in native.datasets if handle[name].chunks is not None} - aside
        compressed = {name for name in chunked if handle[name].compression == "gzip"}
    assert len(chunked) > 10 and compressed
    assert {native.records[name].filters for name in compressed} == {(2, 1)}     # shuffle, then deflate


def _load(path: Path, native: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    hdf5_stream.close_cached()
    with monkeypatch.context() as patch:
        if not native:
            patch.setattr(hdf5_read, "_native_scan", lambda handle, source: None)
        loaded = HDF5_LOADER.load(path, path.name, LoadOptions())
    hdf5_stream.close_cached()
    return loaded.tensors, loaded.findings, loaded.verified, loaded.facts


@pytest.mark.parametrize("kind", ["earliest", "userblock"])
def test_whole_load_is_the_same_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    path = _build(tmp_path / f"{kind}.h5", kind, 3)
    assert _load(path, True, monkeypatch) == _load(path, False, monkeypatch)


@pytest.mark.parametrize("seed_file", ["mixed", "functional.h5"])
def test_mutated_files_never_disagree_with_h5py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                seed_file: str) -> None:
    """Single-byte mutations of a file the native reader handles (a mixed test file, a Keras-written legacy .h5):
    it either refuses (h5py reads the file) or loads the same tensors and findings as the h5py path."""
    seed = tmp_path / "seed.h5"
    if seed_file == "mixed":
        with h5py.File(seed, "w") as handle:
            _write_mixed(handle, 5)
    else:
        seed.write_bytes((KERAS_TF / seed_file).read_bytes())
    original = seed.read_bytes()
    rng = np.random.default_rng(0)
    for case in range(120):
        mutated = bytearray(original)
        position = int(rng.integers(0, len(mutated)))
        mutated[position] = int(rng.integers(0, 256))
        path = tmp_path / f"m{case}.h5"
        path.write_bytes(bytes(mutated))
        assert _load(path, True, monkeypatch) == _load(path, False, monkeypatch), position
        path.unlink()


KERAS_TF = Path(__file__).resolve().parents[2] / "fixtures" / "keras_tf"
KERAS_FILES = sorted(p.name for p in KERAS_TF.iterdir() if p.suffix in (".h5", ".keras"))


def _load_any(path: Path, native: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    loader = KERAS_ZIP_LOADER if path.suffix == ".keras" else HDF5_LOADER
    hdf5_stream.close_cached()
    keras_h5._close_spools()
    calls: list[bool] = []
    original = hdf5_read._native_scan

    def scan(handle: h5py.File, source: hdf5_read.Source | None) -> hdf5_read.Scan | None:
        found = original(handle, source) if native else None
        calls.append(found is not None)
        return found
    with monkeypatch.context() as patch:
        patch.setattr(hdf5_read, "_native_scan", scan)
        loaded = loader.load(path, path.name, LoadOptions())
    assert calls == [native], "the native reader did not read the file" if native else calls
    return loaded.tensors, loaded.findings, loaded.verified, loaded.facts


@pytest.mark.parametrize("name", KERAS_FILES)
def test_keras_files_written_by_keras_load_the_same_natively(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = KERAS_TF / name
    assert _load_any(path, True, monkeypatch) == _load_any(path, False, monkeypatch)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_keras_archives_are_read_natively_through_their_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               compression: int) -> None:
    path = ks.write_keras(tmp_path / "model.keras", ks.benign_functional(), compression)
    with zipfile.ZipFile(path) as archive:
        stream, _base = keras_h5._open_weights(path, archive, 1 << 30)
    with stream, h5py.File(stream, "r") as handle:
        found = hdf5_native.scan_descriptor(*stream.source, handle.userblock_size)
    assert found.datasets == ["layers/head/vars/0", "layers/head/vars/1"] and all(found.records.values())
    assert _load_any(path, True, monkeypatch) == _load_any(path, False, monkeypatch)


def test_metadata_read_past_the_budget_is_left_to_h5py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Structures that overlap (headers, heaps or names shared by many objects) would make the walk read the same
    bytes again and again: past ~4x the file's size of metadata reads the native reader gives up."""
    path = _build(tmp_path / "mixed.h5", "earliest", 4)
    original = hdf5_native._Reader.__init__

    def tight(self: hdf5_native._Reader, *args: object) -> None:
        original(self, *args)
        self.budget = 4096
    monkeypatch.setattr(hdf5_native._Reader, "__init__", tight)
    with pytest.raises(hdf5_native.Unsupported, match="structures overlap"):
        _native(path)
    assert _load(path, True, monkeypatch) == _load(path, False, monkeypatch)
