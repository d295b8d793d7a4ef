"""Scorecards of the hand-made fixture releases (fixtures/make_openness_fixtures.py) against the published
frameworks' verdicts (research/openness.md section 3), and declaration-only scorecards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weightaudit.discover import discover
from weightaudit.model import Release
from weightaudit.openness import build_scorecard, scorecard_to_dict
from weightaudit.openness.components import MOF_NAMES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "openness"
MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mof" / "models"


def _scorecard(name: str, declare: str | None = None):
    folder = FIXTURES / name
    if not folder.exists():
        pytest.skip("run fixtures/make_openness_fixtures.py")
    return build_scorecard(discover([str(folder)]), folder / declare if declare else None)


def _pillars(scorecard) -> tuple[str, str, str]:
    return tuple(scorecard.pillars[k].status for k in ("weights", "training_code", "training_data"))


def test_components_are_the_17_mof_names_plus_three_extras() -> None:
    scorecard = _scorecard("card_only_apache")
    names = [c.name for c in scorecard.components]
    assert names[:17] == list(MOF_NAMES) and len(set(names[:17])) == 17
    assert names[17:] == ["Access gating", "Base-model lineage", "Compute documentation"]


def test_card_only_apache() -> None:
    sc = _scorecard("card_only_apache")
    assert _pillars(sc) == ("open", "absent", "open")   # fineweb and c4 are known datasets (ODC-By-1.0)
    assert sc.headline == "open weights"
    assert sc.release_license == "Apache-2.0"
    datasets = sc.component("Datasets")
    assert datasets.evidence[0].source == "README.md:3 datasets" and datasets.evidence[0].confidence.value == "known"
    assert datasets.license == "ODC-By-1.0"
    assert sc.mof.mof_class == 0
    assert sc.osaid.verdict == "insufficient-evidence"   # no training code, but nothing definite against it
    assert sc.osaid.pillars == {"parameters": "satisfied", "code": "insufficient-evidence",
                                "data_information": "satisfied"}


def test_llama2_style() -> None:
    sc = _scorecard("llama2_style")
    weights, code, data = _pillars(sc)
    assert (weights, code) == ("restricted", "absent") and data in ("absent", "mentioned")
    assert "open" not in _pillars(sc)
    assert sc.release_license == "LicenseRef-scancode-llama-2-license-2023"
    sources = {e.source for e in sc.license_evidence}
    assert "LICENSE.txt:1" in sources and "README.md:3 extra_gated_prompt" in sources
    assert sc.component("Access gating").status == "gated"
    assert sc.mof.mof_class == 0 and sc.mof_if_mentions_hold.mof_class == 0
    assert sc.osaid.verdict == "not-compliant"
    assert sc.osaid.pillars["parameters"] == "not-satisfied"
    assert sc.headline == "restricted weights"


def test_bloom_style() -> None:
    sc = _scorecard("bloom_style")
    assert _pillars(sc)[0] == "restricted"
    assert sc.release_license == "LicenseRef-scancode-bigscience-rail-1.0"
    training = sc.component("Training code")   # a known training repository: status and licence from the table
    assert (training.status, training.license, training.confidence.value) == ("included", "BSD-3-Clause", "known")
    assert "bigscience-workshop/Megatron-DeepSpeed" in training.evidence[0].detail
    assert sc.pillars["training_data"].status == "mentioned"
    assert sc.mof.mof_class == 0 and sc.mof_if_mentions_hold.mof_class == 0
    assert sc.osaid.verdict == "not-compliant"


def test_olmo_style_from_folder_alone() -> None:
    sc = _scorecard("olmo_style")
    assert _pillars(sc) == ("open", "open", "open")
    assert sc.component("Training code").evidence[0].source == "train.py"
    assert sc.component("Data preprocessing code").status == "included"
    assert sc.component("Model parameters (Intermediate)").status == "mentioned"
    assert sc.mof.mof_class == 0                          # strict: TR/paper/eval only mentioned
    assert sc.mof_if_mentions_hold.mof_class == 3
    assert sc.osaid.verdict in ("consistent", "insufficient-evidence")
    assert sc.osaid.verdict != "compliant"


def test_olmo_style_with_declaration_is_open_source_ai_and_class_one() -> None:
    sc = _scorecard("olmo_style", "openness.yml")
    assert _pillars(sc) == ("open", "open", "open")
    assert sc.headline.startswith("open-source AI")
    assert sc.mof.mof_class == 1
    datasets = sc.component("Datasets")
    assert datasets.attested and datasets.license == "ODC-By-1.0"
    assert any(e.confidence.value == "attested" for e in datasets.evidence)
    assert sc.osaid.verdict == "consistent"


def test_every_verdict_names_its_evidence() -> None:
    for name in ("olmo_style", "llama2_style", "bloom_style", "card_only_apache"):
        sc = _scorecard(name)
        for result in sc.components:
            if result.status != "unknown":
                assert result.evidence, (name, result.name)
                assert all(e.source for e in result.evidence)
        for pillar in sc.pillars.values():
            assert pillar.evidence, (name, pillar.reason)
        assert sc.license_evidence or sc.release_license is None


def test_unknown_is_minus_one_and_excluded() -> None:
    release = Release(target="empty", root="/nonexistent-weightaudit-root", weight_files=())
    sc = build_scorecard(release)
    assert all(c.score == -1 for c in sc.components)
    assert sc.score is None
    assert sc.pillars["weights"].status == "unknown"


def test_license_conflict_scores_the_stricter_reading(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# m\n")
    (tmp_path / "LICENSE").write_text("LLAMA 2 COMMUNITY LICENSE AGREEMENT\n")
    from safetensors.numpy import save_file
    import numpy as np

    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    sc = build_scorecard(discover([str(tmp_path)]))
    assert sc.release_license == "LicenseRef-scancode-llama-2-license-2023"
    assert sc.license_conflicts and "README.md:2 license" in sc.license_conflicts[0]
    assert sc.pillars["weights"].status == "restricted"


@pytest.mark.parametrize("name", ["OLMo-7B", "Llama-2-7B", "BLOOM", "Mistral-7B-v0.1"])
def test_declaration_only_matches_mot(name: str) -> None:
    path = MODELS / f"{name}.yml"
    if not path.exists():
        pytest.skip("MOF models not available")
    sc = build_scorecard(None, path)
    expected = {"OLMo-7B": 1, "Llama-2-7B": 0, "BLOOM": 0, "Mistral-7B-v0.1": 0}[name]
    assert sc.mof.mof_class == expected == sc.mof_declared.mof_class
    assert all(c.confidence.value == "attested" for c in sc.components[:17])


def test_scorecard_dict_is_json_and_has_design_keys() -> None:
    data = scorecard_to_dict(_scorecard("llama2_style"))
    json.dumps(data)
    assert set(data["pillars"]) == {"weights", "training_code", "training_data"}
    assert {"pillars", "components", "mof_class", "osaid", "score"} <= set(data)
    assert data["osaid"]["verdict"] in ("consistent", "not-compliant", "insufficient-evidence")
    assert data["mof_class"]["class"] == 0 and "if_mentions_hold" in data["mof_class"]
    assert all(c["evidence"] or c["status"] == "unknown" for c in data["components"])
