"""WA5xx openness rules fire on bad releases and stay silent on good ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from weightaudit.discover import discover
from weightaudit.model import Severity
from weightaudit.rules import all_rules, get_rule
from weightaudit.rules.base import AuditContext

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "openness"
IDS = ("WA501", "WA502", "WA503", "WA504", "WA505", "WA506", "WA507")


def _ids(folder: Path) -> dict[str, list]:
    ctx = AuditContext(release=discover([str(folder)]), files=())
    out: dict[str, list] = {}
    for rule_id in IDS:
        rule = get_rule(rule_id)
        out[rule_id] = list(rule.check(ctx, dict(rule.thresholds)))
    return out


def _release(tmp_path: Path, files: dict[str, str]) -> Path:
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return tmp_path


def _fixture(name: str) -> Path:
    folder = FIXTURES / name
    if not folder.exists():
        pytest.skip("run fixtures/make_openness_fixtures.py")
    return folder


def test_registered_with_documentation() -> None:
    registered = {r.id: r for r in all_rules()}
    for rule_id in IDS:
        rule = registered[rule_id]
        assert rule.name and rule.summary and "What to do" in rule.help and rule.check is not None
    assert registered["WA501"].severity == Severity.MEDIUM and registered["WA503"].severity == Severity.LOW


def test_olmo_style_is_clean() -> None:
    hits = _ids(_fixture("olmo_style"))
    assert all(not v for v in hits.values()), hits


def test_no_license_and_no_card(tmp_path: Path) -> None:
    hits = _ids(_release(tmp_path, {}))
    assert hits["WA501"] and hits["WA506"] and hits["WA504"] and hits["WA505"]
    assert hits["WA501"][0].severity == Severity.MEDIUM


def test_conflict(tmp_path: Path) -> None:
    hits = _ids(_release(tmp_path, {"README.md": "---\nlicense: apache-2.0\n---\n",
                                    "LICENSE": "LLAMA 2 COMMUNITY LICENSE AGREEMENT\n"}))
    assert hits["WA502"] and "Apache-2.0" in hits["WA502"][0].message and hits["WA502"][0].path == "README.md"
    assert hits["WA503"]                  # the stricter reading is a restricted licence
    assert not hits["WA501"]


def test_restricted_weights_llama_and_bloom() -> None:
    assert _ids(_fixture("llama2_style"))["WA503"]
    bloom = _ids(_fixture("bloom_style"))
    assert bloom["WA503"] and not bloom["WA504"] and not bloom["WA505"]   # code and data are linked


def test_card_only_apache() -> None:
    hits = _ids(_fixture("card_only_apache"))
    assert hits["WA504"] and not hits["WA505"] and not hits["WA503"] and not hits["WA501"]


def test_unrecognised_licence(tmp_path: Path) -> None:
    hits = _ids(_release(tmp_path, {"README.md": "---\nlicense: other\nlicense_name: acme-model-license\n---\n"}))
    assert hits["WA507"] and hits["WA507"][0].severity == Severity.INFO
    assert not _ids(_fixture("card_only_apache"))["WA507"]


def test_licence_only_inside_the_weight_file_is_low_not_medium(runner, tmp_path) -> None:
    """A GGUF whose metadata says general.license = apache-2.0, with no card or LICENSE beside it (a release
    folder: a file given alone is judged as that file, without release-level openness rules)."""
    import shutil

    from tests.conftest import FIXTURES, invoke_json

    shutil.copy(FIXTURES / "gguf" / "quantized-q8_0-q4_0.gguf", tmp_path / "model.gguf")
    code, report = invoke_json(runner, "audit", tmp_path, "--select", "WA501")
    (finding,) = report["findings"]
    assert finding["severity"] == "low" and "apache-2.0" in finding["message"]
