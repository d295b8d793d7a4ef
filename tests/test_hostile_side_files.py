"""Issue 10: side files an attacker wrote (config.json, shard indexes, card front matter, YAML) are parsed depth-
and alias-safe; a refused file is one WA133 finding naming it and the rest of the audit goes on. Only regular
files are opened; symlink loops and links to '.' are reported once."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from weightaudit.pipeline import RunOptions, run
from weightaudit.report import Report
from weightaudit.safe_read import UnsafeDocument, load_json, load_yaml

from tests.conftest import FIXTURES

DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_YAML = "key: " + "[" * 100_000 + "]" * 100_000 + "\n"
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9))


def _release(tmp_path: Path) -> Path:
    target = tmp_path / "release"
    shutil.copytree(FIXTURES / "tiny-bert", target)
    return target


def _audit(target: Path) -> Report:
    def _hang(signum, frame):  # pragma: no cover - only on a regression
        raise AssertionError("the audit hung")

    signal.signal(signal.SIGALRM, _hang)
    signal.alarm(60)
    try:
        return run([str(target)], RunOptions(command="audit", stats=False))
    finally:
        signal.alarm(0)


def _by_rule(report: Report, rule_id: str) -> list[tuple[str, str]]:
    assert not [f for f in report.findings if f.rule_id == "WA130"], "internal error"
    return [(f.path, f.severity.label) for f in report.findings if f.rule_id == rule_id]


def test_billion_laughs_is_small_on_disk() -> None:
    assert len(BILLION_LAUGHS.encode()) < 1024


@pytest.mark.parametrize("name, text", [
    ("config.json", DEEP_JSON),
    ("model.safetensors.index.json", '{"weight_map": ' + DEEP_JSON + "}"),
    ("tokenizer_config.json", '{"chat_template": "x", "a": ' + DEEP_JSON + "}"),
    ("README.md", "---\n" + DEEP_YAML + "---\n# card\n"),
    ("README.md", "---\n" + BILLION_LAUGHS + "---\n# card\n"),
    ("weightaudit.yaml", BILLION_LAUGHS),
    ("settings.yaml", "a: &a [*a]\n"),
])
def test_hostile_side_file_is_one_finding_naming_it(tmp_path: Path, name: str, text: str) -> None:
    target = _release(tmp_path)
    (target / name).write_text(text)
    report = _audit(target)
    assert _by_rule(report, "WA133") == [(name, "high")]
    assert [f.path for f in report.files if f.tensors] == ["model.safetensors"]   # the audit went on


def test_fifo_named_like_weights_is_reported_not_opened(tmp_path: Path) -> None:
    target = _release(tmp_path)
    os.mkfifo(target / "model.bin")
    os.mkfifo(target / "config.json.tmp")
    report = _audit(target)
    assert _by_rule(report, "WA123") == [("config.json.tmp", "high"), ("model.bin", "high")]
    fifo = next(f for f in report.files if f.path == "model.bin")
    assert not fifo.verified and "not a regular file" in (fifo.reason or "")
    assert not report.verified


def test_fifo_config_is_not_opened(tmp_path: Path) -> None:
    target = _release(tmp_path)
    (target / "config.json").unlink()
    os.mkfifo(target / "config.json")
    report = _audit(target)
    assert _by_rule(report, "WA123") == [("config.json", "high")]


def test_symlink_loops_and_links_to_the_release_are_seen_once(tmp_path: Path) -> None:
    target = _release(tmp_path)
    (target / "here").symlink_to(".")
    (target / "sub").mkdir()
    (target / "sub" / "up").symlink_to("..")
    (target / "loop_a").symlink_to("loop_b")
    (target / "loop_b").symlink_to("loop_a")
    report = _audit(target)
    assert sorted(_by_rule(report, "WA134")) == [("here", "medium"), ("loop_a", "medium"), ("loop_b", "medium"),
                                                 ("sub/up", "medium")]
    assert [f.path for f in report.files] == ["model.safetensors"]


def test_symlink_loop_given_as_the_target_does_not_crash(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    report = run([str(tmp_path / "a")], RunOptions(command="audit", stats=False))
    assert not [f for f in report.findings if f.rule_id == "WA130"]
    assert report.exit_code != 0


def test_safe_json_refuses_depth_and_huge_integers() -> None:
    with pytest.raises(UnsafeDocument, match="nested more than 200"):
        load_json(DEEP_JSON)
    with pytest.raises(UnsafeDocument, match="5,000 digits"):
        load_json('{"n": ' + "7" * 5000 + "}")
    assert load_json('{"s": "[[[[{{{{", "n": [1, [2]]}') == {"s": "[[[[{{{{", "n": [1, [2]]}
    with pytest.raises(ValueError):
        load_json('"' + '\\"' * 100_000)   # unterminated: a clean JSON error, not a quadratic scan


def test_safe_yaml_refuses_alias_bombs_cycles_and_depth() -> None:
    with pytest.raises(UnsafeDocument, match="billion laughs"):
        load_yaml(BILLION_LAUGHS)
    with pytest.raises(UnsafeDocument, match="cyclic"):
        load_yaml("a: &a [1, *a]\n")
    with pytest.raises(UnsafeDocument, match="nested more than 200"):
        load_yaml(DEEP_YAML)
    assert load_yaml("a: &x {b: 1}\nc: *x\nd: {<<: *x, e: 2}\n") == {"a": {"b": 1}, "c": {"b": 1},
                                                                       "d": {"b": 1, "e": 2}}


def test_huge_integer_in_a_safetensors_header_is_a_header_finding(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    header = header.replace("[1]", "[" + "9" * 5000 + "]").encode()
    (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    report = _audit(tmp_path)
    assert _by_rule(report, "WA105") == [("model.safetensors", "high")]
    assert "integer too long" in next(f.message for f in report.findings if f.rule_id == "WA105")


def test_billion_laughs_declaration_is_a_usage_error(runner, tmp_path: Path) -> None:
    from tests.conftest import invoke

    declaration = tmp_path / "openness.yml"
    declaration.write_text(BILLION_LAUGHS)
    result = invoke(runner, "scorecard", "--declare", declaration)
    assert result.exit_code == 2 and "billion laughs" in result.stderr
