"""HDF5 superblocks where libhdf5 finds them (0, 512, 1024, ... every power of two), and pickles in the user block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.model import Severity

h5py = pytest.importorskip("h5py")
PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."          # os.system("id"): never loaded


def _hdf5(path: Path, userblock: int, prefix: bytes = b"") -> Path:
    kwargs = {"userblock_size": userblock} if userblock else {}
    with h5py.File(path, "w", **kwargs) as handle:
        handle.create_dataset("dense/kernel", data=np.ones((2, 3), dtype=np.float32))
    if prefix:
        assert len(prefix) <= userblock
        with open(path, "r+b") as handle:
            handle.write(prefix)
    return path


@pytest.mark.parametrize("userblock", [0, 512, 1024, 4096, 8192, 65536])
def test_superblock_found_at_every_offset_libhdf5_searches(tmp_path: Path, userblock: int) -> None:
    path = _hdf5(tmp_path / "weights.h5", userblock, b"junk in front" if userblock else b"")
    with h5py.File(path, "r") as handle:                      # libhdf5 itself opens it
        assert "dense/kernel" in handle
    loader = sniff(read_probe(path))
    assert loader is not None and loader.name == "hdf5"
    loaded = loader.load(path, path.name, LoadOptions())
    assert loaded.verified and [t.shape for t in loaded.tensors] == [(2, 3)]
    assert not [f for f in loaded.findings if f.rule_id == "WA427"]


@pytest.mark.parametrize("userblock", [512, 8192])
def test_pickle_in_the_user_block_is_scanned(tmp_path: Path, userblock: int) -> None:
    path = _hdf5(tmp_path / "model.h5", userblock, PAYLOAD)
    loader = sniff(read_probe(path))
    assert loader is not None and loader.name == "hdf5"
    loaded = loader.load(path, path.name, LoadOptions())
    found = {f.rule_id: f.severity for f in loaded.findings}
    assert found["WA427"] is Severity.HIGH and found["WA401"] is Severity.CRITICAL
