"""Shared test helpers: fixture paths, real third-party samples, a CliRunner that keeps stderr apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
REAL = ROOT / ".cache" / "real"
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "security"


def real_sample(relative: str) -> Path:
    """A file unpacked by fixtures/fetch_real_samples.py; the test is skipped when it is absent."""
    path = REAL / relative
    if not path.exists():
        pytest.skip(f"real sample {relative} not fetched (run python fixtures/fetch_real_samples.py)")
    return path


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("WEIGHTAUDIT_FORMAT", raising=False)
    monkeypatch.delenv("WEIGHTAUDIT_DEBUG", raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    """Run the CLI in-process; returns the click Result (stdout and stderr kept apart, click >= 8.2)."""
    from weightaudit.cli import cli

    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def invoke_json(runner: CliRunner, *args: str) -> tuple[int, dict]:
    result = invoke(runner, *args, "--format", "json")
    return result.exit_code, json.loads(result.stdout)
