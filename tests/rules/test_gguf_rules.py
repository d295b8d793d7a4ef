"""WA180-WA189 (GGUF integrity) fire on their malformed fixture and stay silent on valid files; chat templates
in GGUF metadata are read with the WA460-WA462 rules."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from weightaudit.formats.gguf import parse
from weightaudit.model import FileStatus, Severity
from weightaudit.rules import all_rules

from tests.conftest import FIXTURES, invoke_json

sys.path.insert(0, str(FIXTURES))
import make_gguf_fixtures as mk  # noqa: E402

GGUF = FIXTURES / "gguf"
RULE_FILES = sorted(GGUF.glob("WA1*.gguf"))
VALID_FILES = [GGUF / "valid-f32-f16.gguf", GGUF / "quantized-q8_0-q4_0.gguf"]
FATAL = {"WA180", "WA181", "WA182"}


def _gguf_rules():
    return [r for r in all_rules() if "gguf" in r.tags]


def test_rules_are_documented_in_their_range() -> None:
    rules = _gguf_rules()
    assert [r.id for r in rules] == [f"WA18{i}" for i in range(10)]
    for rule in rules:
        assert re.fullmatch(r"gguf-[a-z0-9-]+", rule.name) and rule.summary.endswith(".")
        assert len(rule.help) > 200 and "What to do" in rule.help and rule.check is None


def test_every_rule_has_a_fixture() -> None:
    assert {p.name[:5] for p in RULE_FILES} == {r.id for r in _gguf_rules()}


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_malformed_file_triggers_exactly_its_rule(path: Path) -> None:
    loaded = parse(path, path.name)
    assert [f.rule_id for f in loaded.findings] == [path.name[:5]]
    assert all(f.path == path.name for f in loaded.findings)
    if path.name[:5] in FATAL:
        assert loaded.status is FileStatus.ERROR and not loaded.verified and loaded.tensors == ()
    if not loaded.verified:
        assert loaded.reason and "\n" not in loaded.reason


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_files_trigger_nothing(path: Path) -> None:
    loaded = parse(path, path.name)
    assert loaded.findings == () and loaded.verified


def test_unused_bytes_severity_depends_on_llama_cpp() -> None:
    gap = parse(GGUF / "WA189-gap-between-tensors.gguf", "gap.gguf").findings[0]
    trailing = parse(GGUF / "WA189-trailing-bytes.gguf", "trailing.gguf").findings[0]
    assert gap.severity is Severity.MEDIUM and gap.tensor == "b"
    assert trailing.severity is Severity.LOW


def test_unreadable_tensor_entries_leave_the_file_unverified() -> None:
    for name in ("WA184-unknown-ggml-type.gguf", "WA188-row-not-whole-blocks.gguf", "WA183-duplicate-tensor.gguf",
                 "WA186-tensor-out-of-bounds.gguf"):
        loaded = parse(GGUF / name, name)
        assert loaded.status is FileStatus.ERROR and not loaded.verified, name


def test_layout_problems_keep_the_inventory() -> None:
    loaded = parse(GGUF / "WA187-tensor-overlap.gguf", "o.gguf")
    assert [t.name for t in loaded.tensors] == ["a", "b"] and loaded.verified


# ------------------------------------------------------------------------------------------ chat templates

def _with_templates(tmp_path: Path, templates: list[tuple[str, str]]) -> Path:
    kvs = mk.model_kvs(template=None) + [(key, mk.STR, text) for key, text in templates]
    path = tmp_path / "t.gguf"
    path.write_bytes(mk.gguf_file(kvs, mk.valid_tensors()))
    return path


def test_malicious_template_is_critical_at_its_key() -> None:
    loaded = parse(GGUF / "malicious-template.gguf", "m.gguf")
    (finding,) = loaded.findings
    assert (finding.rule_id, finding.severity, finding.where) == ("WA460", Severity.CRITICAL, "tokenizer.chat_template")
    assert "__globals__" in finding.message


def test_named_templates_are_analysed(tmp_path: Path) -> None:
    path = _with_templates(tmp_path, [("tokenizer.chat_template", mk.LLAMA3_TEMPLATE),
                                      ("tokenizer.chat_template.tool_use",
                                       "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}")])
    loaded = parse(path, "t.gguf")
    assert {(f.rule_id, f.where) for f in loaded.findings} == {
        ("WA460", "tokenizer.chat_template.tool_use"), ("WA461", "tokenizer.chat_template.tool_use")}
    assert loaded.facts["chat_template_keys"] == ["tokenizer.chat_template", "tokenizer.chat_template.tool_use"]


def test_duplicate_template_key_hides_nothing(tmp_path: Path) -> None:
    """A reviewer's tool may show the first value and the runtime use the second: both are analysed."""
    path = _with_templates(tmp_path, [("tokenizer.chat_template", mk.LLAMA3_TEMPLATE),
                                      ("tokenizer.chat_template", mk.MALICIOUS_TEMPLATE)])
    assert sorted(f.rule_id for f in parse(path, "t.gguf").findings) == ["WA183", "WA460"]


def test_template_is_analysed_even_when_the_header_breaks_later(tmp_path: Path) -> None:
    data = mk.gguf_file(mk.model_kvs(mk.MALICIOUS_TEMPLATE), [mk.Tensor("q", 2, (30,), bytes(18))])
    path = tmp_path / "t.gguf"
    path.write_bytes(data)
    assert sorted(f.rule_id for f in parse(path, "t.gguf").findings) == ["WA188", "WA460"]


# ------------------------------------------------------------------------------------------ CLI

def test_cli_malicious_gguf_fails_with_critical_template(runner) -> None:
    code, report = invoke_json(runner, "audit", GGUF / "malicious-template.gguf")
    assert code == 1
    assert any(f["rule_id"] == "WA460" and f["severity"] == "critical" for f in report["findings"])


def test_cli_benign_gguf_has_no_integrity_or_code_findings(runner) -> None:
    code, report = invoke_json(runner, "audit", GGUF / "valid-f32-f16.gguf")
    serious = [f for f in report["findings"] if f["rule_id"][:3] in ("WA1", "WA4")
               and Severity.parse(f["severity"]) >= Severity.MEDIUM]
    assert serious == [] and code == 0
    (entry,) = report["files"]
    assert entry["format"] == "gguf" and entry["metadata"]["general.architecture"] == "llama"
    assert {t["name"]: t["shape"] for t in report["tensors"]}["token_embd.weight"] == [16, 8]
