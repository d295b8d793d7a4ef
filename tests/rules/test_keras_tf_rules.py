"""Keras/TF code-execution rules (WA430–WA459) and the registry entries of the integrity rules (WA160–WA179)."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import FIXTURES, real_sample
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.keras_h5 import HDF5_LOADER, KERAS_ZIP_LOADER
from weightaudit.formats.savedmodel import SAVEDMODEL_LOADER
from weightaudit.model import LoadedFile, Release, Severity
from weightaudit.rules import AuditContext, all_rules, get_rule

KERAS_TF = FIXTURES / "keras_tf"
CODE_RULES = ("WA430", "WA431", "WA432", "WA433", "WA434", "WA437", "WA438", "WA439", "WA440", "WA441", "WA442",
              "WA443")


def run_rules(*files: LoadedFile) -> list:
    ctx = AuditContext(release=Release(target=".", root=".", weight_files=()), files=tuple(files))
    findings = []
    for rule in all_rules():
        if rule.check is not None and rule.id in CODE_RULES:
            findings.extend(rule.check(ctx, dict(rule.thresholds)))
    return findings


def load(name: str) -> LoadedFile:
    path = KERAS_TF / name
    loader = SAVEDMODEL_LOADER if path.is_dir() else KERAS_ZIP_LOADER if path.suffix == ".keras" else HDF5_LOADER
    return loader.load(path, name, LoadOptions())


def facts_file(**facts) -> LoadedFile:
    return LoadedFile(path="m", format="test", size_bytes=0, facts=facts)


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5", "nested_lambda.keras", "nested_lambda.h5"])
def test_lambda_models_are_critical(name: str) -> None:
    findings = run_rules(load(name))
    lambdas = [f for f in findings if f.rule_id == "WA430"]
    assert len(lambdas) == 1 and lambdas[0].severity is Severity.CRITICAL
    assert "marshalled bytecode" in lambdas[0].message and "sha256" in lambdas[0].message
    if name.startswith("nested"):   # the config path, and the layer path in the message
        assert lambdas[0].where == "config.layers[1].config.layers[1].config.function"
        assert "(layer outer/inner/sneaky)" in lambdas[0].message


@pytest.mark.parametrize("name", ["sequential.keras", "sequential.h5", "sequential.weights.h5", "functional.keras",
                                  "functional.h5", "functional.weights.h5", "plain.h5", "sm_module", "sm_keras"])
def test_benign_fixtures_raise_nothing(name: str) -> None:
    assert run_rules(load(name)) == []


# SavedModel op rules (WA440-WA447) are tested in tests/rules/test_savedmodel_rules.py and test_savedmodel_attacks.py.


def test_keras_module_injection_and_functions() -> None:
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"module": "os", "class_name": "system", "config": {"name": "evil"}},
        {"module": "keras.layers", "class_name": "TFOpLambda", "config": {"name": "op", "function": "math.add"}},
        {"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": None},
        {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d"}, "registered_name": "Custom>Dense2"},
        {"module": "keras.src.activations", "class_name": "function", "config": "relu"},
    ]}}
    findings = run_rules(facts_file(keras_config=config))
    assert sorted(f.rule_id for f in findings) == ["WA431", "WA432", "WA433", "WA434"]
    external = next(f for f in findings if f.rule_id == "WA431")
    assert external.where == "config.layers[0]" and external.severity is Severity.CRITICAL   # os: runs code


def test_tf_keras2_lambda_and_string_lambda() -> None:
    code = base64.b64encode(b"\xe3fake-code-object").decode()
    tf2 = {"class_name": "Lambda", "config": {"name": "l", "function": [code, None, None], "function_type": "lambda",
                                              "module": "__main__"}}
    named = {"class_name": "Lambda", "config": {"name": "n", "function": "my_fn", "function_type": "function"}}
    findings = run_rules(facts_file(keras_config={"class_name": "Sequential", "config": {"name": "s", "layers": [tf2, named]}}))
    severities = sorted((f.severity, f.where) for f in findings if f.rule_id == "WA430")
    assert severities == [(Severity.HIGH, "config.layers[1]"), (Severity.CRITICAL, "config.layers[0]")]
    assert not [f for f in findings if f.rule_id == "WA431"]      # the Lambda's own module is not double-reported


def test_keras_metadata_in_savedmodel_is_walked() -> None:
    layer = {"class_name": "Lambda", "config": {"name": "x", "function": {"class_name": "__lambda__",
                                                                          "config": {"code": "AAAA"}}}}
    findings = run_rules(facts_file(keras_metadata=[layer]))
    assert [f.rule_id for f in findings] == ["WA430"]


def test_rule_metadata() -> None:
    ids = {r.id for r in all_rules()}
    expected = {f"WA{n}" for n in range(160, 172)} | set(CODE_RULES) | {"WA435", "WA436"}
    assert expected <= ids
    for rule_id in expected:
        rule = get_rule(rule_id)
        assert rule.name and rule.summary and len(rule.help) > 40
        assert (rule.check is None) == (rule_id not in CODE_RULES)
    assert all(160 <= int(i[2:]) <= 179 or 430 <= int(i[2:]) <= 459 for i in expected)


@pytest.mark.real
def test_basic_pitch_gets_nothing_high() -> None:
    folder = real_sample("basic_pitch/basic_pitch/saved_models/icassp_2022/nmp")
    loaded = SAVEDMODEL_LOADER.load(folder, "nmp", LoadOptions())
    assert loaded.facts["op_counts"].get("SaveV2") and loaded.facts["op_counts"].get("Assert")
    assert [f for f in run_rules(loaded) if f.severity >= Severity.HIGH] == []


@pytest.mark.real
def test_fer_model_gets_nothing_high() -> None:
    path = real_sample("fer/fer/data/emotion_model.hdf5")
    loaded = HDF5_LOADER.load(path, "emotion_model.hdf5", LoadOptions())
    assert [f for f in run_rules(loaded) if f.severity >= Severity.HIGH] == []
