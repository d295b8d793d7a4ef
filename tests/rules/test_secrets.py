"""WA601/WA602: credentials in text side files are found; placeholders, weights and vocabularies are not."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from weightaudit.limits import DEFAULT_LIMITS
from weightaudit.pipeline import RunOptions, run
from weightaudit.policy import Policy

FAKE_HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
FAKE_AWS = "AKIA" + "ABCDEFGHIJKLMNOP"


def _findings(folder: Path) -> list[tuple[str, str]]:
    report = run([str(folder)], RunOptions(command="audit", select=("WA6",)))
    return [(f.rule_id, f.path) for f in report.findings]


def test_known_credential_formats_are_high(tmp_path: Path) -> None:
    (tmp_path / "train.sh").write_text(f"export HF_TOKEN={FAKE_HF}\naws configure set key {FAKE_AWS}\n")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    found = _findings(tmp_path)
    assert ("WA601", "train.sh") in found
    assert all(path == "train.sh" for _, path in found)


def test_secret_named_settings_with_values_are_medium(tmp_path: Path) -> None:
    (tmp_path / "deploy.yaml").write_text("api_key: sk-1234567890abcdef\npassword: hunter2hunter2\n")
    assert _findings(tmp_path) == [("WA602", "deploy.yaml"), ("WA602", "deploy.yaml")]


def test_placeholders_and_vocabularies_are_not_secrets(tmp_path: Path) -> None:
    (tmp_path / "deploy.yaml").write_text("api_key: <YOUR_API_KEY>\ntoken: ${HF_TOKEN}\npassword: xxxxxxxx\n"
                                          "api_token: os.environ['X']\n")
    (tmp_path / "tokenizer.json").write_text(json.dumps({"vocab": {FAKE_HF: 1, "api_key=abcdefghij": 2}}))
    (tmp_path / "README.md").write_text("Set `api_key` in your environment; never commit it.\n")
    assert _findings(tmp_path) == []


def test_long_runs_do_not_make_the_search_quadratic(tmp_path: Path) -> None:
    """A 1 MB run of key-like characters: the bounded, token-anchored pattern finishes at once."""
    (tmp_path / "notes.txt").write_text("a" * 1_000_000 + "api_key" * 50_000)
    assert _findings(tmp_path) == []


def test_many_assignments_get_their_own_lines() -> None:
    """Lines are counted once, front to back (counting from the top for every match was quadratic in the file)."""
    from weightaudit.rules.secrets import _scan_text

    text = "".join(f"API_KEY=value{i:08d}\n" for i in range(40_000))
    lines = [int(f.where.split()[-1]) for f in _scan_text("settings.env", text)]
    assert lines == list(range(1, 40_001))


def _policy(**limits: int) -> Policy:
    return Policy(limits=replace(DEFAULT_LIMITS, **limits))


def test_a_text_file_over_the_scan_limit_is_reported_not_skipped(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "notes.txt").write_text("padding\n" * 200 + f"HF_TOKEN={FAKE_HF}\n")
    (release / "small.txt").write_text(f"token {FAKE_HF}\n")
    options = RunOptions(command="audit", select=("WA6",), policy=_policy(secret_scan_bytes=1000))
    report = run([str(release)], options)
    found = sorted((f.rule_id, f.path, f.severity.label) for f in report.findings)
    assert found == [("WA601", "small.txt", "high"), ("WA603", "notes.txt", "low")]
    assert "limits.secret_scan_bytes = 1,000" in next(f.message for f in report.findings if f.rule_id == "WA603")
    assert all(entry.status != "error" for entry in report.files)   # a hygiene search does not unverify


def test_text_files_past_the_file_limit_are_one_low_finding(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    for i in range(5):
        (release / f"note{i}.txt").write_text(f"token {FAKE_HF}\n")
    options = RunOptions(command="audit", select=("WA6",), policy=_policy(secret_scan_files=3))
    found = sorted((f.rule_id, f.path) for f in run([str(release)], options).findings)
    assert found == [("WA601", "note0.txt"), ("WA601", "note1.txt"), ("WA601", "note2.txt"), ("WA603", "note3.txt")]


def test_default_limits_search_a_multi_megabyte_config(tmp_path: Path) -> None:
    """Before, files over 1 MB were skipped without a word; 5 MB is now searched under the 16 MiB default."""
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad": "x" * 5_000_000, "api_key": FAKE_HF}))
    assert _findings(tmp_path) == [("WA601", "tokenizer_config.json")]
