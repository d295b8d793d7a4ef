"""The loader registry's gates (weightaudit/formats/__init__.py) skip a loader without importing its module only
when that loader could not have claimed the probe: on every fixture, on one file of each format built here and on
heads of random bytes behind each magic, no loader claims a probe its gate rules out, and the gated walk picks
the same loader as asking every loader in order."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import random
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from weightaudit import formats
from weightaudit.formats import _LOADERS, all_loaders, get_loader, read_probe, sniff

ROOT = Path(__file__).resolve().parents[2]
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C     # torch's legacy serialization magic number
MAGICS = (b"", b"PK\x03\x04", b"7z\xbc\xaf\x27\x1c", b"GGUF", b"\x93NUMPY", b"\x89HDF\r\n\x1a\n", b"\x08\x07",
          b"\x80\x02", b"\x80\x04\x95", b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", b"I1\n", b"L1\n",
          b"\x1f\x8b\x08", b"BZh9", b"\xfd7zXZ\x00", b"\x5d\x00\x00\x80\x00", b"ZF0x12", b"\x04\x22\x4d\x18", b"x\x9c",
          b"x\x01", b"\x08", b"{", b"(", b"}", b"T", b"# ", b"License")


def _ungated(probe: formats.Probe) -> str | None:
    for loader in all_loaders():
        if loader.sniff(probe):
            return loader.name
    return None


def _built(folder: Path) -> list[Path]:
    """One small file of each format the fixtures lack (pickles built from harmless data only)."""
    import h5py
    import numpy as np

    data = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)
    out = {"raw.pkl": data, "raw4.pkl": pickle.dumps({"w": (1, 2)}, protocol=4), "raw0.pkl": pickle.dumps([1], 0),
           "int.pkl": pickle.dumps(1, 0), "gz.pkl.gz": gzip.compress(data), "bz.pkl.bz2": bz2.compress(data),
           "xz.pkl.xz": lzma.compress(data), "alone.pkl.lzma": lzma.compress(data, lzma.FORMAT_ALONE),
           "z.pkl.z": zlib.compress(data), "empty.bin": b"", "text.txt": b"hello\n", "onnx_like.onnx": b"\x08\x07:\x00",
           "legacy.pt": pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2),
           "legacy0.pt": pickle.dumps(LEGACY_MAGIC, 0) + pickle.dumps(1001, 0),
           "legacy_int.pt": b"I%d\n." % LEGACY_MAGIC + pickle.dumps(1001, 0)}
    for name, content in out.items():
        (folder / name).write_bytes(content)
    np.save(folder / "a.npy", np.arange(4, dtype=np.float32))
    np.savez(folder / "a.npz", w=np.arange(4))
    with zipfile.ZipFile(folder / "plain.zip", "w") as archive:
        archive.writestr("x/data.pkl", data)
    with tarfile.open(folder / "legacy.tar", "w") as archive:
        info = tarfile.TarInfo("pickle")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with h5py.File(folder / "plain.h5", "w") as handle:
        handle["w"] = np.zeros(3, np.float32)
    with h5py.File(folder / "userblock.h5", "w", userblock_size=512) as handle:
        handle["w"] = np.zeros(3, np.float32)
    rng = random.Random(15)
    for index, magic in enumerate(MAGICS):
        for size in (len(magic), 12, 600):
            (folder / f"random_{index}_{size}.bin").write_bytes(magic + rng.randbytes(max(0, size - len(magic))))
    (folder / "saved_model_like").mkdir()
    (folder / "saved_model_like" / "saved_model.pb").write_bytes(b"")
    return sorted(folder.iterdir())


def _fixtures() -> list[Path]:
    paths = [p for p in (ROOT / "fixtures").rglob("*") if not p.name.endswith(".py")]
    return sorted(paths + [ROOT / "fixtures"])


def test_no_loader_claims_a_probe_its_gate_rules_out(tmp_path: Path) -> None:
    checked = 0
    for path in _fixtures() + _built(tmp_path):
        probe = read_probe(path)
        for name, _mod, _attr, gate in _LOADERS:
            if not gate(probe):
                assert not get_loader(name).sniff(probe), f"{path}: the gate of {name} rules out a file it claims"
        loader = sniff(probe)
        assert (loader.name if loader else None) == _ungated(probe), path
        checked += 1
    assert checked > 150


def test_registry_names_and_magic_match_the_loaders() -> None:
    from weightaudit.formats import gguf, keras_h5, numpy_header, savedmodel
    from weightaudit.formats.archive_kind import SEVENZIP_MAGIC

    assert [get_loader(name).name for name, *_ in _LOADERS] == [name for name, *_ in _LOADERS]
    assert formats.GGUF_MAGIC == gguf.GGUF_MAGIC
    assert formats.NPY_MAGIC == numpy_header.NPY_MAGIC
    assert formats.ZIP_MAGIC == keras_h5.ZIP_MAGIC
    assert formats.SEVENZIP_MAGIC == SEVENZIP_MAGIC
    assert all(name.startswith(formats.SAVEDMODEL_PREFIX) for name in (*savedmodel.GRAPH_FILES, savedmodel.CHUNKED_GRAPH))
    from weightaudit.formats import compressed, raw_pickle, tar_legacy, tensorbundle, torch_pickle

    assert formats.TABLE_MAGIC == tensorbundle.TABLE_MAGIC
    assert formats.TAR_BLOCK == tar_legacy.BLOCK
    assert formats.PICKLE_FIRST_BYTES == raw_pickle._OPCODE_BYTES
    assert torch_pickle.LEGACY_HEAD[:1] == b"\x80"
    assert len(compressed.CODECS) == 7    # a new codec needs its first byte in COMPRESSED_FIRST_BYTES


@pytest.mark.parametrize("name", [name for name, *_ in _LOADERS])
def test_get_loader_gives_the_registered_instance(name: str) -> None:
    assert get_loader(name) is get_loader(name)
    assert get_loader(name) in all_loaders()
