"""7z archives: member names read from the headers (plain and LZMA-encoded), members never unpacked (WA158).

The archives are written here by a minimal writer following 7-Zip's 7zFormat.txt (one folder, Copy coder)."""

from __future__ import annotations

import lzma
import struct
import zlib
from pathlib import Path

import pytest

from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.formats.mapped_file import FileProblem
from weightaudit.formats.sevenzip import list_7z_names
from weightaudit.model import Severity

PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."          # os.system("id"): never loaded


def num(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    assert value < 0x4000
    return bytes([0x80 | (value >> 8), value & 0xFF])


def _header(files: dict[str, bytes]) -> bytes:
    sizes = [len(d) for d in files.values()]
    names = b"\x00" + b"".join(n.encode("utf-16-le") + b"\x00\x00" for n in files)
    main = (b"\x06" + num(0) + num(1) + b"\x09" + num(sum(sizes)) + b"\x00"
            + b"\x07\x0b" + num(1) + b"\x00" + num(1) + b"\x01\x00" + b"\x0c" + num(sum(sizes)) + b"\x00"
            + b"\x08\x0d" + num(len(files)) + b"\x09" + b"".join(num(s) for s in sizes[:-1]) + b"\x00" + b"\x00")
    return b"\x01\x04" + main + b"\x05" + num(len(files)) + b"\x11" + num(len(names)) + names + b"\x00" + b"\x00"


def seven_zip(files: dict[str, bytes], encode: bool) -> bytes:
    packed = b"".join(files.values())
    header = _header(files)
    if encode:
        filters = [{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 16, "lc": 3, "lp": 0, "pb": 2}]
        body = lzma.compress(header, format=lzma.FORMAT_RAW, filters=filters)
        props = bytes([(2 * 5 + 0) * 9 + 3]) + struct.pack("<I", 1 << 16)
        encoded = (b"\x17" + b"\x06" + num(len(packed)) + num(1) + b"\x09" + num(len(body)) + b"\x00"
                   + b"\x07\x0b" + num(1) + b"\x00" + num(1) + b"\x23\x03\x01\x01" + num(5) + props
                   + b"\x0c" + num(len(header)) + b"\x00" + b"\x00")
        packed, header = packed + body, encoded
    start = struct.pack("<QQI", len(packed), len(header), zlib.crc32(header))
    return b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", zlib.crc32(start)) + start + packed + header


@pytest.mark.parametrize("encode", [False, True])
def test_member_names_are_listed(encode: bool) -> None:
    data = seven_zip({"model/weights.pkl": PAYLOAD, "README.md": b"hello", "dir/é.bin": b"\x00" * 300}, encode)
    assert list_7z_names(memoryview(data)) == ["model/weights.pkl", "README.md", "dir/é.bin"]


@pytest.mark.parametrize("encode", [False, True])
def test_7z_with_a_pickle_is_unverified_names_it_and_scans_stored_bytes(tmp_path: Path, encode: bool) -> None:
    path = tmp_path / "release.7z"
    path.write_bytes(seven_zip({"model/weights.pkl": PAYLOAD, "README.md": b"hello"}, encode))
    loader = sniff(read_probe(path))
    assert loader is not None and loader.name == "pickle-archive"
    loaded = loader.load(path, path.name, LoadOptions())
    wa158 = [f for f in loaded.findings if f.rule_id == "WA158"]
    assert wa158 and wa158[0].severity is Severity.HIGH and "model/weights.pkl" in wa158[0].message
    assert any(f.rule_id == "WA401" and f.severity is Severity.CRITICAL for f in loaded.findings)
    assert not loaded.verified and loaded.facts["archive_member_count"] == 2


def test_broken_headers_are_a_file_problem() -> None:
    data = bytearray(seven_zip({"a.pkl": PAYLOAD}, encode=True))
    data[-5] ^= 0xFF
    with pytest.raises(FileProblem):
        list_7z_names(memoryview(bytes(data[:40])))
