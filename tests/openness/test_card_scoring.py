"""Scorecards of small releases built here: licence found in the card's prose when the field is gone, the model
card score follows its key sections, and only the release root's README.md is the model card."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from weightaudit.discover import discover
from weightaudit.openness import build_scorecard
from weightaudit.openness.evidence import Confidence


def _safetensors(path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")


def _release(tmp_path: Path, card: str | None, extra: dict[str, str] | None = None):
    _safetensors(tmp_path / "model.safetensors")
    if card is not None:
        (tmp_path / "README.md").write_text(card, "utf-8")
    for rel, text in (extra or {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, "utf-8")
    return build_scorecard(discover([str(tmp_path)]))


PROSE_APACHE = """---
tags: [text-generation]
---
# Tiny

This model is released under the Apache 2.0 license.

## License

Licensed under Apache 2.0.
"""


def test_licence_in_prose_only_gives_open_weights_with_lower_confidence(tmp_path: Path) -> None:
    sc = _release(tmp_path, PROSE_APACHE)
    assert sc.release_license == "Apache-2.0"
    assert sc.pillars["weights"].status == "open"
    assert any(e.source == "README.md:6" and e.confidence == Confidence.MENTIONED for e in sc.license_evidence)


def test_falcon_licence_named_in_prose(tmp_path: Path) -> None:
    sc = _release(tmp_path, "# Falcon3\n\nThe model is available under the TII Falcon LLM License.\n")
    assert sc.release_license == "LicenseRef-weightaudit-tii-falcon-llm-2.0"
    assert sc.pillars["weights"].status == "restricted"


def test_field_wins_over_prose(tmp_path: Path) -> None:
    sc = _release(tmp_path, "---\nlicense: mit\n---\n# M\nWe compare against models licensed under Apache 2.0.\n")
    assert sc.release_license == "MIT"


def test_card_with_no_key_section_scores_low(tmp_path: Path) -> None:
    sc = _release(tmp_path, "---\nlicense: apache-2.0\n---\n# Tiny\n\n## Data Protection and Copyright Requests\n\n"
                  + "Write to us if you believe your data was used without permission, please. " * 3 + "\n")
    card = sc.component("Model card")
    assert card.status == "included" and card.score <= 1.0
    assert sc.component("Data card").status == "absent"


def test_data_readme_is_not_the_model_card(tmp_path: Path) -> None:
    sc = _release(tmp_path, None, {"data/README.md": "---\nlicense: cc-by-4.0\n---\n# A dataset\n"})
    assert sc.component("Model card").status == "absent"
    assert sc.release_license is None


def test_training_data_stated_undisclosed_is_definite_evidence(tmp_path: Path) -> None:
    sc = _release(tmp_path, "---\nlicense: apache-2.0\n---\n# M\n\n## Training data\n\n"
                  "The pre-training data is not publicly disclosed, for competitive reasons.\n")
    assert sc.osaid.verdict == "not-compliant"
    assert sc.osaid.pillars["data_information"] == "not-satisfied"
    assert any("README.md:8" in reason for reason in sc.osaid.reasons)


def test_silence_about_code_and_data_is_insufficient_evidence(tmp_path: Path) -> None:
    sc = _release(tmp_path, "---\nlicense: apache-2.0\n---\n# M\n\nA small model.\n")
    assert sc.osaid.verdict == "insufficient-evidence"
    assert sc.osaid.pillars == {"parameters": "satisfied", "code": "insufficient-evidence",
                                "data_information": "insufficient-evidence"}
