"""Zip members read the way torch reads them, and deflated members streamed with flat memory."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from weightaudit.formats.mapped_file import FileProblem
from weightaudit.formats.zipread import entries_by_name, iter_member_range, read_zip_entries


def _zip(path: Path, members: dict[str, bytes], method: int) -> None:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_member_ranges_stream_exactly(tmp_path: Path, method: int) -> None:
    data = np.random.default_rng(0).integers(0, 8, size=3_000_000, dtype=np.uint8).tobytes()
    path = tmp_path / "a.zip"
    _zip(path, {"x/data/0": data}, method)
    (entry,) = read_zip_entries(path.read_bytes())
    for begin, end, chunk in ((0, len(data), 1 << 20), (12345, 2_000_001, 4096), (len(data) - 7, len(data), 64)):
        got = b"".join(bytes(c) for c in iter_member_range(path, entry, begin, end, chunk))
        assert got == data[begin:end]
        assert all(len(c) <= max(chunk, 1 << 20) for c in iter_member_range(path, entry, begin, end, chunk))


def test_corrupt_deflate_is_a_file_problem(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    _zip(path, {"m": bytes(range(256)) * 4000}, zipfile.ZIP_DEFLATED)
    (entry,) = read_zip_entries(path.read_bytes())
    raw = bytearray(path.read_bytes())
    raw[entry.data_offset:entry.data_offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    with pytest.raises(FileProblem):
        list(iter_member_range(path, entry, 0, entry.size, 4096))


def test_last_duplicate_name_wins(tmp_path: Path) -> None:
    path = tmp_path / "dup.zip"
    with pytest.warns(UserWarning):
        _zip(path, {"a": b"first"}, zipfile.ZIP_STORED)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("a", b"second")
    table, duplicates = entries_by_name(read_zip_entries(path.read_bytes()))
    assert duplicates == ["a"]
    assert path.read_bytes()[table["a"].data_offset:table["a"].data_offset + 6] == b"second"


def test_compressed_npz_gets_statistics_like_a_stored_one(tmp_path: Path, runner) -> None:
    import json

    from tests.conftest import invoke

    arrays = {"w": np.linspace(-1, 1, 50_000, dtype=np.float32), "b": np.arange(7, dtype=np.int64)}
    np.savez(tmp_path / "stored.npz", **arrays)
    np.savez_compressed(tmp_path / "deflated.npz", **arrays)
    result = invoke(runner, "audit", tmp_path, "--select", "WA1", "-f", "json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["summary"]["verified"] is True
    stats = {(t["file"], t["name"]): t["stats"] for t in report["tensors"]}
    for name in ("w", "b"):
        assert stats[("deflated.npz", name)] == stats[("stored.npz", name)]


def test_entries_match_zipfile_on_many_members_with_comments_and_extras(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(300):
            info = zipfile.ZipInfo(f"dir/member{index}")
            info.comment = b"c" * (index % 5)
            info.extra = b"\xfe\xca\x02\x00ab" if index % 3 == 0 else b""
            info.compress_type = zipfile.ZIP_DEFLATED if index % 2 else zipfile.ZIP_STORED
            archive.writestr(info, bytes([index % 256]) * index)
    ours = read_zip_entries(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        theirs = archive.infolist()
    assert [(e.name, e.header_offset, e.compressed_size, e.size, e.crc, e.method) for e in ours] == \
        [(i.filename, i.header_offset, i.compress_size, i.file_size, i.CRC, i.compress_type) for i in theirs]
