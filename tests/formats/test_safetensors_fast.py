"""The one-pass reading of a well-formed safetensors header gives what the entry-by-entry checks give."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from weightaudit.formats import safetensors as st
from weightaudit.model import TensorInfo


def _write(path: Path, header: dict, data_size: int) -> Path:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)   # aligned data, as writers pad it
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * data_size)
    return path


def _careful(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(st, "_well_formed", lambda *args: None)
    return st.parse(path, "m.safetensors")


HEADERS = {
    "plain": ({"b": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
               "a": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
               "s": {"dtype": "I64", "shape": [], "data_offsets": [32, 40]},
               "e": {"dtype": "F16", "shape": [0, 5], "data_offsets": [40, 40]}}, 40),
    "keys in another order": ({"w": {"shape": [2], "data_offsets": [0, 8], "dtype": "F32"}}, 8),
    "hole": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, 16),
    "overlap": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "v": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, 8),
    "size mismatch": ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8),
    "trailing bytes": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 12),
    "misaligned": ({"u": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                    "w": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]}}, 5),
    "bool in shape": ({"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, 4),
    "extra field": ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, 4),
    "unknown dtype": ({"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, 4),
    "no tensors, no data": ({}, 0),
    "no tensors, data": ({}, 8),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_one_pass_equals_the_careful_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    header, data_size = HEADERS[case]
    path = _write(tmp_path / "m.safetensors", {"__metadata__": {"format": "pt"}, **header}, data_size)
    fast = st.parse(path, "m.safetensors")
    careful = _careful(path, monkeypatch)
    assert fast == careful
    assert [t.name for t in fast.tensors] == sorted(t.name for t in fast.tensors)
    if case in ("plain", "keys in another order", "no tensors, no data"):
        assert not fast.findings and fast.verified


def test_tensor_records_equal_the_constructed_ones() -> None:
    made = st._tensor_info("w", "F32", (2, 3), "m.safetensors", (8, 32))
    assert made == TensorInfo(name="w", dtype="F32", shape=(2, 3), file="m.safetensors", data_offsets=(8, 32))
    assert vars(made) == vars(TensorInfo("w", "F32", (2, 3), "m.safetensors", (8, 32)))
