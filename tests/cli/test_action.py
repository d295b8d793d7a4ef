"""Issue 11: the GitHub Action runs. action.yml installs from its own checkout, sets up Python 3.11+, passes every
input through environment variables, uploads the SARIF and exits with the audit's code; its shell part
(scripts/action-run.sh) runs the audit once and writes SARIF, JSON and the step summary from that one run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURES, ROOT

ACTION = ROOT / "action.yml"
SCRIPT = ROOT / "scripts" / "action-run.sh"


def _steps() -> list[dict]:
    return yaml.safe_load(ACTION.read_text())["runs"]["steps"]


def test_inputs_never_reach_a_shell_script_directly() -> None:
    for step in _steps():
        if "run" in step:
            assert "${{" not in step["run"], step["run"]


def test_python_is_set_up_and_weightaudit_installed_from_the_action_checkout() -> None:
    steps = _steps()
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@"))
    default = yaml.safe_load(ACTION.read_text())["inputs"]["python-version"]["default"]
    assert tuple(int(p) for p in default.split(".")) >= (3, 11) and "python-version" in setup["with"]
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert install["env"]["WA_ACTION_PATH"] == "${{ github.action_path }}"
    assert '"$WA_ACTION_PATH"' in install["run"] and "pip install --quiet weightaudit" not in install["run"]
    assert steps.index(setup) < steps.index(install)


def test_one_audit_then_upload_then_exit_with_its_code() -> None:
    steps = _steps()
    audits = [s for s in steps if "action-run.sh" in s.get("run", "")]
    assert len(audits) == 1 and audits[0]["id"] == "audit"
    assert not any("weightaudit audit" in s.get("run", "") for s in steps)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("github/codeql-action/upload-sarif@"))
    assert "always()" in upload["if"] and upload["with"]["sarif_file"] == "${{ steps.audit.outputs.sarif-file }}"
    last = steps[-1]
    assert last["env"]["WA_EXIT_CODE"] == "${{ steps.audit.outputs.exit-code }}" and "exit" in last["run"]
    assert steps.index(audits[0]) < steps.index(upload) < steps.index(last)


def _run_script(tmp_path: Path, paths: str, **env: str) -> tuple[subprocess.CompletedProcess, dict[str, str], str, int]:
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "weightaudit-wrapper"
    wrapper.write_text(f'#!/usr/bin/env bash\necho run >> "{log}"\nexec "{sys.executable}" -m weightaudit "$@"\n')
    wrapper.chmod(0o755)
    outputs, summary = tmp_path / "github_output", tmp_path / "step_summary"
    summary.write_text("previous step\n")
    full_env = {**os.environ, "WA_PATHS": paths, "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(summary),
                "WEIGHTAUDIT_BIN": str(wrapper), "WA_SARIF_FILE": str(tmp_path / "out" / "results.sarif"),
                "WA_JSON_FILE": str(tmp_path / "out" / "report.json"), **env}
    (tmp_path / "out").mkdir(exist_ok=True)
    done = subprocess.run(["bash", str(SCRIPT)], env=full_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    recorded = dict(line.split("=", 1) for line in outputs.read_text().splitlines()) if outputs.exists() else {}
    calls = len(log.read_text().splitlines()) if log.exists() else 0
    return done, recorded, summary.read_text(), calls


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "tiny-bert", tmp_path / "models" / "clean model")
    bad = tmp_path / "models" / "bad"
    shutil.copytree(FIXTURES / "tiny-bert", bad)
    shutil.copy(FIXTURES / "malformed" / "WA106-duplicate-key.safetensors", bad / "extra #1.safetensors")
    (tmp_path / ".git").mkdir()
    return tmp_path


def test_script_passes_a_clean_release(workspace: Path) -> None:
    done, outputs, summary, calls = _run_script(workspace, "models/clean model\n", WA_ARGS="--no-stats")
    assert done.returncode == 0, done.stderr
    assert calls == 1
    assert outputs["exit-code"] == "0" and outputs["verdict"] == "pass" and outputs["sarif-written"] == "true"
    assert summary.startswith("previous step\n# weightaudit audit: `models/clean model` — PASS")


def test_script_records_a_failure_and_writes_all_three_from_one_run(workspace: Path) -> None:
    from tests.render.test_sarif import sarif_validator

    done, outputs, summary, calls = _run_script(workspace, "models/bad", WA_ARGS="--no-stats --select WA1")
    assert done.returncode == 0, done.stderr        # the action's last step exits with the code
    assert calls == 1
    assert outputs["exit-code"] == "1" and outputs["verdict"] == "fail"
    report = json.loads(Path(outputs["json-file"]).read_text())
    assert report["summary"]["verdict"] == "fail" and {f["rule_id"] for f in report["findings"]} == {"WA106"}
    sarif = json.loads(Path(outputs["sarif-file"]).read_text())
    sarif_validator().validate(sarif)
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]]
    assert uris == ["models/bad/extra%20%231.safetensors"]        # relative to the repository root
    assert "— FAIL" in summary and "| high | WA106 |" in summary
    assert sarif["runs"][0]["invocations"][0]["exitCode"] == 1


def test_script_keeps_hostile_inputs_as_data(workspace: Path) -> None:
    marker = workspace / "pwned"
    done, outputs, _, calls = _run_script(workspace, f"models/clean model\n$(touch {marker})",
                                          WA_ARGS=f"--no-stats; touch {marker}")
    assert not marker.exists()
    assert outputs["exit-code"] == "2" and calls == 1     # a usage error, reported, nothing executed


def test_readme_documents_the_workflow() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"uses: .*weightaudit.*@", readme) and "security-events: write" in readme
