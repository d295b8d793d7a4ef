"""The Python API is the CLI: the same call gives the same JSON and the same exit code."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import weightaudit
from tests.conftest import FIXTURES, invoke_json
from weightaudit import api
from weightaudit.model import Finding, TensorInfo
from weightaudit.report import Report


@pytest.mark.parametrize("fixture", ["tiny-bert", "defects"])
def test_audit_api_equals_cli_json_and_exit_code(runner, fixture: str) -> None:
    code, cli_json = invoke_json(runner, "audit", FIXTURES / fixture)
    report = weightaudit.audit(FIXTURES / fixture)
    assert isinstance(report, Report)
    assert report.to_dict() == cli_json
    assert int(report.exit_code) == code
    assert code == (0 if fixture == "tiny-bert" else 1)


@pytest.mark.parametrize("fixture", ["tiny-bert", "defects"])
def test_inspect_api_equals_cli_json_and_exit_code(runner, fixture: str) -> None:
    code, cli_json = invoke_json(runner, "inspect", FIXTURES / fixture, "--stats")
    report = weightaudit.inspect(str(FIXTURES / fixture), stats=True)
    assert report.to_dict() == cli_json and int(report.exit_code) == code


def test_audit_options_reach_the_report_like_the_cli_flags(runner) -> None:
    code, cli_json = invoke_json(runner, "audit", FIXTURES / "defects", "--no-stats", "--fail-on", "critical",
                                 "--ignore", "WA5")
    report = weightaudit.audit(FIXTURES / "defects", stats=False, fail_on="critical", ignore=["WA5"])
    assert report.to_dict() == cli_json and int(report.exit_code) == code == 0


def test_several_releases_give_a_report_set_like_the_cli(runner, tmp_path: Path) -> None:
    for name in ("one", "two"):
        shutil.copytree(FIXTURES / "tiny-bert", tmp_path / name)
    code, cli_json = invoke_json(runner, "audit", tmp_path / "one", tmp_path / "two", "--no-stats")
    result = weightaudit.audit([tmp_path / "one", tmp_path / "two"], stats=False)
    assert isinstance(result, api.ReportSet) and len(result) == 2
    assert result.to_dict() == cli_json and int(result.exit_code) == code


def test_scorecard_api_equals_cli(runner) -> None:
    code, cli_json = invoke_json(runner, "scorecard", FIXTURES / "tiny-bert")
    report = weightaudit.scorecard(FIXTURES / "tiny-bert")
    assert report.to_dict() == cli_json and int(report.exit_code) == code


def test_findings_and_tensors_are_iterable_dataclasses() -> None:
    report = weightaudit.audit(FIXTURES / "defects")
    assert report.findings and all(isinstance(f, Finding) and dataclasses.is_dataclass(f) for f in report.findings)
    assert report.tensors and all(isinstance(t, TensorInfo) for t in report.tensors)
    assert {f.rule_id for f in report.findings} >= {"WA301", "WA302", "WA303", "WA305", "WA306"}


def test_every_public_name_resolves_and_is_typed() -> None:
    for name in weightaudit.__all__:
        assert getattr(weightaudit, name) is not None, name
    assert (Path(weightaudit.__file__).parent / "py.typed").is_file()
    with pytest.raises(AttributeError):
        weightaudit.no_such_thing  # noqa: B018


def test_diff_api_equals_cli(runner) -> None:
    code, cli_json = invoke_json(runner, "diff", FIXTURES / "tiny-bert", FIXTURES / "defects")
    report = weightaudit.diff(FIXTURES / "tiny-bert", FIXTURES / "defects")
    assert report.to_dict() == cli_json and int(report.exit_code) == code == 1


def test_revision_is_the_clis_revision_option(runner, tmp_path: Path) -> None:
    from tests.test_hub_cache import COMMIT, OTHER, cache_from, make_release

    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub", refs={"main": COMMIT})
    other = make_release(tmp_path / "p2")
    (other / "extra.safetensors").write_bytes((plain / "model.safetensors").read_bytes())
    cache_from(other, tmp_path / "hub", commit=OTHER, refs={"dev": OTHER})
    code, cli_json = invoke_json(runner, "audit", repo, "--no-stats", "--revision", "dev")
    report = weightaudit.audit(repo, stats=False, revision="dev")
    assert report.to_dict() == cli_json and int(report.exit_code) == code
    assert "extra.safetensors" in [f.path for f in weightaudit.hash(repo, revision="dev").files]
    assert "extra.safetensors" not in [f.path for f in weightaudit.hash(repo).files]
