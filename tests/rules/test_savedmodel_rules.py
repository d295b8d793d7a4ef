"""SavedModel op rules (WA440–WA447) on recorded facts, and the op tables they read."""

from __future__ import annotations

import pytest

from weightaudit.formats.savedmodel_graph import AttrSite, OpSite
from weightaudit.model import LoadedFile, Release, Severity
from weightaudit.rules import AuditContext, all_rules, get_rule
from weightaudit.rules.tf_op_tables import op_tables

TF_RULES = ("WA440", "WA441", "WA442", "WA443", "WA444", "WA445", "WA446", "WA447")
SAVE = "__inference__traced_save_12"
RESTORE = "__inference__traced_restore_40"


def run_rules(*files: LoadedFile) -> list:
    ctx = AuditContext(release=Release(target=".", root=".", weight_files=()), files=tuple(files))
    return [f for rule in all_rules() if rule.id in TF_RULES for f in rule.check(ctx, dict(rule.thresholds))]


def sites_file(*sites: tuple, callers: dict | None = None, attrs: tuple = ()) -> LoadedFile:
    """A SavedModel's facts from (op, function, node[, count]) tuples (meta-graph 0)."""
    ops = tuple(OpSite(s[0], 0, s[1], s[2], s[3] if len(s) > 3 else 1) for s in sites)
    facts = {"ops": ops, "functions": tuple({s.function for s in ops if s.function}), "tf_attr_values": attrs,
             "tf_saver_callers": callers or {}}
    return LoadedFile(path="m", format="tf-savedmodel", size_bytes=0, facts=facts)


TRUSTED = {SAVE: (("top-level node 'StatefulPartitionedCall_1' of meta-graph 0", True),),
           RESTORE: (("top-level node 'StatefulPartitionedCall_2' of meta-graph 0", True),)}


def test_checkpoint_ops_are_trusted_only_in_the_saver() -> None:
    standard = sites_file(("SaveV2", SAVE, "SaveV2"), ("RestoreV2", RESTORE, "RestoreV2"),
                          ("MergeV2Checkpoints", SAVE, "MergeV2Checkpoints"), ("SaveV2", None, "save/SaveV2"),
                          ("Assert", "__inference_call_3", "a/Assert"), callers=TRUSTED)
    assert run_rules(standard) == []
    sneaky = sites_file(("RestoreV2", "__inference_serve_7", "RestoreV2"), ("SaveV2", None, "SaveV2"))
    sneaky.facts["tf_untrusted_checkpoint_nodes"] = (("SaveV2", 0, "SaveV2", "outside the saver scope save/"),)
    findings = run_rules(sneaky)
    assert [(f.rule_id, f.severity) for f in findings] == [("WA442", Severity.HIGH)] * 2
    assert findings[1].where == "meta-graph 0, the top-level graph, node 'SaveV2'"


def test_saver_function_called_from_elsewhere_is_not_trusted() -> None:
    callers = {SAVE: TRUSTED[SAVE] + (("node 'c' of function __inference_serve_7 (meta-graph 0)", False),)}
    findings = run_rules(sites_file(("SaveV2", SAVE, "SaveV2"), callers=callers))
    assert [f.rule_id for f in findings] == ["WA442"]
    assert "__inference_serve_7" in findings[0].message


def test_python_custom_and_unlisted_ops() -> None:
    findings = run_rules(sites_file(("EagerPyFunc", "__inference_x_1", "f"), ("MyCustomOp", None, "c"),
                                    ("__inference_x_1", None, "call"), ("MatMul", "__inference_x_1", "m"),
                                    ("QueueDequeueV2", None, "q")))
    by_rule = {f.rule_id: f for f in findings}
    assert {r: f.severity for r, f in by_rule.items()} == {
        "WA440": Severity.CRITICAL, "WA443": Severity.MEDIUM, "WA447": Severity.MEDIUM}
    assert "MyCustomOp" in by_rule["WA443"].message and "QueueDequeueV2" in by_rule["WA447"].message
    assert by_rule["WA440"].where == "meta-graph 0, function __inference_x_1, node 'f'"


def test_findings_are_aggregated_per_op() -> None:
    sites = [("ReadFile", f"__inference_f_{n}", "r", 1000) for n in range(50)]
    findings = run_rules(sites_file(*sites))
    assert len(findings) == 1 and findings[0].rule_id == "WA441"
    assert "50000 nodes" in findings[0].message and "47 more functions" in findings[0].message


@pytest.mark.parametrize("op, attr, value, hit", [
    ("PrintV2", "output_stream", "file:///tmp/x", True), ("PrintV2", "output_stream", "stderr", False),
    ("DecodeProtoV2", "descriptor_source", "local://", False), ("EncodeProto", "descriptor_source", "/a/b", True),
    ("FixedUnigramCandidateSampler", "vocab_file", "", False), ("AnyOp", "debug_urls", "file:///x", True),
    ("Identity", "output_stream", "file:///x", False),
])
def test_file_attributes(op: str, attr: str, value: str, hit: bool) -> None:
    site = AttrSite(op, 0, None, "n", attr, value)
    findings = [f for f in run_rules(sites_file(attrs=(site,))) if f.rule_id == "WA446"]
    assert [f.severity for f in findings] == ([Severity.HIGH] if hit else [])


def test_tables_are_consistent() -> None:
    tables = op_tables()
    assert {"MatMul", "Const", "StatefulPartitionedCall", "ReadVariableOp", "While", "PrintV2"} <= tables.allowed
    assert not tables.allowed & set(tables.category)
    assert tables.allowed <= tables.known                     # the allowlist comes from the registry
    assert tables.category["PyFunc"].severity is Severity.CRITICAL
    assert {c.rule for c in tables.category.values()} == {"WA440", "WA441", "WA442", "WA444", "WA445"}
    for op in ("WriteFile", "MatchingFiles", "SqlDataset", "DebugIdentityV2", "ImmutableConst", "SaveV2"):
        assert op in tables.category


def test_rule_metadata() -> None:
    for rule_id in (*TF_RULES, "WA177"):
        rule = get_rule(rule_id)
        assert rule.name and rule.summary and len(rule.help) > 40
        assert (rule.check is None) == (rule_id == "WA177")
