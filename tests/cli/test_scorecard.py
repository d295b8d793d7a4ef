"""``weightaudit scorecard``: formats, declarations, exports and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from weightaudit.cli.scorecard import scorecard_command

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "openness"
MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mof" / "models"


def _folder(name: str) -> str:
    folder = FIXTURES / name
    if not folder.exists():
        pytest.skip("run fixtures/make_openness_fixtures.py")
    return str(folder)


def _run(*args: str):
    return CliRunner().invoke(scorecard_command, list(args))


def test_text_default() -> None:
    result = _run(_folder("card_only_apache"))
    assert result.exit_code == 0
    assert "Headline: open weights" in result.output and "\x1b[" not in result.output


def test_json() -> None:
    result = _run(_folder("llama2_style"), "--format", "json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["schema_version"] == "1" and doc["tool"]["name"] == "weightaudit"
    assert doc["target"].endswith("llama2_style")
    assert doc["scorecard"]["pillars"]["weights"]["status"] == "restricted"
    assert {"pillars", "components", "mof_class", "osaid", "score"} <= set(doc["scorecard"])


def test_markdown_to_file(tmp_path: Path) -> None:
    out = tmp_path / "card.md"
    result = _run(_folder("bloom_style"), "-f", "markdown", "-o", str(out))
    assert result.exit_code == 0 and out.read_text().startswith("## Openness scorecard")


def test_declare_alone() -> None:
    path = MODELS / "OLMo-7B.yml"
    if not path.exists():
        pytest.skip("MOF models not available")
    result = _run("--declare", str(path), "-f", "json")
    assert result.exit_code == 0
    assert json.loads(result.output)["scorecard"]["mof_class"]["class"] == 1


def test_export_and_badge(tmp_path: Path) -> None:
    mof, badge = tmp_path / "mof.yml", tmp_path / "badge.svg"
    result = _run(_folder("olmo_style"), "--export-mof", str(mof), "--badge", str(badge))
    assert result.exit_code == 0
    assert "Model Openness Framework" in mof.read_text() and badge.read_text().startswith("<svg")


def test_min_score_gates() -> None:
    folder = _folder("card_only_apache")
    assert _run(folder, "--min-score", "9").exit_code == 1
    assert _run(folder, "--min-score", "1").exit_code == 0


def test_usage_errors(tmp_path: Path) -> None:
    from weightaudit.errors import UsageError

    result = _run()
    assert isinstance(result.exception, UsageError)
    bad = tmp_path / "bad.yml"
    bad.write_text("framework: {name: nope}\nrelease: {name: x}\n")
    result = _run("--declare", str(bad))
    assert isinstance(result.exception, UsageError) and "bad.yml" in str(result.exception)


def test_group_maps_usage_error_to_exit_2(tmp_path: Path) -> None:
    from weightaudit.cli import cli

    result = CliRunner().invoke(cli, ["scorecard"])
    assert result.exit_code == 2
    bad = tmp_path / "bad.yml"
    bad.write_text("framework: {name: nope}\nrelease: {name: x}\n")
    assert CliRunner().invoke(cli, ["scorecard", "--declare", str(bad)]).exit_code == 2


def test_scorecard_json_validates_against_the_report_schema(tmp_path) -> None:
    import json
    from importlib import resources

    import jsonschema
    from click.testing import CliRunner

    from weightaudit.cli import cli

    from tests.conftest import FIXTURES

    result = CliRunner().invoke(cli, ["scorecard", str(FIXTURES / "openness" / "olmo_style"), "-f", "json"])
    assert result.exit_code == 0
    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["command"] == "scorecard"
    assert set(document["scorecard"]) >= {"pillars", "components", "mof_class", "osaid", "score"}
