"""Issue 10's budget model, finished: every cap is a named limit with its default in README "Reliability", the
user's policy sets it, and hitting it is WA132 naming the limit and an unverified file — for the caps that were
still module constants (hidden pickles in side files, .keras JSON members, 7z, tar PAX headers, TensorBundle
records, SavedModel bookkeeping), and for release-level rules, which now read the limits too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from weightaudit.limits import DEFAULT_LIMITS, Limits

README = Path(__file__).resolve().parent.parent / "README.md"
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _readme_defaults() -> dict[str, int]:
    """``| `name` | default | bounds |`` rows of README "Reliability" -> the default, units read back."""
    section = README.read_text().split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, int] = {}
    for name, default in re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, re.M):
        number, _, unit = default.partition(" ")
        rows[name] = int(number.replace(",", "")) * _UNITS.get(unit, 1)
    return rows


def test_readme_lists_every_limit_with_its_default() -> None:
    rows = _readme_defaults()
    assert sorted(rows) == sorted(Limits.names())
    assert {name: getattr(DEFAULT_LIMITS, name) for name in Limits.names()} == rows


# -- Helpers: a release audited through the CLI with the user's policy (never one inside the release) --------------

def _audit(tmp_path: Path, target: Path, limits: str = "", extra: str = "") -> tuple[int, dict]:
    from click.testing import CliRunner

    from tests.conftest import invoke_json

    policy = tmp_path / "user-policy.yaml"
    policy.write_text(f"version: 1\n{extra}" + (f"limits: {{{limits}}}\n" if limits else ""))
    return invoke_json(CliRunner(), "audit", target, "--no-stats", "--policy", policy)


def _hits(report: dict, rule_id: str) -> list[tuple[str, str, str]]:
    return [(f["path"], f["severity"], f["message"]) for f in report["findings"] if f["rule_id"] == rule_id]


def _verified(report: dict) -> dict[str, bool]:
    return {f["path"]: f["verified"] for f in report["files"]}


def _release(tmp_path: Path, metadata: dict | None = None, **side_files: str) -> Path:
    """A folder with one small valid safetensors file and the given JSON side files (name -> text)."""
    import json

    folder = tmp_path / "release"
    folder.mkdir()
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": metadata or {"format": "pt"}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (folder / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 8)
    for name, text in side_files.items():
        (folder / name.replace("__", ".")).write_text(text)
    return folder


def _padded_payload(pops: int, call: bool = True) -> bytes:
    """A protocol-2 pickle of ``2 * pops`` harmless opcodes (BININT1, POP), then optionally os.system('id').
    Built here as bytes, never loaded."""
    body = b"\x80\x02" + b"K\x010" * pops
    if call:
        body += b"cos\nsystem\nX\x02\x00\x00\x00id\x85R"
    return body + b"N."


def _b64_config(payload: bytes) -> str:
    import base64
    import json

    return json.dumps({"model_type": "bert", "auto_map": base64.b64encode(payload).decode()})


# -- (a) release-level rules read the user's limits: hidden pickles in side files ----------------------------------

def test_hidden_pickle_padded_past_the_opcode_limit_is_still_judged_and_limit_reached(tmp_path: Path) -> None:
    """Attack: a base64 pickle in config.json padded with harmless opcodes past the hidden-pickle opcode budget
    before its os.system call was dropped without a word (the run 'failed', so the value was skipped)."""
    folder = _release(tmp_path, config__json=_b64_config(_padded_payload(100)))
    code, report = _audit(tmp_path, folder, "nested_pickle_opcodes: 50")
    assert [(p, s) for p, s, _ in _hits(report, "WA426")] == [("config.json", "critical")]
    assert "os.system" in _hits(report, "WA426")[0][2]
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("config.json", "high")]
    assert "limits.nested_pickle_opcodes = 50" in _hits(report, "WA132")[0][2]
    assert _verified(report) == {"config.json": False, "model.safetensors": True} and code == 1


def test_hidden_data_pickle_past_the_opcode_limit_is_limit_reached_and_unverified(tmp_path: Path) -> None:
    folder = _release(tmp_path, config__json=_b64_config(_padded_payload(100, call=False)))
    code, report = _audit(tmp_path, folder, "nested_pickle_opcodes: 50", extra="fail_on: critical\n")
    assert [(p, s) for p, s, _ in _hits(report, "WA426")] == [("config.json", "medium")]
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("config.json", "high")]
    assert _verified(report)["config.json"] is False and code == 3      # nothing critical: incomplete, not a pass
    assert report["summary"]["verdict"] == "incomplete"


def test_hidden_pickle_within_the_default_limit_is_judged_and_stays_verified(tmp_path: Path) -> None:
    folder = _release(tmp_path, config__json=_b64_config(_padded_payload(100)))
    code, report = _audit(tmp_path, folder)
    assert [(p, s) for p, s, _ in _hits(report, "WA426")] == [("config.json", "critical")]
    assert _hits(report, "WA132") == [] and _verified(report) == {"model.safetensors": True} and code == 1


def test_side_file_over_the_policy_size_is_named_with_the_users_limit(tmp_path: Path) -> None:
    folder = _release(tmp_path, config__json=_b64_config(_padded_payload(100)))
    code, report = _audit(tmp_path, folder, "side_file_bytes: 64")
    assert ("config.json", "high") in [(p, s) for p, s, _ in _hits(report, "WA132")]
    assert all("limits.side_file_bytes = 64" in m for _, _, m in _hits(report, "WA132"))
    assert _verified(report)["config.json"] is False and code == 1


def test_json_side_files_past_the_policy_limit_are_limit_reached(tmp_path: Path) -> None:
    folder = _release(tmp_path, a__json='{"x": 1}', b__json='{"y": 2}', c__json='{"z": 3}')
    code, report = _audit(tmp_path, folder, "json_side_files: 2")
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("c.json", "high")]
    assert "limits.json_side_files = 2" in _hits(report, "WA132")[0][2]
    assert _verified(report) == {"c.json": False, "model.safetensors": True} and code == 1
    code, report = _audit(tmp_path, folder)
    assert _hits(report, "WA132") == [] and _verified(report) == {"model.safetensors": True} and code == 0


def test_safetensors_metadata_past_the_policy_limit_is_limit_reached(tmp_path: Path) -> None:
    folder = _release(tmp_path, metadata={"format": "pt", "note": "a", "more": "b"})
    code, report = _audit(tmp_path, folder, "metadata_strings: 2")
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("model.safetensors", "high")]
    assert "limits.metadata_strings = 2" in _hits(report, "WA132")[0][2]
    assert _verified(report) == {"model.safetensors": False} and code == 1
    code, report = _audit(tmp_path, folder)
    assert _hits(report, "WA132") == [] and _verified(report) == {"model.safetensors": True} and code == 0


# -- (c) format caps that were module constants ---------------------------------------------------------------------

def _tar_with_long_name(tmp_path: Path) -> Path:
    import io
    import tarfile

    target = tmp_path / "model.tar"
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("archive/" + "n" * 300)       # a PAX header carries the long path
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    return target


def test_tar_pax_header_over_the_policy_limit_is_limit_reached(tmp_path: Path) -> None:
    target = _tar_with_long_name(tmp_path)
    code, report = _audit(tmp_path, target, "tar_pax_bytes: 100")
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("model.tar", "high")]
    assert "limits.tar_pax_bytes = 100" in _hits(report, "WA132")[0][2]
    assert _verified(report) == {"model.tar": False} and code == 1


def test_tar_pax_header_within_the_default_limit_is_read(tmp_path: Path) -> None:
    from weightaudit.formats.tar_legacy import iter_tar_members

    target = _tar_with_long_name(tmp_path)
    assert [m.name for m in iter_tar_members(memoryview(target.read_bytes()))] == ["archive/" + "n" * 300]
    code, report = _audit(tmp_path, target)
    assert _hits(report, "WA132") == []


def _seven_zip_with_late_pickle(tmp_path: Path) -> Path:
    from tests.formats.test_sevenzip import PAYLOAD, seven_zip

    target = tmp_path / "model.7z"
    target.write_bytes(seven_zip({"pad.bin": b"\x00" * 200, "weights.pkl": PAYLOAD}, encode=False))
    return target


def test_7z_past_the_policy_scan_limit_is_limit_reached(tmp_path: Path) -> None:
    """A stored pickle beyond the bytes searched was never seen, and only WA158 said the archive was not unpacked."""
    target = _seven_zip_with_late_pickle(tmp_path)
    code, report = _audit(tmp_path, target, "sevenzip_scan_bytes: 64")
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("model.7z", "high")]
    assert "limits.sevenzip_scan_bytes = 64" in _hits(report, "WA132")[0][2]
    assert [f["rule_id"] for f in report["findings"] if f["severity"] == "critical"] == []
    assert _verified(report) == {"model.7z": False} and code == 1


def test_7z_within_the_default_scan_limit_finds_the_stored_pickle(tmp_path: Path) -> None:
    code, report = _audit(tmp_path, _seven_zip_with_late_pickle(tmp_path))
    assert _hits(report, "WA132") == []
    assert any(f["severity"] == "critical" and "os.system" in f["message"] for f in report["findings"])
    assert [(p, s) for p, s, _ in _hits(report, "WA158")] == [("model.7z", "high")] and code == 1


def test_savedmodel_variables_over_a_bundle_limit_are_limit_reached(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import FIXTURES

    target = tmp_path / "sm_module"
    shutil.copytree(FIXTURES / "keras_tf" / "sm_module", target)
    code, report = _audit(tmp_path, target, "bundle_entry_bytes: 4")
    hits = _hits(report, "WA132")
    assert [(p, s) for p, s, _ in hits] == [("sm_module/variables/variables.index", "high")]
    assert "limits.bundle_entry_bytes = 4" in hits[0][2] and _hits(report, "WA160") == []
    assert list(_verified(report).values()) == [False] and code == 1
    code, report = _audit(tmp_path, target)
    assert _hits(report, "WA132") == [] and list(_verified(report).values()) == [True]


def test_checkpoint_index_over_a_bundle_limit_is_limit_reached(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import FIXTURES

    for name in ("ckpt-1.index", "ckpt-1.data-00000-of-00001"):
        shutil.copy(FIXTURES / "keras_tf" / "ckpt" / name, tmp_path / name)
    code, report = _audit(tmp_path, tmp_path / "ckpt-1.index", "bundle_key_bytes: 4")
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("ckpt-1.index", "high")]
    assert "limits.bundle_key_bytes = 4" in _hits(report, "WA132")[0][2]
    assert _verified(report)["ckpt-1.index"] is False and code == 1


# -- SavedModel bookkeeping caps and the text parser's depth: the user's named limits now ---------------------------

def _sm():
    import sys

    from tests.conftest import FIXTURES

    sys.path.insert(0, str(FIXTURES))
    import savedmodel_proto

    return savedmodel_proto


def _deep_attr_model(levels: int):
    sm = _sm()
    attr = sm.attr_func("leaf")
    for _ in range(levels):
        attr = sm.attr_func("f", inner=attr)
    return sm.saved_model(sm.meta_graph(sm.graph([sm.node("n", "PartitionedCall", f=attr)])))


def _graph_limit_hits(report: dict) -> list[tuple[str, str]]:
    return [(p.rpartition("/")[2], s) for p, s, _ in _hits(report, "WA132")]


def test_savedmodel_attribute_depth_is_the_users_limit(tmp_path: Path) -> None:
    folder = _sm().write_saved_model(tmp_path / "deep", _deep_attr_model(10))
    code, report = _audit(tmp_path, folder, "graph_attr_depth: 4")
    assert _graph_limit_hits(report) == [("saved_model.pb", "high")]
    assert "limits.graph_attr_depth = 4" in _hits(report, "WA132")[0][2]
    assert list(_verified(report).values()) == [False] and code == 1
    code, report = _audit(tmp_path, folder)                        # default 16 > 10 levels: read whole
    assert _hits(report, "WA132") == [] and list(_verified(report).values()) == [True]


def test_savedmodel_text_depth_is_the_users_limit(tmp_path: Path) -> None:
    sm = _sm()
    folder = sm.write_saved_model(tmp_path / "t", _deep_attr_model(10), text=True)
    code, report = _audit(tmp_path, folder, "graph_text_depth: 8")
    assert _graph_limit_hits(report) == [("saved_model.pbtxt", "high")]
    assert "limits.graph_text_depth = 8" in _hits(report, "WA132")[0][2]
    assert list(_verified(report).values()) == [False] and code == 1
    code, report = _audit(tmp_path, folder)
    assert _hits(report, "WA132") == [] and list(_verified(report).values()) == [True]


def test_savedmodel_op_sites_are_the_users_limit(tmp_path: Path) -> None:
    sm = _sm()
    model = sm.saved_model(sm.meta_graph(sm.graph([sm.node("a", "NoOp"), sm.node("b", "Const"),
                                                   sm.node("c", "Identity", "b")])))
    folder = sm.write_saved_model(tmp_path / "ops", model)
    code, report = _audit(tmp_path, folder, "graph_op_sites: 2")
    assert _graph_limit_hits(report) == [("saved_model.pb", "high")]
    assert "limits.graph_op_sites = 2" in _hits(report, "WA132")[0][2]
    assert list(_verified(report).values()) == [False] and code == 1
    code, report = _audit(tmp_path, folder)
    assert _hits(report, "WA132") == []


def test_keras_metadata_fields_are_the_users_limit(tmp_path: Path) -> None:
    sm = _sm()
    folder = sm.write_saved_model(tmp_path / "k", sm.tf2_model())
    layer = '{"class_name": "Dense", "config": {"name": "d"}}'
    (folder / "keras_metadata.pb").write_bytes(sm.encode([(1, "nodes", [(4, "metadata", layer)])] * 5))
    code, report = _audit(tmp_path, folder, "keras_metadata_fields: 3")
    assert _graph_limit_hits(report) == [("keras_metadata.pb", "high")]
    assert "limits.keras_metadata_fields = 3" in _hits(report, "WA132")[0][2]
    assert list(_verified(report).values()) == [False] and code == 1
    code, report = _audit(tmp_path, folder)
    assert _hits(report, "WA132") == [] and list(_verified(report).values()) == [True]


# -- (b) .keras JSON members ----------------------------------------------------------------------------------------

def test_keras_json_member_over_the_policy_limit_is_limit_reached(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import FIXTURES

    target = tmp_path / "sequential.keras"
    shutil.copy(FIXTURES / "keras_tf" / "sequential.keras", target)
    code, report = _audit(tmp_path, target, "keras_json_bytes: 100")
    hits = _hits(report, "WA132")
    assert [(p, s) for p, s, _ in hits] == [("sequential.keras", "high")] * len(hits) and hits
    assert all("limits.keras_json_bytes = 100" in m for _, _, m in hits)
    assert _verified(report) == {"sequential.keras": False} and code == 1
    code, report = _audit(tmp_path, target)
    assert _hits(report, "WA132") == [] and _verified(report) == {"sequential.keras": True}


# -- (e) a chat template that could not be analysed is incomplete (exit 3), not a fail; dangerous stays high --------

def _template_release(tmp_path: Path, template: str) -> Path:
    import json

    folder = _release(tmp_path)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return folder


def test_unparsable_template_leaves_its_file_unverified(tmp_path: Path) -> None:
    folder = _template_release(tmp_path, "{{ messages[0].content")            # a syntax error, nothing dangerous
    code, report = _audit(tmp_path, folder)
    assert [(p, s) for p, s, _ in _hits(report, "WA463")] == [("tokenizer_config.json", "medium")]
    assert _verified(report) == {"model.safetensors": True, "tokenizer_config.json": False}
    assert code == 3 and report["summary"]["verdict"] == "incomplete"
    side = next(f for f in report["files"] if f["path"] == "tokenizer_config.json")
    assert (side["format"], side["status"]) == ("side-file", "error") and "not fully checked" in side["reason"]
    _valid(report)


def _valid(report: dict) -> None:
    """The report with a side file listed among the files still validates against the published schema."""
    import json
    from importlib import resources

    import pytest

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    jsonschema.validate(report, schema)


def test_unparsable_template_with_a_dangerous_pattern_still_fails(tmp_path: Path) -> None:
    folder = _template_release(tmp_path, "{% if %}{{ cycler.__init__.__globals__ }}")
    code, report = _audit(tmp_path, folder)
    assert ("WA460", "critical") in [(f["rule_id"], f["severity"]) for f in report["findings"]]
    assert _verified(report)["tokenizer_config.json"] is False and code == 1


def test_template_in_a_gguf_that_could_not_be_analysed_leaves_the_gguf_unverified(tmp_path: Path) -> None:
    import sys

    from tests.conftest import FIXTURES

    sys.path.insert(0, str(FIXTURES))
    import make_gguf_fixtures as mk

    target = tmp_path / "model.gguf"
    target.write_bytes(mk.gguf_file(mk.model_kvs("{{ messages[0].content"), mk.valid_tensors()))
    code, report = _audit(tmp_path, target)
    assert [(p, s) for p, s, _ in _hits(report, "WA463")] == [("model.gguf", "medium")]
    assert _verified(report) == {"model.gguf": False} and code == 3
    target.write_bytes(mk.gguf_file(mk.model_kvs(), mk.valid_tensors()))          # the published Llama 3 template
    code, report = _audit(tmp_path, target)
    assert _hits(report, "WA463") == [] and _verified(report) == {"model.gguf": True} and code == 0


def test_compressed_hidden_pickle_cut_at_the_inflation_cap_is_limit_reached(tmp_path: Path) -> None:
    """Attack: a zlib-compressed, base64-encoded pickle in config.json whose os.system call sits behind 600 KB of
    harmless opcodes. It compresses 1000:1, so inflation stopped at 16x its compressed size, the cut pickle was
    'not a pickle' and the audit passed (exit 0)."""
    import base64
    import json
    import zlib

    blob = base64.b64encode(zlib.compress(_padded_payload(200_000), 9)).decode()
    folder = _release(tmp_path, config__json=json.dumps({"model_type": "bert", "x": blob}))
    code, report = _audit(tmp_path, folder)
    assert [(p, s) for p, s, _ in _hits(report, "WA426")] == [("config.json", "medium")]
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("config.json", "high")]
    assert "limits.hidden_pickle_bytes = 1,048,576" in _hits(report, "WA132")[0][2]
    assert _verified(report)["config.json"] is False and code == 1


def test_compressed_hidden_pickle_inflated_whole_is_judged(tmp_path: Path) -> None:
    import base64
    import json
    import zlib

    blob = base64.b64encode(zlib.compress(_padded_payload(100), 9)).decode()
    folder = _release(tmp_path, config__json=json.dumps({"model_type": "bert", "x": blob}))
    code, report = _audit(tmp_path, folder)
    assert [(p, s) for p, s, _ in _hits(report, "WA426")] == [("config.json", "critical")]
    assert _hits(report, "WA132") == [] and _verified(report) == {"model.safetensors": True} and code == 1
    code, report = _audit(tmp_path, folder, "hidden_pickle_bytes: 64")
    assert [(p, s) for p, s, _ in _hits(report, "WA132")] == [("config.json", "high")]
    assert "limits.hidden_pickle_bytes = 64" in _hits(report, "WA132")[0][2]


def test_compressed_pickle_in_a_pickle_constant_cut_at_the_inflation_cap_is_pickle_limit(tmp_path: Path) -> None:
    """The same attack inside a pickle's string constant (WA411's search): the cut pickle was dropped, exit 0."""
    import base64
    import pickle
    import zlib

    blob = base64.b64encode(zlib.compress(_padded_payload(200_000), 9)).decode()
    target = tmp_path / "model.pkl"
    target.write_bytes(pickle.dumps({"blob": blob}, protocol=2))     # a dict of a string: built here, never loaded
    code, report = _audit(tmp_path, target)
    hits = _hits(report, "WA405")
    assert [(p, s) for p, s, _ in hits] == [("model.pkl", "high")] and "inflates past" in hits[0][2]
    assert _verified(report) == {"model.pkl": False} and code == 1
    small = base64.b64encode(zlib.compress(_padded_payload(100), 9)).decode()
    target.write_bytes(pickle.dumps({"blob": small}, protocol=2))
    code, report = _audit(tmp_path, target)
    nested = [(f["rule_id"], f["message"]) for f in report["findings"] if f["rule_id"] in ("WA405", "WA411")]
    assert [r for r, _ in nested] == ["WA411"] and "os.system" in nested[0][1]
    assert _verified(report) == {"model.pkl": True}


def test_every_savedmodel_walk_cap_comes_from_a_policy_limit() -> None:
    """No GraphLimits field is a constant the user cannot move: each maps to a limit, with that limit's default."""
    from dataclasses import fields, replace

    from weightaudit.formats.savedmodel_graph import POLICY_LIMITS, GraphLimits

    assert sorted(POLICY_LIMITS) == sorted(f.name for f in fields(GraphLimits))
    assert all(getattr(GraphLimits(), cap) == getattr(DEFAULT_LIMITS, name) for cap, name in POLICY_LIMITS.items())
    user = replace(DEFAULT_LIMITS, **{name: 7 for name in POLICY_LIMITS.values()})
    assert set(vars(GraphLimits.from_options(user)).values()) == {7}


# -- chat templates: the read, parse and walk caps are the user's limits too (WA463, file unverified) --------------

LLAMA_LIKE = ("{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")


@pytest.mark.parametrize("limits, named", [
    ("template_json_bytes: 100", "limits.template_json_bytes = 100"),
    ("template_parse_chars: 50", "limits.template_parse_chars = 50"),
    ("template_walk_steps: 5", "limits.template_walk_steps = 5"),
])
def test_chat_template_past_a_policy_limit_is_unanalysed_and_incomplete(tmp_path: Path, limits: str,
                                                                          named: str) -> None:
    folder = _template_release(tmp_path, LLAMA_LIKE)
    code, report = _audit(tmp_path, folder, limits)
    hits = _hits(report, "WA463")
    assert [(p, s) for p, s, _ in hits] == [("tokenizer_config.json", "medium")] and named in hits[0][2]
    assert _verified(report)["tokenizer_config.json"] is False and code == 3
    code, report = _audit(tmp_path, folder)
    assert _hits(report, "WA463") == [] and _verified(report) == {"model.safetensors": True} and code == 0


def test_raw_template_file_over_the_policy_limit_is_unanalysed(tmp_path: Path) -> None:
    folder = _release(tmp_path)
    (folder / "chat_template.jinja").write_text(LLAMA_LIKE)
    code, report = _audit(tmp_path, folder, "template_file_bytes: 64")
    assert [(p, s) for p, s, _ in _hits(report, "WA463")] == [("chat_template.jinja", "medium")]
    assert "limits.template_file_bytes = 64" in _hits(report, "WA463")[0][2] and code == 3
    code, report = _audit(tmp_path, folder)
    assert _hits(report, "WA463") == [] and code == 0


def test_gguf_template_reads_the_users_parse_limit(tmp_path: Path) -> None:
    import sys

    from tests.conftest import FIXTURES

    sys.path.insert(0, str(FIXTURES))
    import make_gguf_fixtures as mk

    target = tmp_path / "model.gguf"
    target.write_bytes(mk.gguf_file(mk.model_kvs(LLAMA_LIKE), mk.valid_tensors()))
    code, report = _audit(tmp_path, target, "template_parse_chars: 50")
    assert [(p, s) for p, s, _ in _hits(report, "WA463")] == [("model.gguf", "medium")]
    assert "limits.template_parse_chars = 50" in _hits(report, "WA463")[0][2] and code == 3
