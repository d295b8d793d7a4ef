"""Statistics of torch tensors (zip and legacy containers): the raw-offset path (stored records mapped like
safetensors, small tensors reduced together) gives what the streamed path (``iter_chunks``) gives, and both agree
with torch on a checkpoint the test writes. Only contiguous little-endian ranges of stored records may carry
``data_offsets``, and those bytes are the tensor's own."""

from __future__ import annotations

import dataclasses
import math
import struct
import zipfile
from pathlib import Path

import pytest

from weightaudit import stats as S
from weightaudit import stats_schedule
from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.formats.torch_pickle import PYTORCH_ZIP
from weightaudit.model import LoadedFile

torch = pytest.importorskip("torch")


def _checkpoint() -> dict:
    """Tensors that exercise every way a torch tensor sits in its storage."""
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(40, 30, generator=gen)
    shared = torch.arange(100, dtype=torch.float32) - 50.5
    out = {
        "tiny": torch.ones(1),
        "f32": torch.randn(257, generator=gen),
        "big": torch.randn(300_000, generator=gen),                    # more than one 256 KiB block
        "f16": torch.randn(64, generator=gen).half(),
        "bf16": torch.randn(64, generator=gen).bfloat16(),
        "f64": torch.randn(33, generator=gen).double(),
        "i64": torch.arange(-20, 20, dtype=torch.int64),
        "i8": torch.arange(-100, 100, 3, dtype=torch.int8),
        "bool": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0),
        "special": torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e38, 70000.0]),
        "transposed": base.t(),                                       # strided: streamed, never raw
        "row_slice": base[5:9],                                       # storage offset, contiguous
        "column": base[:, 3],                                         # strided view of the same storage
        "shared_head": shared[:40],                                   # views sharing one storage
        "shared_tail": shared[60:],
        "tied_a": shared,
        "expanded": torch.ones(1).expand(50),                         # stride 0: repeats bytes
    }
    out["tied_b"] = out["tied_a"]
    return out


@pytest.fixture(scope="module", params=["zip", "legacy"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The same tensors as a torch zip and as the pre-1.6 stream (storages back to back after the pickles)."""
    path = tmp_path_factory.mktemp("torch_stats") / "model.pt"
    tensors = _checkpoint()
    torch.save(tensors, path, _use_new_zipfile_serialization=request.param == "zip")
    return path, tensors


def _load(path: Path) -> LoadedFile:
    loader = sniff(read_probe(path))
    assert loader is not None and loader.name in ("pytorch-zip", "pytorch-legacy")
    return loader.load(path, path.name, LoadOptions())


def _stats(path: Path, loaded: LoadedFile, raw: bool, monkeypatch: pytest.MonkeyPatch) -> dict:
    formats = set(stats_schedule.OFFSETS_ARE_RAW)
    formats = formats | {loaded.format} if raw else formats - {loaded.format}
    with monkeypatch.context() as patch:
        patch.setattr(stats_schedule, "OFFSETS_ARE_RAW", frozenset(formats))
        found = S.compute_stats(path.parent, [loaded], workers=1)
    return {name: value for (_, name), value in found.items()}


def test_raw_offsets_only_for_contiguous_ranges_of_stored_records(checkpoint: tuple[Path, dict]) -> None:
    path, tensors = checkpoint
    loaded = _load(path)
    assert loaded.verified
    by_name = {t.name: t for t in loaded.tensors}
    raw = {name for name, t in by_name.items() if t.data_offsets is not None}
    assert raw == {name for name, t in tensors.items() if t.is_contiguous()}
    assert {"transposed", "column", "expanded"}.isdisjoint(raw)
    data = path.read_bytes()
    for name in raw:
        begin, end = by_name[name].data_offsets
        expected = tensors[name].contiguous()
        if expected.dtype == torch.bfloat16:
            expected = expected.view(torch.int16)
        assert data[begin:end] == expected.numpy().tobytes(), name


def test_statistics_are_the_same_mapped_or_streamed_and_match_torch(checkpoint: tuple[Path, dict],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, tensors = checkpoint
    loaded = _load(path)
    mapped = _stats(path, loaded, True, monkeypatch)
    streamed = _stats(path, loaded, False, monkeypatch)
    assert set(mapped) == set(streamed) >= set(tensors) - {"empty"}
    for name in mapped:
        _same(mapped[name], streamed[name], name)
        _matches_torch(mapped[name], tensors[name], name)


def _same(a: object, b: object, name: str) -> None:
    """Equal field by field; the mean and std to the last few bits (the small-tensor batch of ``stats_small``
    and the block kernel sum in different orders), NaN equal to NaN."""
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name in ("mean", "std") and x is not None and y is not None:
            assert x == pytest.approx(y, rel=1e-6, abs=1e-9), (name, field.name)
        elif not (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)):
            assert x == y, (name, field.name)


def _matches_torch(stats: object, tensor: object, name: str) -> None:
    values = tensor.detach().reshape(-1).double()
    assert stats.count == values.numel(), name
    finite = values[torch.isfinite(values)]
    assert stats.nan == int(torch.isnan(values).sum()), name
    assert stats.pos_inf == int((values == float("inf")).sum()), name
    assert stats.neg_inf == int((values == float("-inf")).sum()), name
    assert stats.zeros == int((values == 0).sum()), name
    if finite.numel():
        assert stats.min == pytest.approx(float(finite.min())), name
        assert stats.max == pytest.approx(float(finite.max())), name
        assert stats.mean == pytest.approx(float(finite.mean()), rel=1e-5, abs=1e-6), name


def _shortened(path: Path, out: Path, member: str, missing: int) -> Path:
    """A copy of ``path`` whose central directory says ``member`` is stored in ``missing`` fewer bytes than its
    uncompressed size."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + nlen].decode() == member:
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    assert pos >= 0
    size = struct.unpack_from("<I", data, pos + 20)[0]
    struct.pack_into("<I", data, pos + 20, size - missing)
    out.write_bytes(bytes(data))
    return out


def test_a_record_shorter_than_its_declared_size_is_never_mapped(checkpoint: tuple[Path, dict],
                                                                  tmp_path: Path) -> None:
    path, _ = checkpoint
    if not zipfile.is_zipfile(path):
        pytest.skip("a zip central directory only")
    with zipfile.ZipFile(path) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/data/1"))    # "f32": 257 floats, storage 1
    odd = _shortened(path, tmp_path / "odd.pt", member, 8)
    loaded = PYTORCH_ZIP.load(odd, odd.name, LoadOptions())
    assert next(t for t in loaded.tensors if t.name == "f32").data_offsets is None
    assert next(t for t in loaded.tensors if t.name == "f16").data_offsets is not None
