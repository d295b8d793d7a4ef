"""WA508 license-only-in-prose: fires when the licence is found only in the card's sentences, silent when the
card's `license:` field (or a LICENSE title) states it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from weightaudit.discover import discover
from weightaudit.model import Severity
from weightaudit.rules import get_rule
from weightaudit.rules.base import AuditContext


def _findings(tmp_path: Path, card: str) -> list:
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "README.md").write_text(card)
    rule = get_rule("WA508")
    return list(rule.check(AuditContext(release=discover([str(tmp_path)]), files=()), dict(rule.thresholds)))


def test_fires_on_licence_in_prose_only(tmp_path: Path) -> None:
    found = _findings(tmp_path, "# M\n\nThis model is released under the Apache 2.0 license.\n")
    assert [(f.rule_id, f.severity, f.path) for f in found] == [("WA508", Severity.LOW, "README.md")]
    assert "Apache-2.0" in found[0].message and "README.md:3" in found[0].message


def test_silent_with_a_licence_field(tmp_path: Path) -> None:
    assert _findings(tmp_path, "---\nlicense: apache-2.0\n---\n# M\n\nReleased under the Apache 2.0 license.\n") == []


def test_silent_without_any_licence(tmp_path: Path) -> None:   # WA501's job
    assert _findings(tmp_path, "# M\n\nA model.\n") == []
