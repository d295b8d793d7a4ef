"""Attributes whose stored datatype libhdf5 decodes but crashes on when reading (a variable-length type that is
neither a string nor a valid sequence): the audit never asks h5py for their value; the file or dataset is unreadable
(WA171, high: exit 1, unverified) instead of the whole process dying of a segmentation fault. Each attack runs the CLI in a child process,
so a crash fails the test instead of ending the test run."""

from __future__ import annotations

import json
import subprocess
import sys
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
