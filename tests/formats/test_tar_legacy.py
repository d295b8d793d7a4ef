"""Tar archives: torch's legacy (< 0.4) tar checkpoints and other tars of pickles, parsed by hand, every pickle
scanned. Samples are built here with tarfile and pickle.dumps of harmless values (never loaded)."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import pytest

from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.formats.tar_legacy import is_tar_header, iter_tar_members
from weightaudit.model import LoadedFile, Severity

torch = pytest.importorskip("torch")
PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."          # os.system("id"): never loaded


def _storages() -> bytes:
    out = io.BytesIO()
    pickle.dump(1, out, protocol=2)
    pickle.dump(("0", "cpu", torch.FloatStorage), out, protocol=2)
    out.write(struct.pack("<q", 3) + struct.pack("<3f", 1, 2, 3))
    pickle.dump([], out, protocol=2)
    return out.getvalue()


def _tensors() -> bytes:
    out = io.BytesIO()
    pickle.dump(1, out, protocol=2)
    pickle.dump(("1", "0", torch.FloatTensor), out, protocol=2)
    out.write(struct.pack("<i", 1) + b"\x00" * 4 + struct.pack("<q", 3) + struct.pack("<q", 1) + struct.pack("<q", 0))
    return out.getvalue()


def _tar(path: Path, members: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def load(path: Path) -> tuple[str, LoadedFile]:
    loader = sniff(read_probe(path))
    assert loader is not None, path
    return loader.name, loader.load(path, path.name, LoadOptions())


def rules(loaded: LoadedFile) -> dict[str, Severity]:
    """The highest severity of each rule that fired."""
    found: dict[str, Severity] = {}
    for finding in loaded.findings:
        found[finding.rule_id] = max(found.get(finding.rule_id, finding.severity), finding.severity)
    return found


def _legacy(path: Path, main: bytes) -> Path:
    return _tar(path, {"sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
                       "pickle": main, "storages": _storages(), "tensors": _tensors()})


def test_legacy_tar_with_a_payload_in_its_object_pickle_is_critical(tmp_path: Path) -> None:
    fmt, loaded = load(_legacy(tmp_path / "old.pth", PAYLOAD))
    assert fmt == "pytorch-tar" and loaded.facts["torch_tar"]
    assert rules(loaded)["WA401"] is Severity.CRITICAL


def test_payload_in_a_storage_record_is_found(tmp_path: Path) -> None:
    storages = _storages()
    bad = storages[:-len(pickle.dumps([], protocol=2))] + PAYLOAD          # the views pickle replaced
    path = _tar(tmp_path / "old.pth", {"pickle": pickle.dumps({"w": 1}, protocol=2), "storages": bad,
                                       "tensors": _tensors()})
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL


def test_benign_legacy_tar_is_scanned_but_not_verified(tmp_path: Path) -> None:
    _, loaded = load(_legacy(tmp_path / "old.pth", pickle.dumps({"w": "0"}, protocol=2)))
    found = rules(loaded)
    assert found["WA159"] is Severity.LOW and max(found.values()) <= Severity.LOW
    assert not loaded.verified


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_and_long_names_match_tarfile(tmp_path: Path, fmt: int) -> None:
    long_name = "d/" * 80 + "weights.pkl"
    path = _tar(tmp_path / "a.tar", {"a.pkl": pickle.dumps(1), long_name: PAYLOAD, "c": b"x" * 1000}, fmt)
    data = path.read_bytes()
    assert is_tar_header(data)
    ours = [(m.name, m.size, bytes(memoryview(data)[m.offset:m.offset + m.size])) for m in iter_tar_members(memoryview(data))]
    with tarfile.open(path) as archive:
        theirs = [(m.name, m.size, archive.extractfile(m).read()) for m in archive.getmembers()]
    assert ours == theirs
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL and rules(loaded)["WA150"] is Severity.MEDIUM


def test_bad_checksum_is_not_a_tar(tmp_path: Path) -> None:
    path = _tar(tmp_path / "a.tar", {"a.pkl": PAYLOAD})
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    assert not is_tar_header(bytes(data))


def test_7z_archive_is_unverified_and_its_stored_pickles_scanned(tmp_path: Path) -> None:
    path = tmp_path / "model.7z"
    path.write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24 + pickle.dumps(b"", protocol=4)[:0]
                     + b"\x80\x04\x95" + struct.pack("<Q", len(PAYLOAD) - 2) + PAYLOAD[2:])
    fmt, loaded = load(path)
    found = rules(loaded)
    assert found["WA158"] is Severity.HIGH and found["WA401"] is Severity.CRITICAL and not loaded.verified


def test_storages_member_that_is_a_symlink_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w") as archive:
        link = tarfile.TarInfo("storages")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
        for name, data in (("pickle", pickle.dumps({"w": "0"}, protocol=2)), ("tensors", _tensors()),
                           ("../escape.pkl", PAYLOAD)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    _, loaded = load(path)
    found = rules(loaded)
    assert found["WA159"] is Severity.HIGH and found["WA149"] is Severity.HIGH and found["WA401"] is Severity.CRITICAL
    assert not loaded.verified
