"""Every file of the peer scanners' labelled corpus, through `weightaudit audit`, gets the verdict its label
asks for (shared/corpus/security/README.md). The README's table is this test's result."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import CORPUS, invoke

pytestmark = pytest.mark.corpus
# Known misses, named so that a new one fails the test (none left).
KNOWN_MISSES: set[str] = set()


def _rows() -> list[dict[str, str]]:
    manifest = CORPUS / "MANIFEST.csv"
    if not manifest.exists():
        pytest.skip("security corpus not present")
    return list(csv.DictReader(manifest.open()))


def _verdict_ok(label: str, code: int, severities: set[str]) -> bool:
    high = bool(severities & {"high", "critical"})
    return {
        "MALICIOUS": high and code == 1,
        "SUSPICIOUS": bool(severities & {"medium", "high", "critical"}),
        "BENIGN": not high,
        "NOT_A_MODEL": code != 0,
        "UNSCANNABLE": code != 0,
        "EDGE": code in (0, 1, 3),
    }[label]


def test_every_corpus_file_gets_its_labelled_verdict(runner) -> None:
    rows = _rows()
    assert len(rows) == 199
    wrong = []
    for row in rows:
        result = invoke(runner, "audit", CORPUS / row["path"], "--no-stats", "-q", "-f", "json")
        assert "Traceback" not in result.stderr, row["path"]
        report = json.loads(result.stdout)
        severities = {f["severity"] for f in report["findings"] if not f["rule_id"].startswith("WA5")}
        if not _verdict_ok(row["expected"], result.exit_code, severities):
            wrong.append(row["path"])
    assert set(wrong) == KNOWN_MISSES
