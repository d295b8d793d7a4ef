"""Compressed pickles: recognised by magic, inflated step by step under a named bound, then scanned."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import zlib
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest

from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.limits import DEFAULT_LIMITS
from weightaudit.model import FileStatus, LoadedFile, Severity

PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."          # os.system("id"): never loaded
BENIGN = pickle.dumps(OrderedDict(a=[1, 2, 3], b="text"), protocol=2)


def _zf(data: bytes) -> bytes:
    """joblib < 0.10's compressed file: b'ZF' + hex length padded to 19 characters + zlib stream."""
    return b"ZF" + hex(len(data)).encode().ljust(19) + zlib.compress(data)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zlib": zlib.compress,
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE), "joblib-zf": _zf,
}


def load(path: Path, **limits: int) -> tuple[str, LoadedFile]:
    loader = sniff(read_probe(path))
    assert loader is not None, path
    return loader.name, loader.load(path, path.name, LoadOptions(limits=replace(DEFAULT_LIMITS, **limits)))


def rules(loaded: LoadedFile) -> dict[str, Severity]:
    return {f.rule_id: f.severity for f in loaded.findings}


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_compressed_payload_is_critical(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "model.pkl.z"
    path.write_bytes(COMPRESSORS[codec](PAYLOAD))
    fmt, loaded = load(path)
    assert fmt == "compressed-pickle" and loaded.facts["compression"] == codec
    found = rules(loaded)
    assert found["WA401"] is Severity.CRITICAL and found["WA428"] is Severity.LOW


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_compressed_benign_pickle_is_verified(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "state.pkl.z"
    path.write_bytes(COMPRESSORS[codec](BENIGN))
    _, loaded = load(path)
    assert loaded.status is FileStatus.OK and loaded.verified, loaded.reason
    assert max(f.severity for f in loaded.findings) <= Severity.LOW


def test_payload_in_a_second_gzip_member_is_found(tmp_path: Path) -> None:
    path = tmp_path / "two.pkl.gz"
    path.write_bytes(gzip.compress(BENIGN) + gzip.compress(PAYLOAD))
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL


def test_gzip_inside_gzip_is_unwrapped(tmp_path: Path) -> None:
    path = tmp_path / "twice.pkl.gz"
    path.write_bytes(gzip.compress(gzip.compress(PAYLOAD)))
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL


def test_inflation_bound_is_a_finding_and_not_verified(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pkl.gz"
    big = pickle.dumps(b"\x00" * 5_000_000, protocol=4)
    path.write_bytes(gzip.compress(big))
    _, loaded = load(path, bytes_inflated=100_000)
    assert rules(loaded)["WA156"] is Severity.HIGH
    assert not loaded.verified


def test_truncated_stream_is_not_verified(tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl.gz"
    path.write_bytes(gzip.compress(PAYLOAD * 50)[:40])
    _, loaded = load(path)
    assert loaded.status is FileStatus.ERROR and not loaded.verified


def test_lz4_frame_is_recognised_but_unscanned(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x04\x22\x4d\x18" + b"\x00" * 64)
    fmt, loaded = load(path)
    assert fmt == "compressed-pickle" and rules(loaded)["WA158"] is Severity.HIGH and not loaded.verified


def test_gzip_of_plain_text_is_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt.gz"
    path.write_bytes(gzip.compress(b"just some release notes\n" * 10))
    assert sniff(read_probe(path)) is None


def test_compressed_torch_checkpoint_is_scanned(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    path = tmp_path / "model.pt.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    fmt, loaded = load(path)
    assert fmt == "compressed-pickle" and [t.name for t in loaded.tensors] == ["w"] and loaded.verified
    assert max(f.severity for f in loaded.findings) <= Severity.LOW
    loader = sniff(read_probe(path))
    streamed = b"".join(bytes(c) for c in loader.iter_chunks(path, loaded.tensors[0], 5))
    assert streamed == torch.ones(3).numpy().tobytes()


@pytest.mark.parametrize("codec", ["gzip", "bz2", "xz"])
def test_tensors_of_a_compressed_checkpoint_are_inflated_once(tmp_path: Path, codec: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Streaming every tensor inflates the file once per process, not once per tensor (which was quadratic)."""
    torch = pytest.importorskip("torch")
    from weightaudit.formats import compressed

    tensors = {f"layer{i}.weight": torch.arange(i, i + 40, dtype=torch.float32) for i in range(30)}
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    pack = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[codec]
    path = tmp_path / "model.pt.z"
    path.write_bytes(pack(buffer.getvalue()))
    fmt, loaded = load(path)
    assert fmt == "compressed-pickle" and loaded.verified and len(loaded.tensors) == 30
    loader = sniff(read_probe(path))
    passes = []
    real = compressed._iter_inflated
    monkeypatch.setattr(compressed, "_iter_inflated", lambda *a: passes.append(1) or real(*a))
    for tensor in reversed(loaded.tensors):          # backwards: later ranges first, then earlier ones
        streamed = b"".join(bytes(c) for c in loader.iter_chunks(path, tensor, 7))
        assert streamed == tensors[tensor.name].numpy().tobytes(), tensor.name
    assert len(passes) == 1


def test_a_rewritten_compressed_file_is_inflated_again(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt.gz"
    loader = None
    for value in (1.0, 2.0):
        buffer = io.BytesIO()
        torch.save({"w": torch.full((5,), value)}, buffer)
        path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
        _, loaded = load(path)
        loader = loader or sniff(read_probe(path))
        streamed = b"".join(bytes(c) for c in loader.iter_chunks(path, loaded.tensors[0]))
        assert streamed == torch.full((5,), value).numpy().tobytes()


def test_payload_before_corrupt_data_is_still_found(tmp_path: Path) -> None:
    """pickle.load(gzip.open(...)) runs the payload before it reaches the corruption: scan what inflated."""
    stream = gzip.compress(PAYLOAD + b"\x00" * 2_000_000)
    path = tmp_path / "broken.pkl.gz"
    path.write_bytes(stream[: len(stream) // 2] + b"\xff" * 64)
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL
    assert loaded.status is FileStatus.ERROR and not loaded.verified
