"""SavedModel and bare-checkpoint loaders: inventory vs tf.train.list_variables, op listing, integrity."""

from __future__ import annotations

import builtins
import sys
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, real_sample
from tests.formats.test_tensorbundle import entry_proto, header_proto, write_index
from weightaudit.formats import get_loader, read_probe, sniff
from weightaudit.formats.base import LoadOptions, tensor_view
from weightaudit.formats.savedmodel import CHECKPOINT_LOADER, SAVEDMODEL_LOADER
from weightaudit.model import FileStatus

KERAS_TF = FIXTURES / "keras_tf"
TRUTH = json.loads((KERAS_TF / "ground_truth.json").read_text())
TF_DTYPES = {"float32": "F32", "bfloat16": "BF16", "int64": "I64"}


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(KERAS_TF / name, target)
    return target


def _rule_ids(loaded) -> set[str]:
    return {f.rule_id for f in loaded.findings}


@pytest.mark.parametrize("name", ["sm_module", "sm_keras", "sm_readfile"])
def test_inventory_matches_list_variables(name: str) -> None:
    loaded = SAVEDMODEL_LOADER.load(KERAS_TF / name, name, LoadOptions(verify_checksums=True))
    assert loaded.status is FileStatus.OK and loaded.verified and not loaded.findings
    truth = [v for v in TRUTH["tf"][name]["variables"] if v["name"] != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert {t.name: (list(t.shape), t.dtype) for t in loaded.tensors} == {
        v["name"]: (v["shape"], TF_DTYPES[v["dtype"]]) for v in truth}
    assert loaded.parameter_count == TRUTH["tf"][name]["parameter_count"]
    assert {t.file for t in loaded.tensors} == {f"{name}/variables/variables.data-00000-of-00001"}


def test_data_offsets_address_the_variable_bytes() -> None:
    loaded = SAVEDMODEL_LOADER.load(KERAS_TF / "sm_module", "sm_module", LoadOptions())
    steps = next(t for t in loaded.tensors if t.name.startswith("steps/"))
    shard = KERAS_TF / steps.file
    assert np.frombuffer(tensor_view(shard, steps), "<i8").tolist() == [0]    # tf.Variable(0, int64)
    bias = next(t for t in loaded.tensors if t.name.startswith("b/"))
    assert np.frombuffer(tensor_view(shard, bias), "<f4").tolist() == [0.0, 0.0]  # tf.zeros
    scale = next(t for t in loaded.tensors if t.name.startswith("scale/"))
    assert bytes(tensor_view(shard, scale)) == bytes.fromhex("803f803f")        # bfloat16 ones


def test_ops_listed_with_their_functions() -> None:
    loaded = SAVEDMODEL_LOADER.load(KERAS_TF / "sm_readfile", "sm_readfile", LoadOptions())
    ops = loaded.facts["ops"]
    assert any(s.op == "ReadFile" and s.function and s.function.startswith("__inference_read_") for s in ops)
    assert any(s.op == "SaveV2" and s.function and s.function.startswith("__inference__traced_save_") for s in ops)
    assert any(s.op == "StatefulPartitionedCall" and s.function is None and s.count == 3 for s in ops)
    assert loaded.facts["op_counts"]["ReadFile"] == 1
    assert sum(s.count for s in ops) == loaded.facts["saved_model"]["nodes"] == sum(loaded.facts["op_counts"].values())
    callers = loaded.facts["tf_saver_callers"]
    assert all(trusted for entries in callers.values() for _caller, trusted in entries) and len(callers) == 2
    assert loaded.facts["saved_model"]["tags"] == ["serve"]
    assert loaded.facts["saved_model"]["object_graph_variables"] == 1


def test_sniffing_claims_folder_and_checkpoint_index() -> None:
    assert SAVEDMODEL_LOADER.sniff(read_probe(KERAS_TF / "sm_module"))
    assert not SAVEDMODEL_LOADER.sniff(read_probe(KERAS_TF / "ckpt"))
    index = KERAS_TF / "ckpt" / "ckpt-1.index"
    assert CHECKPOINT_LOADER.sniff(read_probe(index))
    assert not CHECKPOINT_LOADER.sniff(read_probe(KERAS_TF / "ckpt" / "ckpt-1.data-00000-of-00001"))
    assert sniff(read_probe(index)) is get_loader("tf-checkpoint")
    assert sniff(read_probe(KERAS_TF / "sm_keras")) is get_loader("tf-savedmodel")


def test_bare_checkpoint_inventory() -> None:
    loaded = CHECKPOINT_LOADER.load(KERAS_TF / "ckpt" / "ckpt-1.index", "ckpt/ckpt-1.index", LoadOptions(verify_checksums=True))
    assert loaded.status is FileStatus.OK and loaded.verified
    truth = [v for v in TRUTH["tf"]["ckpt"]["variables"] if v["name"] != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert sorted(t.name for t in loaded.tensors) == sorted(v["name"] for v in truth)
    assert loaded.parameter_count == TRUTH["tf"]["ckpt"]["parameter_count"]
    assert {t.file for t in loaded.tensors} == {"ckpt/ckpt-1.data-00000-of-00001"}


def test_listing_never_opens_the_data_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    loaded = SAVEDMODEL_LOADER.load(KERAS_TF / "sm_keras", "sm_keras", LoadOptions())
    assert loaded.tensors
    assert not [p for p in opened if ".data-" in p]
    SAVEDMODEL_LOADER.load(KERAS_TF / "sm_keras", "sm_keras", LoadOptions(verify_checksums=True))
    assert [p for p in opened if ".data-" in p]          # only when checksums are asked for


def test_missing_shard(tmp_path: Path) -> None:
    folder = _copy("sm_module", tmp_path)
    (folder / "variables" / "variables.data-00000-of-00001").unlink()
    loaded = SAVEDMODEL_LOADER.load(folder, "sm_module", LoadOptions())
    assert "WA161" in _rule_ids(loaded) and not loaded.verified


def test_truncated_shard(tmp_path: Path) -> None:
    folder = _copy("sm_module", tmp_path)
    shard = folder / "variables" / "variables.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:30])
    loaded = SAVEDMODEL_LOADER.load(folder, "sm_module", LoadOptions())
    assert "WA162" in _rule_ids(loaded) and not loaded.verified
    assert all(t.data_offsets is None or t.data_offsets[1] <= 30 for t in loaded.tensors)


def test_crc_mismatch_only_with_verify(tmp_path: Path) -> None:
    folder = _copy("sm_module", tmp_path)
    shard = folder / "variables" / "variables.data-00000-of-00001"
    raw = bytearray(shard.read_bytes())
    raw[0] ^= 0x40
    shard.write_bytes(bytes(raw))
    assert "WA163" not in _rule_ids(SAVEDMODEL_LOADER.load(folder, "m", LoadOptions()))
    loaded = SAVEDMODEL_LOADER.load(folder, "m", LoadOptions(verify_checksums=True))
    assert "WA163" in _rule_ids(loaded) and not loaded.verified


def test_corrupt_index_is_an_error(tmp_path: Path) -> None:
    folder = _copy("sm_module", tmp_path)
    index = folder / "variables" / "variables.index"
    raw = bytearray(index.read_bytes())
    raw[3] ^= 0xFF
    index.write_bytes(bytes(raw))
    loaded = SAVEDMODEL_LOADER.load(folder, "m", LoadOptions())
    assert loaded.status is FileStatus.ERROR and not loaded.verified and "WA160" in _rule_ids(loaded)
    assert loaded.reason and "\n" not in loaded.reason


def test_size_mismatch_and_big_endian(tmp_path: Path) -> None:
    index = tmp_path / "c.index"
    (tmp_path / "c.data-00000-of-00001").write_bytes(b"\x00" * 64)
    write_index(index, [(b"", header_proto(endianness=1)), (b"w", entry_proto(1, (4,), 0, 12))])
    loaded = CHECKPOINT_LOADER.load(index, "c.index", LoadOptions())
    assert {"WA164", "WA165"} <= _rule_ids(loaded) and not loaded.verified
    assert loaded.tensors[0].data_offsets is None


def test_entry_naming_a_missing_shard(tmp_path: Path) -> None:
    index = tmp_path / "c.index"
    (tmp_path / "c.data-00000-of-00001").write_bytes(b"\x00" * 16)
    write_index(index, [(b"", header_proto()), (b"w", entry_proto(1, (4,), 0, 16, shard=3))])
    loaded = CHECKPOINT_LOADER.load(index, "c.index", LoadOptions())
    assert "WA162" in _rule_ids(loaded) and not loaded.verified


def test_bad_graph(tmp_path: Path) -> None:
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff")
    loaded = SAVEDMODEL_LOADER.load(folder, "sm", LoadOptions())
    assert loaded.status is FileStatus.ERROR and "WA166" in _rule_ids(loaded)
    (folder / "saved_model.pb").unlink()
    (folder / "saved_model.pbtxt").write_text("meta_graphs { graph_def { node { name: 'x' op: ")
    loaded = SAVEDMODEL_LOADER.load(folder, "sm", LoadOptions())
    assert loaded.status is FileStatus.ERROR and "WA166" in _rule_ids(loaded)


def test_missing_variables_index(tmp_path: Path) -> None:
    folder = _copy("sm_module", tmp_path)
    shutil.rmtree(folder / "variables")
    loaded = SAVEDMODEL_LOADER.load(folder, "sm", LoadOptions())
    assert "WA167" in _rule_ids(loaded) and not loaded.verified


@pytest.mark.real
def test_basic_pitch_savedmodel() -> None:
    folder = real_sample("basic_pitch/basic_pitch/saved_models/icassp_2022/nmp")
    loaded = SAVEDMODEL_LOADER.load(folder, "nmp", LoadOptions(verify_checksums=True))
    assert loaded.status is FileStatus.OK and loaded.verified and not loaded.findings
    assert len(loaded.tensors) == 73
    assert loaded.parameter_count == 50_441
    assert loaded.facts["saved_model"]["tensorflow_version"] == "2.4.1"


# ---------------------------------------------------------------- text format, bounded walks (generated graphs)

sys.path.insert(0, str(FIXTURES))
import savedmodel_proto as sm  # noqa: E402


def _facts_without_file(loaded) -> dict:
    facts = dict(loaded.facts)
    facts["saved_model"] = {k: v for k, v in facts["saved_model"].items() if k != "graph_file"}
    facts["ops"] = sorted(facts["ops"], key=repr)
    return facts


def test_text_and_binary_encodings_give_the_same_facts(tmp_path: Path) -> None:
    model = sm.tf2_model(serve_nodes=[sm.node("p", "PrintV2", output_stream=sm.attr_s("file:///x"))])
    binary = SAVEDMODEL_LOADER.load(sm.write_saved_model(tmp_path / "b", model), "m", LoadOptions())
    text = SAVEDMODEL_LOADER.load(sm.write_saved_model(tmp_path / "t", model, text=True), "m", LoadOptions())
    assert binary.facts["saved_model"]["graph_file"] == "saved_model.pb"
    assert text.facts["saved_model"]["graph_file"] == "saved_model.pbtxt"
    assert _facts_without_file(binary) == _facts_without_file(text)
    assert binary.verified and text.verified


def test_text_format_as_tensorflow_writes_it(tmp_path: Path) -> None:
    """Enum words, comments, ',' / ';' separators, '<>' messages, lists, escapes, adjacent strings, Any."""
    text = """# written by tf.io.write_graph / text_format
    saved_model_schema_version: 1
    meta_graphs {
      meta_info_def { tags: ["serve", 'train'] tensorflow_version: "2." "21" any_info { [type.googleapis.com/x.Y] { a: 1 } } }
      graph_def <
        node { name: "c" op: "Const" attr { key: "dtype" value { type: DT_STRING } } attr: { key: "value"
               value { tensor { dtype: DT_STRING string_val: "\\x2fetc\\057passwd\\n" } } } };
        node { name: "w" op: "Write\\u0046ile" input: "c" input: "c" device: "/cpu:0" },
        versions { producer: 1808 min_consumer: -1 }
      >
    }
    """
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "saved_model.pbtxt").write_text(text)
    loaded = SAVEDMODEL_LOADER.load(folder, "t", LoadOptions())
    assert loaded.status is FileStatus.OK and loaded.verified
    assert loaded.facts["saved_model"]["tags"] == ["serve", "train"]
    assert loaded.facts["saved_model"]["tensorflow_version"] == "2.21"
    assert loaded.facts["op_counts"] == {"Const": 1, "WriteFile": 1}


@pytest.mark.parametrize("bad", ["meta_graphs { graph_def { node { name: \"x\\q\" } } }", "meta_graphs { ] }",
                                 "meta_graphs {" * 200, "meta_graphs { tags: 'unterminated\n' }"])
def test_bad_text_is_refused_not_crashed(tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "saved_model.pbtxt").write_text(bad)
    loaded = SAVEDMODEL_LOADER.load(folder, "t", LoadOptions())
    assert not loaded.verified and _rule_ids(loaded) & {"WA166", "WA132"}


def _limited(**limits: int) -> LoadOptions:
    return LoadOptions(extra={"savedmodel_limits": limits})


def _tiny_node_graph(count: int) -> bytes:
    """A SavedModel with ``count`` identical tiny nodes in one graph, built by repetition (fast)."""
    node_field = sm.encode([(1, "node", sm.node("n", "NoOp"))])
    graph = node_field * count
    meta = sm.varint(2 << 3 | 2) + sm.varint(len(graph)) + graph
    return sm.varint(2 << 3 | 2) + sm.varint(len(meta)) + meta


def test_200k_tiny_nodes_are_walked_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(_tiny_node_graph(200_000))
    loaded = SAVEDMODEL_LOADER.load(folder, "big", LoadOptions())
    assert loaded.verified and loaded.facts["op_counts"] == {"NoOp": 200_000}
    assert len(loaded.facts["ops"]) == 1                      # one site, not 200,000 records


def test_node_limit_is_a_finding_and_unverified(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(_tiny_node_graph(200_000))
    loaded = SAVEDMODEL_LOADER.load(folder, "big", _limited(max_nodes=50_000))
    assert not loaded.verified and "WA132" in _rule_ids(loaded)
    assert "limits.graph_nodes = 50,000" in next(f.message for f in loaded.findings if f.rule_id == "WA132")


def test_a_million_empty_meta_graphs_stop_at_the_limit(tmp_path: Path) -> None:
    folder = tmp_path / "metas"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x12\x00" * 1_000_000)
    loaded = SAVEDMODEL_LOADER.load(folder, "metas", LoadOptions())
    assert not loaded.verified and "WA132" in _rule_ids(loaded)
    assert loaded.facts["saved_model"]["meta_graphs"] == 65


def test_junk_fields_are_budgeted(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x98\x06\x00" * 300_000)     # field 99 varint 0, repeated
    loaded = SAVEDMODEL_LOADER.load(folder, "junk", _limited(max_fields=100_000))
    assert not loaded.verified and "WA132" in _rule_ids(loaded)


def test_deeply_nested_function_attributes_hit_the_depth_limit(tmp_path: Path) -> None:
    attr = sm.attr_func("leaf")
    for _ in range(40):
        attr = sm.attr_func("f", inner=attr)
    model = sm.saved_model(sm.meta_graph(sm.graph([sm.node("n", "PartitionedCall", f=attr)])))
    loaded = SAVEDMODEL_LOADER.load(sm.write_saved_model(tmp_path / "deep", model), "deep", LoadOptions())
    assert not loaded.verified and "WA132" in _rule_ids(loaded)


def test_chunked_graph_is_not_silently_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "cpb"
    folder.mkdir()
    (folder / "saved_model.cpb").write_bytes(b"\x00" * 16)
    assert SAVEDMODEL_LOADER.sniff(read_probe(folder))
    loaded = SAVEDMODEL_LOADER.load(folder, "cpb", LoadOptions())
    assert loaded.status is FileStatus.ERROR and "WA177" in _rule_ids(loaded)
    sm.write_saved_model(folder, sm.tf2_model())
    loaded = SAVEDMODEL_LOADER.load(folder, "cpb", LoadOptions())
    assert not loaded.verified and "WA177" in _rule_ids(loaded)


def test_text_graph_over_the_size_limit_is_unverified(tmp_path: Path) -> None:
    folder = sm.write_saved_model(tmp_path / "t", sm.tf2_model(), text=True)
    loaded = SAVEDMODEL_LOADER.load(folder, "t", _limited(max_text_bytes=1000))
    assert not loaded.verified and "WA132" in _rule_ids(loaded)
    assert "limits.graph_text_bytes = 1,000" in next(f.message for f in loaded.findings if f.rule_id == "WA132")


def test_the_users_policy_sets_the_node_limit(tmp_path: Path) -> None:
    from dataclasses import replace

    from weightaudit.limits import DEFAULT_LIMITS

    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(_tiny_node_graph(20_000))
    assert SAVEDMODEL_LOADER.load(folder, "big", LoadOptions()).verified
    loaded = SAVEDMODEL_LOADER.load(folder, "big", LoadOptions(limits=replace(DEFAULT_LIMITS, graph_nodes=1_000)))
    assert not loaded.verified
    assert [(f.rule_id, f.severity.name) for f in loaded.findings] == [("WA132", "HIGH")]
    assert "limits.graph_nodes = 1,000" in loaded.findings[0].message


def test_keras_metadata_too_deep_is_a_limit_not_a_crash(tmp_path: Path) -> None:
    folder = _copy("sm_keras", tmp_path)
    deep = "{" + '"a": [' * 5000 + "]" * 5000 + "}"
    (folder / "keras_metadata.pb").write_bytes(sm.encode([(1, "nodes", [(4, "metadata", deep)])]))
    loaded = SAVEDMODEL_LOADER.load(folder, "sm_keras", LoadOptions())
    assert not loaded.verified and "WA132" in _rule_ids(loaded)
    assert "limits.nesting_depth" in next(f.message for f in loaded.findings if f.rule_id == "WA132")


def test_text_message_lists_without_colon(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "saved_model.pbtxt").write_text(
        'meta_graphs { graph_def { node [{ name: "a" op: "ReadFile" }, < name: "b" op: "NoOp" >] } }')
    loaded = SAVEDMODEL_LOADER.load(folder, "t", LoadOptions())
    assert loaded.verified and loaded.facts["op_counts"] == {"ReadFile": 1, "NoOp": 1}
    (folder / "saved_model.pbtxt").write_text('meta_graphs { meta_info_def { tags ["serve"] } }')
    assert "WA166" in _rule_ids(SAVEDMODEL_LOADER.load(folder, "t", LoadOptions()))
