"""Attributes whose stored datatype libhdf5 decodes but crashes on when reading (a variable-length type that is
neither a string nor a valid sequence): the audit never asks h5py for their value; the file or dataset is unreadable
(WA171, high: exit 1, unverified) instead of the whole process dying of a segmentation fault. Each attack runs the CLI in a child process,
so a crash fails the test instead of ending the test run."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.rules import keras_samples as ks


def _corrupt_vlen_kind(path: Path, attribute: str) -> None:
    """Turn the variable-length string type of ``attribute`` (a version 1 attribute message) into vlen kind 6."""
    raw = bytearray(path.read_bytes())
    name = attribute.encode() + b"\0"
    at = raw.index(name)
    datatype = at + (len(name) + 7) // 8 * 8
    assert raw[datatype] == 0x19 and raw[datatype + 1] & 0x0F == 1, "expected a variable-length string type"
    raw[datatype + 1] = (raw[datatype + 1] & 0xF0) | 6
    path.write_bytes(bytes(raw))


def _legacy_full(path: Path) -> Path:
    return ks.write_legacy_h5(path, ks.legacy_sequential(), training={"loss": "mse"})


def _keras3_store(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        group = handle.create_group("layers/dense/vars")
        group.attrs["name"] = "dense"
        group.create_dataset("0", data=np.ones((2, 2), np.float32))
    return path


def _dtype_attribute(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("w", data=np.zeros(4, np.uint16)).attrs["dtype"] = "bfloat16"
    return path


def _weights_only(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["layer_names"] = np.array([b"dense"])
        layer = handle.create_group("dense")
        layer.attrs["weight_names"] = np.array([b"dense/kernel:0"])
        layer.create_dataset("dense/kernel:0", data=np.ones((2, 2), np.float32))
    return path


ATTACKS = {
    "training_config": (_legacy_full, "training_config"),
    "model_config": (_legacy_full, "model_config"),
    "keras_version": (_weights_only, "keras_version"),
    "vars name": (_keras3_store, "name"),
    "dataset dtype": (_dtype_attribute, "dtype"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_crashing_attribute_type_is_refused_not_read(tmp_path: Path, attack: str) -> None:
    build, attribute = ATTACKS[attack]
    path = build(tmp_path / "model.h5")
    _corrupt_vlen_kind(path, attribute)
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])      # WA171 is high: the audit fails
    report = json.loads(done.stdout)
    refused = [f for f in report["findings"] if f["rule_id"] == "WA171"]
    assert refused and all(f["severity"] == "high" for f in refused), report["findings"]
    assert any(f"attribute {attribute!r}" in f["message"] and "not a string or number" in f["message"]
               for f in refused), refused
    assert report["summary"]["verified"] is False


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_same_files_uncorrupted_are_read(tmp_path: Path, attack: str) -> None:
    build, _attribute = ATTACKS[attack]
    path = build(tmp_path / "model.h5")
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(path), "--format", "json", "--no-stats"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), (done.returncode, done.stderr[-2000:])
    report = json.loads(done.stdout)
    assert not [f for f in report["findings"] if f["rule_id"] == "WA171"] and report["summary"]["verified"]


def _string_list_file(path: Path) -> Path:
    """A legacy weights-only file whose layer_names are variable-length strings (in a global heap collection)."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = ["dense"]
        layer = handle.create_group("dense")
        layer.attrs["weight_names"] = ["dense/kernel:0"]
        layer.create_dataset("dense/kernel:0", data=np.ones((2, 2), np.float32))
    return path


def _zero_free_space(path: Path) -> None:
    """Set the size of the first global heap collection's free-space object to 0: libhdf5 then loops forever."""
    raw = bytearray(path.read_bytes())
    start = raw.index(b"GCOL")
    cursor, end = start + 16, start + int.from_bytes(raw[start + 8:start + 16], "little")
    while int.from_bytes(raw[cursor:cursor + 2], "little") != 0:          # objects 1, 2 ...: skip them
        size = int.from_bytes(raw[cursor + 8:cursor + 16], "little")
        cursor += 16 + (size + 7) // 8 * 8
        assert cursor < end
    raw[cursor + 8:cursor + 16] = bytes(8)
    path.write_bytes(bytes(raw))


def test_a_global_heap_libhdf5_never_finishes_reading_is_refused(tmp_path: Path) -> None:
    path = _string_list_file(tmp_path / "model.h5")
    _zero_free_space(path)
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    report = json.loads(done.stdout)
    assert [f["rule_id"] for f in report["findings"] if f["severity"] == "high"] == ["WA171"]
    assert "global heap collection" in report["findings"][0]["message"] and not report["summary"]["verified"]


def test_well_formed_global_heaps_are_walked_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weightaudit.formats import hdf5_gheap
    from weightaudit.formats.base import LoadOptions
    from weightaudit.formats.keras_h5 import HDF5_LOADER

    walked: list[int] = []
    original = hdf5_gheap._walk_collection
    monkeypatch.setattr(hdf5_gheap, "_walk_collection", lambda reader, address: walked.append(address) or
                        original(reader, address))
    path = _string_list_file(tmp_path / "model.h5")
    loaded = HDF5_LOADER.load(path, path.name, LoadOptions())
    assert loaded.verified and [t.name for t in loaded.tensors] == ["dense/kernel"]
    assert len(walked) >= 2 and len(set(walked)) == 1   # layer_names and weight_names, one shared collection


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_the_same_heap_inside_a_keras_archive_is_refused(tmp_path: Path, compression: int) -> None:
    inner = _keras3_store(tmp_path / "inner.h5")
    _zero_free_space(inner)
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(ks.benign_functional()))
        archive.writestr("model.weights.h5", inner.read_bytes())
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    report = json.loads(done.stdout)
    refused = [f for f in report["findings"] if f["rule_id"] == "WA169"]
    assert refused and "global heap collection" in refused[0]["message"] and not report["summary"]["verified"]


@pytest.mark.parametrize("link", [True, False], ids=["h5py path (a soft link)", "native path"])
def test_names_that_are_not_utf8_are_reported_escaped(tmp_path: Path, link: bool) -> None:
    """HDF5 link names are bytes: one that is not UTF-8 ended the audit with an internal error when the report
    was written (a lone surrogate); it is shown with \\x escapes instead, for datasets and for links."""
    path = tmp_path / "names.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset(b"w\xc9ight", data=np.ones(3, np.float32))
        handle.create_dataset("w\\xc9ight", data=np.zeros(3, np.float32))       # the escaped spelling, taken
        if link:
            handle[b"l\xffnk"] = h5py.SoftLink("/nowhere")
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert "internal error" not in done.stderr and done.returncode == (1 if link else 0), done.stderr[-2000:]
    report = json.loads(done.stdout)
    names = sorted(t["name"] for t in report["tensors"])
    assert len(names) == 2 and len(set(names)) == 2 and "w\\xc9ight" in names
    assert [f["where"] for f in report["findings"] if f["rule_id"] == "WA435"] == (["l\\xffnk"] if link else [])
