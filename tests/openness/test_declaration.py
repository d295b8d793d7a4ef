"""Declarations in the MOF model format: every published record loads unchanged; errors are usage errors;
--export-mof writes a record MOT's schema accepts and weightaudit reads back."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import yaml

from weightaudit.discover import discover
from weightaudit.errors import UsageError
from weightaudit.openness import build_scorecard, export_mof
from weightaudit.openness.declaration import load_declaration, parse_declaration

MOF_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mof"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "openness"


def test_all_published_records_and_fixtures_load() -> None:
    files = glob.glob(str(MOF_DATA / "models" / "*.yml")) + glob.glob(str(MOF_DATA / "test_data" / "*.yml"))
    if not files:
        pytest.skip("MOF data not available")
    assert len(files) == 273 + 27
    for path in files:
        declaration = load_declaration(path)
        assert declaration.release_name
        assert build_scorecard(None, Path(path)).mof.mof_class in (0, 1, 2, 3)


def test_sample_model_loads() -> None:
    path = MOF_DATA / "config" / "sample_model.yml"
    if not path.exists():
        pytest.skip("MOF data not available")
    assert len(load_declaration(path).components) == 17


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a MOF model YAML mapping"),
    ("framework: {name: Other}\nrelease: {name: x}\n", "framework.name"),
    ("framework: {name: 'Model Openness Framework'}\nrelease: {}\n", "release must be a mapping with a name"),
    ("framework: {name: 'Model Openness Framework'}\nrelease: {name: x, components: [{name: 'Training Code'}]}\n",
     "did you mean 'Training code'"),
    ("framework: {name: 'Model Openness Framework'}\nrelease: {name: x, components: [{name: Datasetz}]}\n",
     "unknown MOF component 'Datasetz'"),
    ("framework: [unclosed\n", "not valid YAML"),
])
def test_bad_declarations(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_declaration(text, "bad.yml")
    assert "bad.yml" in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read declaration"):
        load_declaration(tmp_path / "nope.yml")


def test_not_released_turns_unknown_into_absent(tmp_path: Path) -> None:
    path = tmp_path / "d.yml"
    path.write_text("framework: {name: 'Model Openness Framework', version: '1.0', date: '2024-12-15'}\n"
                    "release:\n  name: x\n  license: {}\n  components: []\n"
                    "weightaudit:\n  not_released: ['Evaluation data']\n")
    sc = build_scorecard(None, path)
    result = sc.component("Evaluation data")
    assert result.status == "absent" and result.score == 0 and result.attested


def test_export_mof_is_valid_and_reads_back(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    folder = FIXTURES / "olmo_style"
    if not folder.exists():
        pytest.skip("run fixtures/make_openness_fixtures.py")
    sc = build_scorecard(discover([str(folder)]))
    text = export_mof(sc)
    data = yaml.safe_load(text)
    schema_path = MOF_DATA / "config" / "mof_schema.json"
    if schema_path.exists():
        schema = json.loads(schema_path.read_text())
        jsonschema.validate(data, schema)
    names = [c["name"] for c in data["release"]["components"]]
    assert "Training code" in names and "Model parameters (Final)" in names
    assert data["release"]["license"]["distribution"]["name"] == "Apache-2.0"
    assert "# Mentioned but not verified" in text and "Technical report" in text
    out = tmp_path / "exported.yml"
    out.write_text(text)
    assert build_scorecard(None, out).mof.mof_class == sc.mof.mof_class
