"""Golden files for every output format, and text output at 80 and 120 columns for every command on the bundled
example (tiny-bert) and the defects fixture; every line fits its width.

Regenerate after an intended change (other helpers' new rules shift audit outputs too) and review the diff:
    UPDATE_GOLDEN=1 pytest -q tests/render/test_golden.py
"""

from __future__ import annotations

import json
import os
import re
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


WIDTHS = (80, 120)
COMMANDS = {"inspect": ("inspect",), "inspect-stats": ("inspect", "--stats"), "audit": ("audit",),
            "scorecard": ("scorecard",)}
WIDE_CASES = {f"{name}-{target}-{width}.txt": (args, target, width)
              for name, args in COMMANDS.items() for target in ("tiny-bert", "defects") for width in WIDTHS}


@pytest.fixture
def targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(FIXTURES / "tiny-bert", tmp_path / "tiny-bert")
    shutil.copytree(FIXTURES / "defects", tmp_path / "defects")
    monkeypatch.setenv("COLUMNS", "100")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("WA106-duplicate-key.safetensors", "WA111-offset-hole.safetensors", "valid.safetensors"):
        shutil.copy(FIXTURES / "malformed" / name, mixed / name)
    monkeypatch.chdir(tmp_path)   # relative targets keep the goldens free of machine paths
    return tmp_path


def _normalise(text: str) -> str:
    from weightaudit import __version__

    return text.replace(__version__, "<version>")


def _sarif_without_rule_texts(text: str) -> str:
    """The rule catalogue is every registered rule's help (owned by the rule modules, tested there): the golden
    keeps the rules the results use, by position, so new rules elsewhere do not churn it."""
    sarif = json.loads(text)
    for run in sarif["runs"]:
        rules = run["tool"]["driver"]["rules"]
        used = {r["ruleIndex"] for r in run["results"] if "ruleIndex" in r}
        run["tool"]["driver"]["rules"] = {
                                          "used": sorted(rules[i]["id"] for i in used)}
        for result in run["results"]:
            result["ruleIndex"] = "<index>"
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("golden", sorted(CASES))
def test_output_matches_golden(runner, targets: Path, golden: str) -> None:
    command, target, fmt = CASES[golden]
    args = [command, target, "--format", fmt]
    if command == "audit":
        args.append("--no-stats")
    result = invoke(runner, *args)
    actual = _normalise(result.stdout)
    if fmt == "sarif":
        actual = _sarif_without_rule_texts(actual)
    path = GOLDEN / golden
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path.name}: run with UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text()
    if fmt in ("json", "sarif"):
        json.loads(actual)


def _check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path.name}: run with UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text()


@pytest.mark.parametrize("golden", sorted(WIDE_CASES))
def test_text_at_80_and_120_columns(runner, targets: Path, monkeypatch: pytest.MonkeyPatch, golden: str) -> None:
    args, target, width = WIDE_CASES[golden]
    monkeypatch.setenv("COLUMNS", str(width))
    result = invoke(runner, *args, target)
    actual = _normalise(result.stdout)
    _check_golden(golden, actual)
    too_long = [line for line in actual.splitlines() if len(line) > width]
    assert too_long == [], f"{golden}: {len(too_long)} line(s) wider than {width} columns"
    assert re.search(r"\d…|…\d", actual) is None, f"{golden}: a number was cut"
    last = actual.rstrip().splitlines()[-1]
    assert last.startswith(("PASS (exit 0)", "FAIL (exit 1)", "INCOMPLETE (exit 3)"))
    assert last.split(" ")[2].rstrip("):") == str(result.exit_code)


def test_json_goldens_validate_against_the_report_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    for name in ("inspect-tiny-bert.json", "audit-mixed.json"):
        jsonschema.Draft202012Validator(schema).validate(json.loads((GOLDEN / name).read_text()))
