"""Issue 10: one budget model. Limits have documented defaults, only the user's policy changes them, a limit hit
is a WA132 finding on an unverified file, and findings per rule per file collapse into one summary finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weightaudit.errors import PolicyError
from weightaudit.limits import DEFAULT_LIMITS, Limits, parse_limits
from weightaudit.model import Finding, Severity
from weightaudit.pipeline import RunOptions, collapse_findings, run
from weightaudit.policy import Policy, load_policy

from tests.conftest import FIXTURES

GGUF = FIXTURES / "gguf" / "valid-f32-f16.gguf"


def _policy(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n" + text)
    return load_policy(path)


def test_limits_default_and_are_set_by_the_policy(tmp_path: Path) -> None:
    assert _policy(tmp_path, "").limits is DEFAULT_LIMITS
    policy = _policy(tmp_path, "limits:\n  nesting_depth: 50\n  findings_per_rule_per_file: 7\n")
    assert policy.limits == Limits(nesting_depth=50, findings_per_rule_per_file=7)


@pytest.mark.parametrize("text, message", [
    ("limits: {bogus: 1}\n", "unknown limit 'bogus'"),
    ("limits: {nesting_depth: 0}\n", "expected a positive integer"),
    ("limits: {nesting_depth: true}\n", "expected a positive integer"),
    ("limits: [1]\n", "must be a mapping"),
])
def test_invalid_limits_are_a_configuration_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        _policy(tmp_path, text)


def test_every_limit_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [name for name in Limits.names() if f"`{name}`" not in readme]
    assert missing == []


def test_parse_limits_keeps_defaults_for_unset_keys() -> None:
    assert parse_limits({"yaml_aliases": 5}).nesting_depth == DEFAULT_LIMITS.nesting_depth


def test_gguf_over_the_tensor_limit_is_limit_reached_and_unverified(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "limits: {gguf_tensors: 1}\n")
    report = run([str(GGUF)], RunOptions(command="audit", policy=policy))
    (loaded,) = report.files
    assert not loaded.verified and "limits.gguf_tensors = 1" in (loaded.reason or "")
    assert [(f.rule_id, f.severity) for f in report.findings if f.rule_id == "WA132"] == [("WA132", Severity.HIGH)]


def _safetensors(path: Path, count: int, extra_field: bool = False) -> Path:
    header = {}
    for i in range(count):
        spec = {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
        if extra_field:
            spec["note"] = "x"
        header[f"t{i:04d}"] = spec
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * (4 * count))
    return path


def test_safetensors_over_the_tensor_limit_is_limit_reached(tmp_path: Path) -> None:
    target = _safetensors(tmp_path / "model.safetensors", 5)
    policy = _policy(tmp_path, "limits: {tensors_per_file: 4}\n")
    report = run([str(target)], RunOptions(command="audit", policy=policy))
    assert [f.rule_id for f in report.findings if f.rule_id.startswith("WA1")] == ["WA132"]
    assert not report.files[0].verified and report.files[0].tensors == ()


def test_findings_per_rule_per_file_collapse_into_one_summary(tmp_path: Path) -> None:
    target = _safetensors(tmp_path / "model.safetensors", 250, extra_field=True)   # WA116 on every tensor
    report = run([str(target)], RunOptions(command="audit"))
    unknown = [f for f in report.findings if f.rule_id == "WA116"]
    assert len(unknown) == DEFAULT_LIMITS.findings_per_rule_per_file + 1
    summary = [f for f in unknown if f.tensor is None]
    assert len(summary) == 1 and summary[0].message.startswith("150 more WA116 finding(s) in this file not listed")
    assert summary[0].severity is Severity.LOW
    assert len(report.files[0].tensors) == 250


def test_collapse_keeps_the_worst_severity_and_other_rules_and_files() -> None:
    findings = [Finding("WA999", Severity.LOW, "a", f"m{i}", tensor=f"t{i}") for i in range(5)]
    findings.append(Finding("WA999", Severity.HIGH, "a", "bad", tensor="x"))
    findings.append(Finding("WA999", Severity.LOW, "b", "other file"))
    findings.append(Finding("WA998", Severity.LOW, "a", "other rule"))
    out = collapse_findings(findings, 2)
    assert [(f.path, f.rule_id, f.severity) for f in out if f.tensor is None and "more" in f.message] == [
        ("a", "WA999", Severity.HIGH)]
    assert len(out) == 2 + 1 + 1 + 1


# -- Loaders read their caps from the user's policy (LoadOptions.limits), not from module constants -------------

def _audit(tmp_path: Path, target: Path, limits: str) -> tuple[int, dict]:
    from click.testing import CliRunner

    from tests.conftest import invoke_json

    policy = tmp_path / "limits-policy.yaml"
    policy.write_text(f"version: 1\nlimits: {{{limits}}}\n")
    return invoke_json(CliRunner(), "audit", target, "--no-stats", "--policy", policy)


def _file_findings(report: dict, rule_id: str) -> list[tuple[str, str]]:
    return [(f["rule_id"], f["severity"]) for f in report["findings"] if f["rule_id"] == rule_id]


def _verified(report: dict) -> list[bool]:
    return [f["verified"] for f in report["files"]]


def _torch_zip(tmp_path: Path) -> Path:
    import torch

    target = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2), "b": torch.ones(3)}, target)
    return target


def test_torch_zip_over_the_policy_member_limit_is_limit_reached(tmp_path: Path) -> None:
    import zipfile

    target = _torch_zip(tmp_path)
    assert len(zipfile.ZipFile(target).namelist()) > 3
    code, report = _audit(tmp_path, target, "zip_members: 3")
    assert _file_findings(report, "WA132") == [("WA132", "high")]
    assert "limits.zip_members = 3" in [f for f in report["findings"] if f["rule_id"] == "WA132"][0]["message"]
    assert _verified(report) == [False] and code == 1
    code, report = _audit(tmp_path, target, "zip_members: 100")
    assert _file_findings(report, "WA132") == [] and _verified(report) == [True]


def test_tar_over_the_policy_member_limit_is_limit_reached(tmp_path: Path) -> None:
    import io
    import tarfile

    target = tmp_path / "model.tar"
    with tarfile.open(target, "w") as tar:
        for i in range(5):
            info = tarfile.TarInfo(f"member{i}.txt")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
    code, report = _audit(tmp_path, target, "tar_members: 3")
    assert _file_findings(report, "WA132") == [("WA132", "high")]
    assert "limits.tar_members = 3" in [f for f in report["findings"] if f["rule_id"] == "WA132"][0]["message"]
    assert _verified(report) == [False] and code == 1


@pytest.mark.parametrize("limits, value", [
    ("pickle_opcodes: 100", list(range(200))),                     # ~205 opcodes
    ("pickle_memo: 10", [[i] for i in range(20)]),                 # protocol 2 memoizes every list
    ("pickle_tuple_depth: 10", ((((((((((((((1,),),),),),),),),),),),),),)),
    ("pickle_marks: 3", (1, 2, 3, 4, (1, 2, 3, 4, (1, 2, 3, 4, (1, 2, 3, 4, (1, 2, 3, 4)))))),   # MARK..TUPLE
    ("pickle_stack: 50", tuple(range(100))),
])
def test_pickle_over_a_policy_limit_is_pickle_limit_and_unverified(tmp_path: Path, limits: str, value: object) -> None:
    import pickle

    target = tmp_path / "model.pkl"
    target.write_bytes(pickle.dumps(value, protocol=2))       # built here from harmless values, never loaded
    code, report = _audit(tmp_path, target, limits)
    assert ("WA405", "high") in _file_findings(report, "WA405")
    assert _verified(report) == [False] and code == 1
    code, report = _audit(tmp_path, target, "pickle_opcodes: 10000000")
    assert _file_findings(report, "WA405") == [] and _verified(report) == [True] and code == 0


def test_deflated_zip_member_over_the_policy_limit_is_limit_reached(tmp_path: Path) -> None:
    import pickle
    import zipfile

    target = tmp_path / "model.pt"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": list(range(100))}, protocol=2))   # never loaded
        archive.writestr("archive/version", "3\n")
    code, report = _audit(tmp_path, target, "zip_member_bytes: 64")
    assert _file_findings(report, "WA132") == [("WA132", "high")]
    assert "limits.zip_member_bytes = 64" in [f for f in report["findings"] if f["rule_id"] == "WA132"][0]["message"]
    assert _verified(report) == [False] and code == 1
    code, report = _audit(tmp_path, target, "zip_member_bytes: 100000")
    assert _file_findings(report, "WA132") == []


def test_hdf5_attribute_over_the_policy_limit_is_limit_reached(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    import numpy as np

    target = tmp_path / "model.h5"
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "InputLayer",
                                                                             "config": {"name": "x" * 200}}]}}
    with h5py.File(target, "w") as handle:
        handle.attrs["model_config"] = np.bytes_(json.dumps(config).encode())   # fixed-length: its size is stored
        handle.attrs["keras_version"] = "2.15.0"
        handle.create_group("model_weights")
    code, report = _audit(tmp_path, target, "hdf5_attribute_bytes: 100")
    limit_hits = [f for f in report["findings"] if f["rule_id"] == "WA132"]
    assert [(f["severity"], "limits.hdf5_attribute_bytes = 100)" in f["message"]) for f in limit_hits] == [
        ("high", True)]
    assert _verified(report) == [False] and code == 1
    code, report = _audit(tmp_path, target, "hdf5_attribute_bytes: 100000")
    assert _file_findings(report, "WA132") == []


def test_pickle_in_a_constant_over_the_nested_opcode_limit_is_pickle_limit(tmp_path: Path) -> None:
    import pickle

    inner = pickle.dumps(list(range(300)), protocol=2)                  # ~305 opcodes, harmless
    target = tmp_path / "model.pkl"
    target.write_bytes(pickle.dumps({"blob": inner}, protocol=2))     # built here, never loaded
    code, report = _audit(tmp_path, target, "nested_pickle_opcodes: 100")
    hits = [f for f in report["findings"] if f["rule_id"] == "WA405"]
    assert [(f["severity"], "limits.nested_pickle_opcodes = 100" in f["message"]) for f in hits] == [("high", True)]
    assert _verified(report) == [False] and code == 1
    code, report = _audit(tmp_path, target, "nested_pickle_opcodes: 1000")
    assert _file_findings(report, "WA405") == [] and _verified(report) == [True]


def test_stacked_pickles_over_the_policy_limit_are_limit_reached(tmp_path: Path) -> None:
    import pickle

    target = tmp_path / "model.pkl"
    target.write_bytes(b"".join(pickle.dumps({"step": i}, protocol=2) for i in range(5)))   # never loaded
    code, report = _audit(tmp_path, target, "stacked_pickles: 3")
    hits = [f for f in report["findings"] if f["rule_id"] == "WA132"]
    assert [(f["severity"], "limits.stacked_pickles = 3" in f["message"]) for f in hits] == [("high", True)]
    assert _verified(report) == [False] and code == 1
    code, report = _audit(tmp_path, target, "stacked_pickles: 5")
    assert _file_findings(report, "WA132") == [] and _verified(report) == [True]
