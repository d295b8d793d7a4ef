"""The strict safetensors header parser: one fixture per rule, exact findings, byte views."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from weightaudit.formats import read_probe, sniff
from weightaudit.formats.base import iter_contiguous_chunks, tensor_view
from weightaudit.formats.safetensors import LOADER, parse
from weightaudit.model import FileStatus

from tests.conftest import FIXTURES

sys.path.insert(0, str(FIXTURES))
import make_fixtures  # noqa: E402

MALFORMED = FIXTURES / "malformed"
RULE_FILES = sorted(p for p in MALFORMED.glob("WA1*.safetensors"))


def test_every_header_rule_has_a_fixture() -> None:
    from weightaudit.rules import all_rules

    header_rules = {r.id for r in all_rules() if "safetensors" in r.tags}
    assert {p.name[:5] for p in RULE_FILES} == header_rules


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_malformed_file_triggers_exactly_its_rule(path: Path) -> None:
    loaded = parse(path, path.name)
    assert [f.rule_id for f in loaded.findings] == [path.name[:5]]
    assert all(f.path == path.name for f in loaded.findings)


def test_valid_file_has_no_findings_and_matches_reference_library() -> None:
    from safetensors import safe_open

    path = MALFORMED / "valid.safetensors"
    loaded = parse(path, "valid.safetensors")
    assert loaded.findings == ()
    assert loaded.status is FileStatus.OK and loaded.verified
    with safe_open(str(path), framework="numpy") as ref:
        assert sorted(ref.keys()) == [t.name for t in loaded.tensors]
        for tensor in loaded.tensors:
            expected = ref.get_tensor(tensor.name)
            assert list(expected.shape) == list(tensor.shape)
            view = np.frombuffer(tensor_view(path, tensor), dtype=expected.dtype).reshape(expected.shape)
            np.testing.assert_array_equal(view, expected)


def test_unparseable_headers_are_errors_not_verified() -> None:
    for name in ("WA101", "WA102", "WA103", "WA104", "WA105"):
        path = next(MALFORMED.glob(f"{name}-*"))
        loaded = parse(path, path.name)
        assert loaded.status is FileStatus.ERROR and not loaded.verified
        assert loaded.reason and "\n" not in loaded.reason


def test_layout_rules_keep_the_file_readable_but_flagged() -> None:
    path = next(MALFORMED.glob("WA106-*"))
    loaded = parse(path, path.name)
    assert loaded.verified and [t.name for t in loaded.tensors] == ["a"]
    assert loaded.findings[0].severity.label == "high"


def test_committed_fixtures_match_the_generator() -> None:
    for name, data in make_fixtures.malformed_files().items():
        assert (MALFORMED / name).read_bytes() == data, f"regenerate fixtures: {name} is stale"


def test_offsets_are_absolute_and_views_are_zero_copy(tmp_path: Path) -> None:
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "ids": np.arange(5, dtype=np.int64)}
    path = tmp_path / "m.safetensors"
    path.write_bytes(make_fixtures.encode(arrays, {"format": "pt"}))
    loaded = parse(path, "m.safetensors")
    for tensor in loaded.tensors:
        begin, end = tensor.data_offsets
        raw = path.read_bytes()[begin:end]
        assert raw == arrays[tensor.name].tobytes()
        view = tensor_view(path, tensor)
        assert isinstance(view.obj, __import__("mmap").mmap)   # backed by the map, not a copy
        assert bytes(view) == raw
        chunks = b"".join(bytes(c) for c in iter_contiguous_chunks(path, begin, end, chunk_bytes=7))
        assert chunks == raw


def test_huge_declared_shape_does_not_overflow(tmp_path: Path) -> None:
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "x": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "big.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    loaded = parse(path, "big.safetensors")
    assert [f.rule_id for f in loaded.findings] == ["WA109"]
    assert "overflows" in loaded.findings[0].message


def test_sniffed_by_content_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(make_fixtures.encode({"a": np.zeros(2, np.float32)}, {"format": "pt"}))
    assert sniff(read_probe(path)) is LOADER
    other = tmp_path / "notes.txt"
    other.write_text("hello world, this is text")
    assert not LOADER.sniff(read_probe(other))


def test_header_is_read_without_reading_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large file: parse() reads 8 + N bytes, never the data section."""
    path = tmp_path / "large.safetensors"
    size = 64 * 1024 * 1024
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(8 + len(header) + size)
    reads: list[int] = []
    real_open = open

    class CountingFile:
        def __init__(self, handle):
            self._h = handle

        def read(self, n=-1):
            data = self._h.read(n)
            reads.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self._h, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self._h.close()

    import weightaudit.formats.safetensors as module
    monkeypatch.setattr(module, "open", lambda p, mode="r": CountingFile(real_open(p, mode)), raising=False)
    loaded = parse(path, "large.safetensors")
    assert loaded.findings == () and loaded.tensors[0].parameter_count == size
    assert sum(reads) == 8 + len(header)
