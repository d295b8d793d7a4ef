"""The Keras/TF samples of ../shared/corpus/security get the verdict their MANIFEST label expects."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.rules.test_keras_tf_rules import run_rules
from weightaudit.formats import read_probe, sniff
from weightaudit.formats.base import LoadOptions
from weightaudit.model import FileStatus, Severity

pytestmark = pytest.mark.corpus
KERAS_TF_MARKERS = ("/keras/", "/tensorflow/", ".keras", ".h5", ".hdf5", "saved_model.pb")


def _rows() -> list[dict[str, str]]:
    manifest = CORPUS / "MANIFEST.csv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    unique = {row["path"]: row for row in rows if any(m in row["path"] for m in KERAS_TF_MARKERS)}
    return [unique[key] for key in sorted(unique)]


ROWS = _rows()


def _target(row: dict[str, str]) -> Path:
    path = CORPUS / row["path"]
    return path.parent if path.name == "saved_model.pb" else path


@pytest.mark.skipif(not ROWS, reason="../shared/corpus/security not present")
@pytest.mark.parametrize("row", ROWS, ids=[r["path"].rsplit("/", 2)[-2] + "/" + r["path"].rsplit("/", 1)[-1] for r in ROWS])
def test_corpus_verdict(row: dict[str, str]) -> None:
    target = _target(row)
    loader = sniff(read_probe(target))
    expected = row["expected"]
    if loader is None:
        assert expected in {"NOT_A_MODEL", "MALFORMED", "UNSCANNABLE"}, f"{target} not recognised"
        return
    loaded = loader.load(target, target.name, LoadOptions())
    findings = list(loaded.findings) + run_rules(loaded)
    worst = max((f.severity for f in findings), default=None)
    if expected == "MALICIOUS":
        assert worst is not None and worst >= Severity.HIGH, findings
    elif expected == "BENIGN":
        assert loaded.status is FileStatus.OK and (worst is None or worst < Severity.HIGH), findings
    elif expected in {"NOT_A_MODEL", "MALFORMED"}:
        assert loaded.status is FileStatus.ERROR and loaded.reason
    elif expected == "UNSCANNABLE":
        assert not loaded.verified


def test_corpus_has_keras_and_tf_samples() -> None:
    if not ROWS:
        pytest.skip("../shared/corpus/security not present")
    labels = {row["expected"] for row in ROWS}
    assert {"MALICIOUS", "BENIGN"} <= labels
