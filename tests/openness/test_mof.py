"""MOF class computed exactly as the Model Openness Tool does: its 27 fixtures and the 273 published records."""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import pytest
import yaml

from weightaudit.openness.mof import MofRecord, evaluate_mof, normalise_record, record_from_mof

MOF_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mof"
TEST_DATA = MOF_DATA / "test_data"
MODELS = MOF_DATA / "models"
NAME_CLASS = {"Class1": 1, "Class2R": 2, "Class2T": 2, "Class3R": 3, "Class3T": 3, "FullTest": 1}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def _fixture_files() -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(TEST_DATA / "*.yml")))


def _class_from_name(name: str) -> int:
    prefix = name.split("_")[0].replace("TestFile", "")
    return NAME_CLASS.get(prefix, NAME_CLASS.get(name.split("File")[0], 0))


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.name[:40])
def test_mot_fixture_class_matches_file_name(path: Path) -> None:
    result = evaluate_mof(record_from_mof(yaml.safe_load(path.read_text())))
    expected_class = _class_from_name(path.name)
    assert result.mof_class == expected_class
    # The class-III share in the name is the same definition MOT still uses (lower classes changed since).
    c3 = int(re.search(r"C3_(\d+)%", path.name).group(1))
    assert round(result.progress[3]) == c3


def test_mot_fixtures_exist() -> None:
    _need(TEST_DATA)
    assert len(_fixture_files()) == 27


def test_expected_results_json_exactly() -> None:
    text = _need(TEST_DATA / "expected_results.json").read_text()
    data = json.loads(re.sub(r",(\s*[}\]])", r"\1", text))   # MOT's file has trailing commas
    assert len(data["models"]) == 27
    for model in data["models"]:
        result = evaluate_mof(record_from_mof({"release": model["release"]}))
        expected = model["classification"]
        assert result.mof_class == expected["class"], model["release"]["name"]
        assert result.label.startswith(expected["label"])
        for level in ("1", "2", "3"):
            assert result.progress[int(level)] == pytest.approx(float(expected["progress"][level])), \
                (model["release"]["name"], level)


# Published verdicts (research/openness.md section 3), from MOT's own records.
PUBLISHED = {
    "OLMo-7B": (1, (100, 100, 100)), "Pythia-6.9B": (1, (100, 100, 100)), "Amber": (1, (100, 100, 100)),
    "Llama-2-7B": (0, (0, 0, 0)), "Mistral-7B-v0.1": (0, (0, 0, 33.3)), "Mixtral-8x7B-v0.1": (0, (0, 0, 83.3)),
    "BLOOM": (0, (0, 0, 16.7)), "Phi-2": (0, (0, 0, 16.7)), "Grok-1": (0, (0, 0, 33.3)),
    "StarCoder": (0, (0, 0, 0)),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_verdicts(name: str) -> None:
    data = yaml.safe_load(_need(MODELS / f"{name}.yml").read_text())
    result = evaluate_mof(record_from_mof(data))
    mof_class, progress = PUBLISHED[name]
    assert result.mof_class == mof_class
    assert tuple(round(result.progress[c], 1) for c in (1, 2, 3)) == pytest.approx(progress)


# Where our licence normalisation deliberately reads a record better than MOT's exact string match. The class
# never changes for the 273 records, but class-III progress does for these (record: (MOT, weightaudit)), because
# free-text names such as "Apache 2.0", "MIT license", "BSD-3", "CC BY-SA 4.0" become SPDX ids that MOT counts
# as open.
NORMALISATION_PROGRESS_CHANGES = {
    "Bilingual-gpt-neox-4b.yml": (16.7, 33.3), "Claude-1.yml": (16.7, 33.3), "Claude-2.yml": (16.7, 33.3),
    "CodeT5+-16B.yml": (0.0, 16.7), "CodeT5+-220M.yml": (0.0, 16.7), "CodeT5+-2B.yml": (0.0, 16.7),
    "CodeT5+-6B.yml": (0.0, 16.7), "CodeT5+-770M.yml": (0.0, 16.7), "CodeT5.yml": (0.0, 16.7),
    "DeBERTa.yml": (0.0, 16.7), "DeepSeek-Coder.yml": (0.0, 16.7), "DeepSeek-MoE-16B.yml": (0.0, 16.7),
    "FLM-101B.yml": (0.0, 16.7), "Falcon-40B.yml": (0.0, 16.7), "OpenCALM-7b.yml": (0.0, 16.7),
    "Palmyra.yml": (0.0, 16.7), "Persimmon-8B.yml": (0.0, 16.7), "Pile-T5 XXL.yml": (0.0, 16.7),
    "SEA-LION.yml": (0.0, 33.3), "UL2.yml": (0.0, 16.7), "japanese-large-lm-3.6b.yml": (0.0, 16.7),
}


def _model_files() -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(MODELS / "*.yml")))


def _reference_mot(record: MofRecord) -> tuple[int, tuple[float, float, float]]:
    """An independent, literal transcription of MOT's evaluator (getProgress / handleTechnicalReportOmission),
    used to cross-check weightaudit.openness.mof on every published record."""
    from weightaudit.openness.licenses import mot_is_open

    req = {3: [9, 10, 12, 13, 14, 11], 2: [7, 8, 18, 19], 1: [15, 16, 24, 21]}
    types = {15: "data", 16: "code", 9: "code", 10: "data", 24: "data", 7: "code", 8: "code", 18: "code",
             19: "data", 12: "document", 13: "document", 14: "document", 11: "document", 21: "document"}

    def licence(cid: int) -> str:
        own = record.components[cid]
        if own is not None:
            return own or "unlicensed"
        g = record.global_licenses
        return g.get(types[cid]) or g.get("distribution") or "unlicensed"

    ev: dict[int, dict[str, list[int]]] = {}
    acc: list[int] = []
    for c in (3, 2, 1):
        acc = acc + req[c]
        ev[c] = {"included": [], "invalid": [], "unlicensed": []}
        for cid in acc:
            if cid in record.components:
                lic = licence(cid)
                bucket = "included" if mot_is_open(lic) else "unlicensed" if lic == "unlicensed" else "invalid"
                ev[c][bucket].append(cid)

    def status(c: int, cid: int) -> str | None:
        return next((b for b in ("included", "invalid", "unlicensed") if cid in ev[c][b]), None)

    if status(3, 11) != "included" and status(1, 21) is not None:
        for c in (2, 3):
            ev[c][status(1, 21)].append(21)
    progress = {}
    for c in (3, 2, 1):
        total, i, included = 0, 3, 0
        while i >= c:
            total += len(req[i])
            included = len(ev[i]["included"])
            if included < total:
                break
            i -= 1
        if i > c:
            progress[c] = 0.0
            continue
        if c == 1 and status(1, 11) != "included" and status(1, 21) == "included":
            total -= 1
        progress[c] = min(included / total * 100, 100.0)
    best = min([c for c in (1, 2, 3) if progress[c] == 100.0], default=0)
    return best, (progress[1], progress[2], progress[3])


def test_all_published_records_match_reference_and_list_normalisation_changes() -> None:
    files = _model_files()
    if not files:
        pytest.skip("MOF models not available")
    assert len(files) == 273
    changed = {}
    for path in files:
        record = record_from_mof(yaml.safe_load(path.read_text()))
        exact = evaluate_mof(record)
        ref_class, ref_progress = _reference_mot(record)
        assert exact.mof_class == ref_class, path.name
        assert tuple(exact.progress[c] for c in (1, 2, 3)) == pytest.approx(ref_progress), path.name
        better = evaluate_mof(normalise_record(record)[0])
        assert better.mof_class == exact.mof_class, path.name   # normalisation never changes a published class
        if tuple(better.progress.values()) != tuple(exact.progress.values()):
            changed[path.name] = (round(exact.progress[3], 1), round(better.progress[3], 1))
    assert changed == NORMALISATION_PROGRESS_CHANGES


def test_unlicensed_component_does_not_inherit_global() -> None:
    record = MofRecord({9: "", 10: None}, {"distribution": "Apache-2.0"})
    result = evaluate_mof(record)
    assert "Model architecture" in result.unlicensed
    assert result.licenses["Model parameters (Final)"] == "Apache-2.0"
