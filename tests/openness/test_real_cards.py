"""Scorecards of real (trimmed) model cards, tests/data/model_cards (sources in SOURCES.md): fully open models get
open training code and data with the evidence named and OSAID "consistent" where OSI validated them (OLMo,
Pythia); open-weights models do not; a licence named only in prose is found."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from weightaudit.discover import discover
from weightaudit.openness import build_scorecard

CARDS = Path(__file__).resolve().parents[1] / "data" / "model_cards"


def _release(tmp_path: Path, name: str, edit=None):
    folder = tmp_path / ("edited" if edit else "as-is") / name
    folder.mkdir(parents=True)
    text = (CARDS / name / "README.md").read_text("utf-8")
    (folder / "README.md").write_text(edit(text) if edit else text, "utf-8")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return build_scorecard(discover([str(folder)]))


def _pillars(sc) -> tuple[str, str, str]:
    return tuple(sc.pillars[k].status for k in ("weights", "training_code", "training_data"))


@pytest.mark.parametrize("name, record", [("olmo-7b", "OLMo-7B"), ("pythia-6.9b", "Pythia-6.9B")])
def test_osi_validated_models_are_open_and_osaid_consistent(tmp_path: Path, name: str, record: str) -> None:
    sc = _release(tmp_path, name)
    assert _pillars(sc) == ("open", "open", "open")
    assert sc.headline.startswith("open-source AI")
    assert sc.osaid.verdict == "consistent"                        # OSI: passed
    for component in ("Training code", "Datasets"):
        result = sc.component(component)
        assert result.confidence.value == "known" and f"MOT record {record}" in result.reason
    assert sc.mof.mof_class == 1                                   # the MOT's own class for the record


def test_olmo_links_resolved_by_structure(tmp_path: Path) -> None:
    sc = _release(tmp_path, "olmo-7b")
    report = sc.component("Technical report")
    assert report.status == "mentioned" and [e.url for e in report.evidence] == ["https://arxiv.org/abs/2402.00838"]
    assert sc.component("Compute documentation").status == "included"
    assert all(".gif" not in (e.url or "") for c in sc.components for e in c.evidence)   # the banner is no evidence


def test_bloomz_open_code_and_data_but_restricted_weights(tmp_path: Path) -> None:
    sc = _release(tmp_path, "bloomz")
    assert _pillars(sc) == ("restricted", "open", "open")
    training = sc.component("Training code")
    assert training.license == "Apache-2.0" and "bigscience-workshop/xmtf" in training.evidence[0].detail
    assert "bigscience/xP3" in sc.component("Datasets").evidence[0].detail
    assert sc.osaid.verdict == "not-compliant"                     # OSI: would pass with a licence change
    assert sc.osaid.pillars == {"parameters": "not-satisfied", "code": "satisfied", "data_information": "satisfied"}


def test_llama2_is_restricted_weights_without_code_or_data(tmp_path: Path) -> None:
    sc = _release(tmp_path, "llama-2-7b-chat-mlx")
    assert _pillars(sc) == ("restricted", "absent", "absent")
    assert sc.osaid.verdict == "not-compliant"                     # OSI: did not pass


def test_mistral_is_open_weights_only(tmp_path: Path) -> None:
    sc = _release(tmp_path, "mistral-7b-v0.1")
    assert _pillars(sc) == ("open", "absent", "absent")
    assert sc.headline == "open weights"
    assert sc.osaid.verdict == "insufficient-evidence"             # nothing definite against it, code/data missing
    assert [e.url for e in sc.component("Technical report").evidence] == ["https://arxiv.org/abs/2310.06825"]


def test_falcon3_licence_name_and_prose(tmp_path: Path) -> None:
    sc = _release(tmp_path, "falcon3-10b-instruct")
    assert sc.release_license == "LicenseRef-weightaudit-tii-falcon-llm-2.0"
    assert _pillars(sc)[0] == "restricted" and sc.component("Base-model lineage").status == "derivative"

    def prose_only(text: str) -> str:   # the licence fields removed; the licence named in a sentence instead
        kept = [line for line in text.splitlines() if not line.startswith("license")]
        return "\n".join(kept) + "\n# Falcon3-10B-Instruct\n\n- **License:** TII Falcon LLM License 2.0\n"

    prose = _release(tmp_path, "falcon3-10b-instruct", prose_only)
    assert prose.release_license == "LicenseRef-weightaudit-tii-falcon-llm-2.0"
    assert any(e.confidence.value == "mentioned" for e in prose.license_evidence)


def test_olmo_without_licence_field_keeps_open_weights_from_prose(tmp_path: Path) -> None:
    sc = _release(tmp_path, "olmo-7b", lambda text: text.replace("license: apache-2.0\n", "", 1))
    assert sc.release_license == "Apache-2.0" and sc.pillars["weights"].status == "open"
    assert all(e.confidence.value == "mentioned" for e in sc.license_evidence if "Apache" in e.detail)


def test_model_identified_by_card_title_not_only_folder_name(tmp_path: Path) -> None:
    folder = tmp_path / "some-download"
    folder.mkdir()
    shutil.copy(CARDS / "olmo-7b" / "README.md", folder / "README.md")
    sc = build_scorecard(discover([str(folder)]))
    training = sc.component("Training code")
    assert training.license == "Apache-2.0" and "MOT record OLMo-7B" in training.reason
    assert any("title" in e.source for e in training.evidence)


def test_phi3_open_weights_framework_links_are_not_training_code(tmp_path: Path) -> None:
    sc = _release(tmp_path, "phi-3-mini-4k-instruct-gguf")
    assert _pillars(sc) == ("open", "absent", "mentioned")   # PyTorch/DeepSpeed/transformers are frameworks
    assert sc.osaid.verdict == "insufficient-evidence"
    assert [e.url for e in sc.component("Technical report").evidence] == ["https://aka.ms/phi3-tech-report"]
    assert sc.component("Compute documentation").status == "included"   # "GPUS: 512 H100-80G / Training time"


def test_gemma_restricted_gated_weights(tmp_path: Path) -> None:
    sc = _release(tmp_path, "gemma-3-4b-it")
    assert _pillars(sc) == ("restricted", "absent", "mentioned")
    assert sc.release_license == "LicenseRef-scancode-gemma-tou-2024-04-01"
    assert sc.component("Access gating").status == "gated" and sc.osaid.verdict == "not-compliant"


def test_qwen_derivative_open_weights_only(tmp_path: Path) -> None:
    sc = _release(tmp_path, "flux-japanese-qwen2.5-32b-instruct")
    assert _pillars(sc) == ("open", "absent", "absent")
    assert sc.component("Base-model lineage").status == "derivative"
    assert sc.component("Evaluation code").status == "mentioned"        # simple-evals, by repository name
    assert all("tech-dev.png" not in (e.url or "") for c in sc.components for e in c.evidence)


def test_smollm2_open_code_and_datasets_named_in_prose(tmp_path: Path) -> None:
    sc = _release(tmp_path, "smollm2-135m")
    assert _pillars(sc)[:2] == ("open", "open")                    # nanotron + alignment-handbook, known
    datasets = sc.component("Datasets")
    named = " ".join(e.detail for e in datasets.evidence)
    assert "'FineWeb-Edu' named" in named and "'DCLM' named" in named
    assert datasets.license is None   # The Stack has no single licence: the strictest reading is "not recorded"
    assert sc.pillars["training_data"].status == "unknown"
    assert sc.osaid.pillars["data_information"] == "satisfied"     # every named dataset is documented
    assert sc.component("Evaluation code").license == "MIT"       # lighteval


def test_starcoder2_documented_data_restricted_weights(tmp_path: Path) -> None:
    sc = _release(tmp_path, "starcoder2-3b")
    assert _pillars(sc)[0] == "restricted"
    assert sc.release_license == "LicenseRef-scancode-bigcode-open-rail-m-v1"
    assert sc.osaid.verdict == "not-compliant"                     # OSI: would pass with a licence change
    assert sc.osaid.pillars["data_information"] == "satisfied"
    report = sc.component("Technical report")                      # huggingface.co/papers/<arXiv id>
    assert report.status == "mentioned" and report.evidence[0].url == "https://huggingface.co/papers/2402.19173"
    assert sc.component("Training code").status == "absent"        # the card links only the fine-tuning repo


def test_a_fine_tune_of_olmo_is_not_olmo(tmp_path: Path) -> None:
    def fine_tune(text: str) -> str:   # the OLMo card re-used by a fine-tune that declares OLMo as its base
        return text.replace("license: apache-2.0\n", "license: apache-2.0\nbase_model: allenai/OLMo-7B\n", 1)

    sc = _release(tmp_path, "olmo-7b", fine_tune)
    assert all("MOT record" not in e.detail for c in sc.components for e in c.evidence)
    assert sc.component("Base-model lineage").status == "derivative"
