"""Exit codes for the containers of issue 9 item 3 / issue 10 item 7: benign joblib passes, hidden payloads fail,
what numpy would refuse is incomplete. Every sample is built here; nothing is loaded."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import invoke

joblib = pytest.importorskip("joblib")
PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."          # os.system("id"): never loaded


def _exit(path: Path) -> int:
    return invoke(CliRunner(), "audit", path).exit_code


def test_benign_joblib_dict_of_arrays_passes(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    joblib.dump({"coef": np.ones((3, 4), dtype=np.float32), "bias": np.zeros(4)}, release / "model.joblib")
    joblib.dump({"coef": np.ones((3, 4), dtype=np.float32)}, release / "small.joblib", compress=3)
    assert _exit(release) == 0


def test_gzipped_payload_fails(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl.gz"
    path.write_bytes(gzip.compress(PAYLOAD))
    assert _exit(path) == 1


def test_npy_header_numpy_refuses_is_incomplete(tmp_path: Path) -> None:
    header = b"{'descr': '<f4', 'fortan_order': False, 'shape': (2,)}".ljust(117) + b"\n"
    path = tmp_path / "bad.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\x00" * 8)
    assert _exit(path) == 3


def test_pickle_hidden_in_config_json_fails(tmp_path: Path) -> None:
    import base64
    import json

    release = tmp_path / "release"
    release.mkdir()
    joblib.dump({"coef": np.ones(3, dtype=np.float32)}, release / "model.joblib")
    (release / "config.json").write_text(json.dumps({"model_type": "x", "init": base64.b64encode(PAYLOAD).decode()}))
    assert _exit(release) == 1
