"""``weightaudit scorecard --knowledge FILE``: a user's rows resolve a link the bundled base does not know."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from weightaudit.cli.scorecard import scorecard_command
from weightaudit.errors import UsageError


def test_knowledge_option_adds_rows(tmp_path: Path) -> None:
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "README.md").write_text("---\nlicense: mit\n---\n# Acme\n\nTraining code: https://github.com/acme/trainer\n")
    rows = tmp_path / "k.yaml"
    rows.write_text("artifacts:\n  - {id: github.com/acme/trainer, kind: training, license: MIT, source: our audit}\n")
    runner = CliRunner()
    without = runner.invoke(scorecard_command, [str(tmp_path / "rel"), "--format", "json"])
    with_rows = runner.invoke(scorecard_command, [str(tmp_path / "rel"), "--format", "json", "--knowledge", str(rows)])
    assert without.exit_code == 0 and with_rows.exit_code == 0

    def training(output: str) -> dict:
        report = json.loads(output)["scorecard"]
        return next(c for c in report["components"] if c["name"] == "Training code")

    assert training(without.output)["status"] == "mentioned"
    got = training(with_rows.output)
    assert (got["status"], got["license"]["id"], got["confidence"]) == ("included", "MIT", "known")
    assert "per our audit" in got["reason"]


def test_bad_knowledge_file_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# M\n")
    bad = tmp_path / "k.yaml"
    bad.write_text("artifacts: [{id: github.com/a/b, kind: rocket, source: x}]\n")
    result = CliRunner().invoke(scorecard_command, [str(tmp_path), "--knowledge", str(bad)])
    assert isinstance(result.exception, UsageError) and result.exception.exit_code == 2   # main() exits 2
    assert "artifacts[0]" in str(result.exception)
