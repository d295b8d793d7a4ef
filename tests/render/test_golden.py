"""Golden files for every output format. Regenerate with UPDATE_GOLDEN=1 after an intended change."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, invoke

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = {
    "inspect-tiny-bert.txt": ("inspect", "tiny-bert", "text"),
    "inspect-tiny-bert.json": ("inspect", "tiny-bert", "json"),
    "inspect-tiny-bert.md": ("inspect", "tiny-bert", "markdown"),
    "audit-mixed.sarif": ("audit", "mixed", "sarif"),
    "audit-mixed.txt": ("audit", "mixed", "text"),
    "audit-mixed.md": ("audit", "mixed", "markdown"),
    "audit-mixed.json": ("audit", "mixed", "json"),
}


@pytest.fixture
def targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(FIXTURES / "tiny-bert", tmp_path / "tiny-bert")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("WA106-duplicate-key.safetensors", "WA111-offset-hole.safetensors", "valid.safetensors"):
        shutil.copy(FIXTURES / "malformed" / name, mixed / name)
    monkeypatch.chdir(tmp_path)   # relative targets keep the goldens free of machine paths
    return tmp_path


def _normalise(text: str) -> str:
    from weightaudit import __version__

    return text.replace(__version__, "<version>")


@pytest.mark.parametrize("golden", sorted(CASES))
def test_output_matches_golden(runner, targets: Path, golden: str) -> None:
    command, target, fmt = CASES[golden]
    args = [command, target, "--format", fmt]
    if command == "audit":
        args.append("--no-stats")
    result = invoke(runner, *args)
    actual = _normalise(result.stdout)
    path = GOLDEN / golden
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path.name}: run with UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text()
    if fmt in ("json", "sarif"):
        json.loads(actual)


def test_json_goldens_validate_against_the_report_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    for name in ("inspect-tiny-bert.json", "audit-mixed.json"):
        jsonschema.Draft202012Validator(schema).validate(json.loads((GOLDEN / name).read_text()))
