""".npy/.npz read as numpy reads them: header keys, header size, dtype spellings, object arrays, npz members.

Files are built here; numpy is only asked to *parse headers* (read_magic/_read_array_header: no unpickling) for
the differential test, and np.save/np.savez write the benign samples.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npformat

from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.formats.numpy_header import NpyRefused, describe_dtype, parse_literal, read_npy_header
from weightaudit.model import FileStatus, LoadedFile, Severity

PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."          # os.system("id"): never loaded


def npy(header: str, body: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy file with this header text (padded like numpy pads it) and body."""
    fmt = "<H" if version == (1, 0) else "<I"
    prefix_len = 8 + struct.calcsize(fmt)
    text = header.encode("latin-1")
    pad = 64 - (prefix_len + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(text)) + text + body


def load(path: Path) -> tuple[str, LoadedFile]:
    loader = sniff(read_probe(path))
    assert loader is not None, path
    return loader.name, loader.load(path, path.name, LoadOptions())


def rules(loaded: LoadedFile) -> dict[str, Severity]:
    return {f.rule_id: f.severity for f in loaded.findings}


def numpy_accepts(data: bytes) -> bool:
    handle = io.BytesIO(data)
    try:
        version = npformat.read_magic(handle)
        if version == (1, 0):
            npformat.read_array_header_1_0(handle)          # parses the header only
        else:
            npformat.read_array_header_2_0(handle)
    except Exception:                                     # ValueError, SyntaxError, tokenize.TokenError ...
        return False
    return True


HEADERS = [
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
    "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': ()}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': 2}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}",
    "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
    "{'descr': '<f4', 'fortan_order': False, 'shape': (2,)}",        # misspelled key
    "{'descr': '<f4', 'shape': (2,)}",                               # missing key
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",  # extra key
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,),",       # unclosed
    "['descr', 'fortran_order', 'shape']",
    "{'descr': [('a', '<f4'), ('b', '|O')], 'fortran_order': False, 'shape': (1,)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} # trailing",
]


@pytest.mark.parametrize("header", HEADERS)
def test_header_accepted_exactly_when_numpy_accepts_it(header: str) -> None:
    data = npy(header, b"\x00" * 64)
    try:
        read_npy_header(data)
        ours = True
    except NpyRefused:
        ours = False
    assert ours == numpy_accepts(data), header


def test_misspelled_key_is_refused_and_not_verified(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    path.write_bytes(npy("{'descr': '<f4', 'fortan_order': False, 'shape': (2,)}", b"\x00" * 8))
    _, loaded = load(path)
    assert loaded.status is FileStatus.ERROR and not loaded.verified
    assert rules(loaded)["WA157"] is Severity.MEDIUM


def test_oversized_header_is_refused_like_numpy(tmp_path: Path) -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}" + " " * 20_000
    data = npy(header, b"\x00" * 8, version=(2, 0))
    assert not numpy_accepts(data)
    path = tmp_path / "big.npy"
    path.write_bytes(data)
    _, loaded = load(path)
    assert "WA157" in rules(loaded) and not loaded.verified


def test_deeply_nested_header_is_refused_without_recursion_error() -> None:
    with pytest.raises(ValueError):
        parse_literal("(" * 5000 + ")" * 5000)


@pytest.mark.parametrize("descr", ["'O'", "'|O'", "'<O'", "'>O'", "'=O'", "'O8'", "'object'", "'object_'",
                                   "'f4,O'", "'(2,)O'", "[('a', '<f4'), ('b', '|O')]", "('|O', (2,))",
                                   "[('a', [('b', '|O')])]", "[(('title', 'a'), '|O')]"])
def test_object_dtype_spellings_scan_the_pickle(tmp_path: Path, descr: str) -> None:
    data = npy(f"{{'descr': {descr}, 'fortran_order': False, 'shape': (1,)}}", PAYLOAD)
    assert numpy_accepts(data)
    assert np.lib.format.descr_to_dtype(read_npy_header(data).descr).hasobject
    path = tmp_path / "obj.npy"
    path.write_bytes(data)
    _, loaded = load(path)
    found = rules(loaded)
    assert found["WA416"] is Severity.LOW and found["WA401"] is Severity.CRITICAL, descr


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "|u1", "<i8", "|b1", "<c8", "<f2"])
def test_numeric_dtypes_match_numpy(tmp_path: Path, dtype: str) -> None:
    array = np.arange(6).astype(dtype).reshape(2, 3)
    path = tmp_path / "a.npy"
    np.save(path, array)
    _, loaded = load(path)
    assert loaded.verified and not describe_dtype(dtype).has_object
    (tensor,) = loaded.tensors
    assert tensor.shape == (2, 3)
    assert tensor.byte_order == ("big" if array.dtype.byteorder == ">" else "little")


def _npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_npz_member_that_is_not_an_array_is_not_verified(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3, dtype=np.float32))
    path = tmp_path / "weights.npz"
    _npz(path, {"w.npy": buffer.getvalue(), "notes.npy": b"not an array at all"})
    _, loaded = load(path)
    assert rules(loaded)["WA157"] is Severity.MEDIUM and not loaded.verified
    assert [t.name for t in loaded.tensors] == ["w"]


def test_npz_with_a_refused_header_member_is_not_verified(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    _npz(path, {"w.npy": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", b"\x00" * 8)})
    _, loaded = load(path)
    assert "WA157" in rules(loaded) and not loaded.verified


@pytest.mark.parametrize("name", ["weights.npz", "archive.zip"])
def test_archive_whose_central_directory_zipfile_rejects_is_not_verified(tmp_path: Path, name: str) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3, dtype=np.float32))
    path = tmp_path / name
    _npz(path, {"w.npy": buffer.getvalue()} if name.endswith(".npz") else {"model.pkl": PAYLOAD})
    data = bytearray(path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    size = struct.unpack_from("<I", data, eocd + 12)[0]
    struct.pack_into("<I", data, eocd + 12, size + 10)    # zipfile reads past the last entry and refuses
    path.write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path)
    _, loaded = load(path)
    assert "WA157" in rules(loaded) and not loaded.verified


def test_benign_npz_is_verified(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.ones(3, dtype=np.float32), b=np.zeros(2, dtype=np.int64))
    _, loaded = load(path)
    assert loaded.verified and sorted(t.name for t in loaded.tensors) == ["b", "w"]
    assert "WA157" not in rules(loaded)


def test_fortran_order_arrays_carry_column_major_strides(tmp_path: Path) -> None:
    array = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    path = tmp_path / "f.npy"
    np.save(path, array)
    _, loaded = load(path)
    (tensor,) = loaded.tensors
    assert tensor.strides == tuple(s // array.itemsize for s in array.strides) == (1, 2)


def test_compressed_member_of_a_pickle_archive_is_not_silently_skipped(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "bundle.zip"
    _npz(path, {"model.pkl": pickle_bytes(), "inner.pkl.gz": gzip.compress(PAYLOAD)})
    _, loaded = load(path)
    assert rules(loaded)["WA158"] is Severity.HIGH and not loaded.verified


def pickle_bytes() -> bytes:
    import pickle

    return pickle.dumps({"a": 1}, protocol=2)
