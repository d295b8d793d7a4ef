"""The policy is the user's, never the release's: a weightaudit.yaml shipped inside the audited folder is not
read (unless the user runs from that folder); policies are discovered from the working directory upwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weightaudit.errors import PolicyError
from weightaudit.policy import discover_policy, resolve_policy

from tests.conftest import invoke

OS_SYSTEM_PICKLE = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
SELF_SERVING_POLICY = "version: 1\nfail_on: never\nrules:\n  WA401: {enabled: false}\n  WA402: {enabled: false}\n"


@pytest.fixture
def hostile_release(tmp_path: Path) -> Path:
    """A release that ships its own permissive policy next to an os.system pickle."""
    release = tmp_path / "downloads" / "release"
    release.mkdir(parents=True)
    (release / "model.pkl").write_bytes(OS_SYSTEM_PICKLE)
    (release / "weightaudit.yaml").write_text(SELF_SERVING_POLICY)
    (release / "pyproject.toml").write_text("[tool.weightaudit]\nfail_on = 'never'\n")
    return release


def _audit_json(runner, *args) -> tuple[int, dict, str]:
    result = invoke(runner, "audit", *args, "--no-stats", "-f", "json")
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_release_cannot_switch_off_its_own_audit(runner, hostile_release: Path, tmp_path: Path, monkeypatch) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    code, report, _ = _audit_json(runner, hostile_release)
    assert code == 1
    assert "WA401" in {f["rule_id"] for f in report["findings"]}
    assert report["policy"] == {"path": None, "source": "default"}


def test_release_policy_is_ignored_from_a_parent_folder(runner, hostile_release: Path, monkeypatch) -> None:
    monkeypatch.chdir(hostile_release.parent)
    code, report, _ = _audit_json(runner, "release")
    assert code == 1 and report["policy"]["source"] == "default"


def test_release_policy_is_ignored_from_a_subfolder_of_the_release(runner, hostile_release: Path, monkeypatch) -> None:
    (hostile_release / "sub").mkdir()
    monkeypatch.chdir(hostile_release / "sub")
    code, report, _ = _audit_json(runner, "..")
    assert code == 1 and report["policy"]["source"] == "default"


def test_policy_in_the_working_directory_applies_to_a_release_elsewhere(runner, hostile_release: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "weightaudit.yaml").write_text("version: 1\nrules:\n  WA401: {severity: low}\n")
    monkeypatch.chdir(project / "sub")
    code, report, stderr = _audit_json(runner, hostile_release)
    severities = {f["rule_id"]: f["severity"] for f in report["findings"]}
    assert severities["WA401"] == "low"
    assert report["policy"] == {"path": str(project / "weightaudit.yaml"), "source": "discovered"}
    assert "using policy" in stderr


def test_running_inside_the_release_folder_uses_its_policy(runner, hostile_release: Path, monkeypatch) -> None:
    """The one documented exception: the user chose to run from the release folder and audit it (`audit .`)."""
    monkeypatch.chdir(hostile_release)
    code, report, _ = _audit_json(runner, ".")
    assert report["policy"]["source"] == "discovered"
    assert report["policy"]["path"].endswith("weightaudit.yaml")
    assert code == 0


def test_explicit_policy_is_reported_as_cli(runner, hostile_release: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    policy = tmp_path / "mine.yaml"
    policy.write_text("version: 1\nfail_on: critical\n")
    code, report, _ = _audit_json(runner, hostile_release, "--policy", policy)
    assert code == 1   # WA401 on os.system is critical
    assert report["policy"] == {"path": str(policy), "source": "cli"}


def test_discovery_stops_at_the_git_root(tmp_path: Path) -> None:
    (tmp_path / "weightaudit.yaml").write_text("version: 1\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    assert discover_policy(repo / "src", []) is None
    (repo / "weightaudit.yml").write_text("version: 1\n")
    assert discover_policy(repo / "src", []) == repo / "weightaudit.yml"


def test_pyproject_without_the_table_does_not_stop_the_search(tmp_path: Path) -> None:
    (tmp_path / "weightaudit.yaml").write_text("version: 1\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert discover_policy(tmp_path / "a", []) == tmp_path / "weightaudit.yaml"
    (tmp_path / "a" / "pyproject.toml").write_text("[tool.weightaudit]\nfail_on = 'low'\n")
    assert discover_policy(tmp_path / "a", []) == tmp_path / "a" / "pyproject.toml"


def test_folders_inside_the_target_are_skipped(tmp_path: Path) -> None:
    target = tmp_path / "release"
    (target / "inner").mkdir(parents=True)
    (target / "weightaudit.yaml").write_text("version: 1\n")
    (target / "inner" / "weightaudit.yaml").write_text("version: 1\n")
    assert discover_policy(target / "inner", [target]) is None
    assert discover_policy(target, [target]) == target / "weightaudit.yaml"


def test_resolve_policy_says_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "weightaudit.yaml").write_text("version: 1\nfail_on: low\n")
    discovered = resolve_policy(None, [], cwd=tmp_path)
    assert discovered.origin == "discovered" and discovered.source == str(tmp_path / "weightaudit.yaml")
    with pytest.raises(PolicyError, match="policy file not found"):
        resolve_policy(str(tmp_path / "nope.yaml"), [], cwd=tmp_path)


BILLION_LAUGHS = "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9))


@pytest.mark.parametrize("name, text, message", [
    ("deep.yaml", "version: 1\nrules: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 200"),
    ("laughs.yaml", BILLION_LAUGHS, "billion laughs"),
    ("pyproject.toml", "[tool.weightaudit]\nx = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ("big.yaml", "version: 1\n" + "#" * 2_000_000 + "\n", "larger than 1,000,000 bytes"),
])
def test_hostile_user_policy_is_a_clear_usage_error(runner, hostile_release: Path, tmp_path: Path, name: str,
                                                     text: str, message: str) -> None:
    policy = tmp_path / name
    policy.write_text(text)
    result = invoke(runner, "audit", hostile_release, "--no-stats", "--policy", policy)
    assert result.exit_code == 2
    assert message in result.stderr and str(policy) in result.stderr


def test_policy_limits_reach_the_audit(runner, tmp_path: Path, monkeypatch) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "config.json").write_text('{"a": ' + "[" * 30 + "]" * 30 + "}")
    (release / "model.pkl").write_bytes(OS_SYSTEM_PICKLE)
    (tmp_path / "weightaudit.yaml").write_text("version: 1\nlimits: {nesting_depth: 10}\n")
    monkeypatch.chdir(tmp_path)
    code, report, _ = _audit_json(runner, release)
    refused = [f for f in report["findings"] if f["rule_id"] == "WA133"]
    assert [f["path"] for f in refused] == ["config.json"] and "nested more than 10" in refused[0]["message"]
