"""WA601/WA602: credentials in text side files are found; placeholders, weights and vocabularies are not."""

from __future__ import annotations

import json
from pathlib import Path

from weightaudit.pipeline import RunOptions, run

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
