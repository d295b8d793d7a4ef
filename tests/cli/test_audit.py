"""`weightaudit audit`: fail-on, policy (auto-discovered and explicit), ignore-with-reason, baseline,
select/ignore, SARIF validity, rules listing — all through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, invoke, invoke_json

DUPLICATE = FIXTURES / "malformed" / "WA106-duplicate-key.safetensors"


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A release with one high finding (duplicate header key) next to a clean model."""
    target = tmp_path / "release"
    shutil.copytree(FIXTURES / "tiny-bert", target)
    shutil.copy(DUPLICATE, target / "extra.safetensors")
    return target


def _rule_ids(report: dict) -> list[str]:
    return [f["rule_id"] for f in report["findings"]]


def test_audit_fails_on_high_by_default(runner, release: Path) -> None:
    code, report = invoke_json(runner, "audit", release, "--no-stats")
    assert code == 1
    assert "WA106" in _rule_ids(report) and report["fail_on"] == "high"


def test_fail_on_critical_passes(runner, release: Path) -> None:
    code, _ = invoke_json(runner, "audit", release, "--no-stats", "--fail-on", "critical")
    assert code == 0


def test_policy_ignore_with_reason_suppresses(runner, release: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nignore:\n  - rule: WA106\n    path: 'extra.*'\n    reason: fixture on purpose\n")
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--policy", policy, "--select", "WA1")
    assert code == 0
    assert "WA106" not in _rule_ids(report)
    assert [f["rule_id"] for f in report["suppressed"]] == ["WA106"]


def test_policy_is_auto_discovered_from_the_working_directory(runner, release: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    """The user's policy applies (found from the working directory upwards); see tests/test_policy_discovery.py
    for the release never choosing its own."""
    (tmp_path / "weightaudit.yaml").write_text("version: 1\nrules:\n  WA106: {severity: low}\n")
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "audit", release, "--no-stats", "--select", "WA1", "-f", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert {f["rule_id"]: f["severity"] for f in report["findings"]}["WA106"] == "low"
    assert "using policy" in result.stderr


def test_expired_ignore_no_longer_applies(runner, release: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nignore:\n  - {rule: WA106, reason: old, expires: 2020-01-01}\n")
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--policy", policy)
    assert code == 1 and any("expired" in n for n in report["notes"])


@pytest.mark.parametrize("text, message", [
    ("version: 2\n", "'version' must be 1"),
    ("version: 1\nignore:\n  - rule: WA106\n", "'reason' is required"),
    ("version: 1\nrules:\n  WA999: {enabled: false}\n", "unknown rule ID"),
    ("version: 1\nfail_on: severe\n", "unknown severity"),
    ("version: 1\nbogus: 1\n", "unknown key"),
    ("version: [1\n", "invalid YAML"),
])
def test_invalid_policy_is_exit_2(runner, release: Path, tmp_path: Path, text: str, message: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    result = invoke(runner, "audit", release, "--policy", policy)
    assert result.exit_code == 2 and message in result.stderr and result.stdout == ""


def test_missing_policy_is_exit_2(runner, release: Path, tmp_path: Path) -> None:
    result = invoke(runner, "audit", release, "--policy", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "policy file not found" in result.stderr


def test_baseline_roundtrip(runner, release: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    first = invoke(runner, "audit", release, "--no-stats", "--write-baseline", baseline, "-f", "json")
    assert first.exit_code == 1 and baseline.exists()
    recorded = json.loads(baseline.read_text())
    assert recorded["version"] == 1 and any(e["rule_id"] == "WA106" for e in recorded["findings"])
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--baseline", baseline)
    assert code == 0 and report["findings"] == [] and report["summary"]["suppressed_findings"] >= 1
    # a new problem is not hidden by the old baseline
    shutil.copy(FIXTURES / "malformed" / "WA111-offset-hole.safetensors", release / "new.safetensors")
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--baseline", baseline)
    assert code == 1 and _rule_ids(report) == ["WA111"]


def test_invalid_baseline_is_exit_2(runner, release: Path, tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text("[]")
    assert invoke(runner, "audit", release, "--baseline", bad).exit_code == 2


def test_select_and_ignore(runner, release: Path) -> None:
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--ignore", "WA106")
    assert "WA106" not in _rule_ids(report)
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--select", "WA4")
    assert all(r.startswith("WA4") for r in _rule_ids(report))
    assert invoke(runner, "audit", release, "--select", "WA999").exit_code == 2


def test_sarif_validates_against_the_2_1_0_schema(runner, release: Path) -> None:
    from tests.render.test_sarif import sarif_validator

    result = invoke(runner, "audit", release, "--no-stats", "-f", "sarif")
    assert result.exit_code == 1
    sarif = json.loads(result.stdout)
    sarif_validator().validate(sarif)    # with a format checker: uri-reference is checked
    run = sarif["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert ids == sorted(ids) and "WA106" in ids
    result_106 = next(r for r in run["results"] if r["ruleId"] == "WA106")
    assert result_106["level"] == "error"
    assert result_106["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "extra.safetensors"
    assert result_106["locations"][0]["logicalLocations"][0]["name"] == "a"
    assert result_106["partialFingerprints"]["weightauditFingerprint/v1"]
    rule = run["tool"]["driver"]["rules"][result_106["ruleIndex"]]
    assert rule["id"] == "WA106" and float(rule["properties"]["security-severity"]) >= 7.0


def test_markdown_summary(runner, release: Path) -> None:
    result = invoke(runner, "audit", release, "--no-stats", "-f", "markdown")
    assert result.stdout.startswith("# weightaudit audit")
    assert result.stdout.splitlines()[0].endswith("— FAIL")
    assert "**FAIL (exit 1)" in result.stdout and "| high | WA106 |" in result.stdout


def test_rules_list_and_explain(runner) -> None:
    listing = invoke(runner, "rules")
    assert listing.exit_code == 0 and "WA106" in listing.stdout
    explained = invoke(runner, "rules", "explain", "wa106")
    assert explained.exit_code == 0 and "duplicate-key" in explained.stdout and "Default severity: high" in explained.stdout
    unknown = invoke(runner, "rules", "explain", "WA999")
    assert unknown.exit_code == 2 and "unknown rule ID" in unknown.stderr
    as_json = json.loads(invoke(runner, "rules", "--format", "json").stdout)
    assert all(r["help"] and r["summary"] for r in as_json["rules"])


def test_every_rule_is_documented() -> None:
    from weightaudit.rules import all_rules

    for rule in all_rules():
        assert rule.summary.endswith(".") and len(rule.summary) < 120, rule.id
        assert len(rule.help) > 40 and rule.name == rule.name.lower(), rule.id


def test_tensor_that_cannot_be_streamed_makes_the_file_unverified(runner) -> None:
    code, report = invoke_json(runner, "audit", FIXTURES / "torch" / "oob_view.pt")
    assert code == 1   # the out-of-bounds view itself is high (WA146)
    assert {"WA146", "WA131"} <= set(_rule_ids(report))
    assert report["summary"]["verified"] is False
    code, report = invoke_json(runner, "audit", FIXTURES / "torch" / "oob_view.pt", "--fail-on", "never")
    assert code == 3


def test_unsupported_statistics_dtypes_are_named_in_a_note(runner) -> None:
    code, report = invoke_json(runner, "audit", FIXTURES / "torch" / "all_dtypes_zip.pt", "--select", "WA1")
    assert code == 0 and report["summary"]["verified"] is True
    assert any("C128, C64" in note for note in report["notes"])


def test_numeric_defects_release_gets_exactly_its_findings(runner) -> None:
    code, report = invoke_json(runner, "audit", FIXTURES / "defects")
    assert code == 1
    above_low = sorted((f["rule_id"], f["tensor"]) for f in report["findings"] if f["severity"] not in ("low", "info"))
    assert above_low == [
        ("WA301", "encoder.layer.0.attention.self.query.weight"),
        ("WA302", "encoder.layer.0.attention.self.key.weight"),
        ("WA303", "encoder.layer.1.attention.self.value.weight"),
        ("WA305", "encoder.layer.2.intermediate.dense.weight"),
        ("WA306", "encoder.layer.3.output.dense.weight"),
    ]
    stats = {t["name"]: t["stats"] for t in report["tensors"]}
    assert stats["encoder.layer.0.attention.self.query.weight"]["nan"] == 1
    assert (stats["encoder.layer.0.attention.self.key.weight"]["pos_inf"],
            stats["encoder.layer.0.attention.self.key.weight"]["neg_inf"]) == (1, 1)
    assert stats["encoder.layer.1.attention.self.value.weight"]["zeros"] == 1024
    assert stats["encoder.layer.2.intermediate.dense.weight"]["fp16_overflow"] == 1


def test_clean_release_passes_with_nothing_above_low(runner) -> None:
    code, report = invoke_json(runner, "audit", FIXTURES / "tiny-bert")
    assert code == 0
    assert [f for f in report["findings"] if f["severity"] not in ("low", "info")] == []
    assert all("stats" in t for t in report["tensors"])
