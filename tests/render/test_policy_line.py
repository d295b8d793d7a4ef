"""Issue 10 item 1: every audit report says which policy applied — JSON (``policy``), and now the text and
Markdown summaries (one ``Policy`` row) and SARIF (run properties). Other commands apply no pass/fail policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, invoke


@pytest.fixture
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(FIXTURES / "tiny-bert", tmp_path / "tiny-bert")
    (tmp_path / "strict.yaml").write_text("version: 1\nfail_on: medium\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _row(text: str) -> list[str]:
    return [line for line in text.splitlines() if "Policy" in line]


def test_text_names_the_policy_given_on_the_command_line(runner, release: Path) -> None:
    out = invoke(runner, "audit", "tiny-bert", "--no-stats", "--policy", "strict.yaml").stdout
    assert [" ".join(line.strip("| ").split()) for line in _row(out)] == ["Policy strict.yaml (--policy)"]


def test_text_says_built_in_defaults_without_a_policy(runner, release: Path) -> None:
    out = invoke(runner, "audit", "tiny-bert", "--no-stats").stdout
    assert [" ".join(line.strip("| ").split()) for line in _row(out)] == ["Policy built-in defaults"]


def test_text_names_a_policy_found_from_the_working_directory(runner, release: Path) -> None:
    (release / "weightaudit.yaml").write_text("version: 1\n")
    out = invoke(runner, "audit", "tiny-bert", "--no-stats").stdout
    assert [" ".join(line.strip("| ").split()) for line in _row(out)] == [
        "Policy weightaudit.yaml (found from the working directory)"]


def test_markdown_has_one_policy_row(runner, release: Path) -> None:
    out = invoke(runner, "audit", "tiny-bert", "--no-stats", "--format", "markdown", "--policy", "strict.yaml").stdout
    assert _row(out) == ["| Policy | strict.yaml (--policy) |"]


def test_inspect_shows_no_policy_row(runner, release: Path) -> None:
    assert _row(invoke(runner, "inspect", "tiny-bert").stdout) == []


def test_sarif_run_properties_carry_the_policy(runner, release: Path) -> None:
    out = invoke(runner, "audit", "tiny-bert", "--no-stats", "--format", "sarif", "--policy", "strict.yaml").stdout
    (run,) = json.loads(out)["runs"]
    assert run["properties"]["policy"] == {"path": "strict.yaml", "source": "cli"}
    out = invoke(runner, "audit", "tiny-bert", "--no-stats", "--format", "sarif").stdout
    assert json.loads(out)["runs"][0]["properties"]["policy"] == {"path": None, "source": "default"}
