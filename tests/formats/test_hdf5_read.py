"""The low-level HDF5 scan and inventory against h5py's own high-level view of the same files: every dataset
found once (hard links included), same shapes, dtypes and bytes, offsets that point at the stored bytes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from weightaudit.formats import hdf5_read, hdf5_stream
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.keras_h5 import HDF5_LOADER

DTYPES = ("<f4", ">f4", "<f8", "<f2", "<i1", "<i2", ">i4", "<i8", "<u1", "<u2", "<u4", "<u8")


def _mixed(path: Path, seed: int, libver: str) -> Path:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w", libver=libver) as handle:
        for index in range(40):
            dtype = DTYPES[index % len(DTYPES)]
            shape = tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(0, 4))))
            data = (rng.standard_normal(shape) * 50).astype(dtype) if shape else np.array(3, dtype=dtype)
            group = f"g{index % 5}/sub{index % 3}" if index % 4 else ""
            name = f"{group}/d{index}".lstrip("/")
            layout = index % 4
            if layout == 1 and shape:
                handle.create_dataset(name, data=data, chunks=True)
            elif layout == 2 and shape:
                handle.create_dataset(name, data=data, compression="gzip", shuffle=True)
            else:
                handle.create_dataset(name, data=data)
        handle.create_dataset("empty", shape=(0, 3), dtype="<f4")
        handle.create_dataset("unwritten", shape=(4,), dtype="<f4")           # storage never allocated
        handle["alias"] = handle["d0"]                                        # a second hard link
        handle.create_dataset("text", data=np.array([b"a", b"bc"]))
    return path


def _reference(path: Path) -> dict[int, tuple[tuple[int, ...], np.dtype, bytes]]:
    """Every dataset once (by object address), as h5py's high level reads it."""
    found: dict[int, tuple[tuple[int, ...], np.dtype, bytes]] = {}
    with h5py.File(path, "r") as handle:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                address = h5py.h5o.get_info(obj.id).addr
                data = np.ascontiguousarray(obj[()], dtype=obj.dtype)      # in its stored byte order
                found.setdefault(address, (obj.shape, obj.dtype, data.tobytes()))
        handle.visititems(visit)
    return found


@pytest.mark.parametrize("libver", ["earliest", "latest"])
@pytest.mark.parametrize("seed", [1, 2])
def test_inventory_matches_h5py(tmp_path: Path, seed: int, libver: str) -> None:
    path = _mixed(tmp_path / "mixed.h5", seed, libver)
    hdf5_stream.close_cached()
    loaded = HDF5_LOADER.load(path, "mixed.h5", LoadOptions())
    reference = _reference(path)
    assert loaded.verified and loaded.facts["hdf5"]["datasets"] == len(reference)
    with h5py.File(path, "r") as handle:
        scan = hdf5_read.scan_file(handle)
        addresses = {h5py.h5o.get_info(handle[p].id).addr: p for p in scan.datasets}
    assert set(addresses) == set(reference) and len(scan.datasets) == len(reference)
    tensors = {t.name: t for t in loaded.tensors}
    for address, (shape, dtype, data) in reference.items():
        tensor = tensors[addresses[address]]
        assert tensor.shape == tuple(shape)
        assert tensor.byte_order == ("big" if dtype.byteorder == ">" else "little")
        if tensor.dtype == "STRING":
            continue
        assert np.dtype(dtype).itemsize * int(np.prod(shape)) == len(data)
        streamed = b"".join(bytes(c) for c in HDF5_LOADER.iter_chunks(path, tensor, 7))
        assert streamed == data, tensor.name
        if tensor.data_offsets is not None:
            begin, end = tensor.data_offsets
            assert path.read_bytes()[begin:end] == data
    hdf5_stream.close_cached()


def test_scan_fallback_walk_matches_the_visit(tmp_path: Path) -> None:
    path = _mixed(tmp_path / "mixed.h5", 3, "latest")
    with h5py.File(path, "r") as handle:
        fast, slow = hdf5_read._visit(handle), hdf5_read._walk_groups(handle)
    assert fast.groups == slow.groups and not slow.broken
    assert len(fast.datasets) == len(slow.datasets)
    with h5py.File(path, "r") as handle:
        address = {p: h5py.h5o.get_info(handle[p].id).addr for p in fast.datasets + slow.datasets}
    assert {address[p] for p in fast.datasets} == {address[p] for p in slow.datasets}
