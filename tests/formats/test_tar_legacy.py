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
from weightaudit.formats.base import tensor_view
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


class _Ref:
    def __init__(self, key: str) -> None:
        self.key = key


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> str | None:
        return obj.key if isinstance(obj, _Ref) else None


def _benign_legacy(path: Path) -> Path:
    """Two tensors (one a strided view) on one float storage and one int tensor, as legacy_load expects them."""
    storages, tensors = io.BytesIO(), io.BytesIO()
    pickle.dump(2, storages, protocol=2)
    pickle.dump((0, "cpu", torch.FloatStorage), storages, protocol=2)
    storages.write(struct.pack("<q", 6) + struct.pack("<6f", 1, 2, 3, 4, 5, 6))
    pickle.dump((1, "cpu", torch.IntStorage), storages, protocol=2)
    storages.write(struct.pack("<q", 2) + struct.pack("<2i", 7, 8))
    pickle.dump([], storages, protocol=2)
    pickle.dump(3, tensors, protocol=2)
    for key, storage, ttype, sizes, strides, offset in ((10, 0, torch.FloatTensor, (2, 3), (3, 1), 0),
                                                        (11, 0, torch.FloatTensor, (3,), (2,), 1),
                                                        (12, 1, torch.IntTensor, (2,), (1,), 0)):
        pickle.dump((key, storage, ttype), tensors, protocol=2)
        tensors.write(struct.pack("<i", len(sizes)) + b"\x00" * 4 + struct.pack(f"<{len(sizes)}q", *sizes)
                      + struct.pack(f"<{len(strides)}q", *strides) + struct.pack("<q", offset))
    main = io.BytesIO()
    _Pickler(main, protocol=2).dump({"layer": {"weight": _Ref("10"), "column": _Ref("11")}, "steps": _Ref("12")})
    return _tar(path, {"sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
                       "pickle": main.getvalue(), "storages": storages.getvalue(), "tensors": tensors.getvalue()})


def test_benign_legacy_tar_matches_torchs_legacy_load(tmp_path: Path) -> None:
    path = _benign_legacy(tmp_path / "old.pth")
    _, loaded = load(path)
    assert loaded.verified, loaded.reason
    assert max(rules(loaded).values()) <= Severity.LOW
    expected = torch.load(path, weights_only=False)          # a file this test built from harmless globals
    flat = {"layer.weight": expected["layer"]["weight"], "layer.column": expected["layer"]["column"],
            "steps": expected["steps"]}
    ours = {t.name: t for t in loaded.tensors}
    assert sorted(ours) == sorted(flat)
    loader = sniff(read_probe(path))
    for name, tensor in flat.items():
        assert ours[name].shape == tuple(tensor.shape) and ours[name].strides == tuple(tensor.stride())
        got = b"".join(bytes(c) for c in loader.iter_chunks(path, ours[name], 4))
        assert got == tensor.contiguous().numpy().tobytes(), name


def test_legacy_tar_whose_pickle_names_a_missing_tensor_is_not_verified(tmp_path: Path) -> None:
    main = io.BytesIO()
    _Pickler(main, protocol=2).dump({"w": _Ref("99")})
    _, loaded = load(_legacy(tmp_path / "old.pth", main.getvalue()))
    assert rules(loaded)["WA159"] is Severity.LOW and not loaded.verified


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


def test_invalid_header_after_the_first_ends_the_archive_like_tarfile(tmp_path: Path) -> None:
    path = _tar(tmp_path / "a.tar", {"a.pkl": PAYLOAD, "b.pkl": pickle.dumps(1)}, tarfile.USTAR_FORMAT)
    data = bytearray(path.read_bytes())
    second = 512 + (len(PAYLOAD) + 511) // 512 * 512
    data[second + 148] ^= 1                                   # break the second header's checksum
    path.write_bytes(bytes(data))
    with tarfile.open(path) as archive:
        assert [m.name for m in archive.getmembers()] == ["a.pkl"]
    _, loaded = load(path)
    found = rules(loaded)
    assert found["WA401"] is Severity.CRITICAL and found["WA159"] is Severity.HIGH


def test_torch_checkpoint_inside_a_nemo_style_tar_is_read_in_place(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"encoder.weight": torch.arange(4, dtype=torch.float32)}, buffer)
    path = _tar(tmp_path / "model.nemo", {"model_config.yaml": b"name: x\n", "model_weights.ckpt": buffer.getvalue()})
    fmt, loaded = load(path)
    assert fmt == "pytorch-tar" and loaded.verified, loaded.reason
    assert max(rules(loaded).values(), default=Severity.INFO) <= Severity.LOW
    (tensor,) = loaded.tensors
    assert tensor.name == "model_weights.ckpt/encoder.weight"
    assert bytes(tensor_view(path, tensor)) == torch.arange(4, dtype=torch.float32).numpy().tobytes()


def test_payload_inside_a_zip_inside_a_tar_is_found(tmp_path: Path) -> None:
    import zipfile

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("archive/data.pkl", PAYLOAD)
        archive.writestr("archive/version", "3\n")
    path = _tar(tmp_path / "model.nemo", {"model_weights.ckpt": inner.getvalue()})
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL
