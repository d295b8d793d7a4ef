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


# ---------------------------------------------------------------- differential: Google's protobuf parsers

def _has_protobuf() -> bool:
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        return False
    return True


def _model_of(name: str) -> list:
    from tests.rules.test_savedmodel_attacks import ATTACKS

    return sm.tf2_model() if name == "benign" else ATTACKS[name][0]


def _proto_classes() -> dict:
    """TensorFlow's SavedModel messages (the fields the audit reads, same names and numbers as the .proto files),
    built at run time so Google's own wire and text-format parsers can be compared with ours."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="wa_tf_subset.proto", package="wa", syntax="proto3")

    def message(name: str, *fields: tuple, maps: tuple = ()) -> None:
        msg = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            added = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = type_name
        for field_name, number, value_kind, value_type in maps:
            entry = msg.nested_type.add(name=field_name.title().replace("_", "") + "Entry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=value_kind, label=F.LABEL_OPTIONAL, type_name=value_type)
            msg.field.add(name=field_name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                          type_name=f".wa.{name}.{entry.name}")

    one, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    S, B, I, M = F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_INT64, F.TYPE_MESSAGE
    message("SavedModel", ("saved_model_schema_version", 1, I, one, None), ("meta_graphs", 2, M, rep, ".wa.MetaGraphDef"))
    message("MetaGraphDef", ("meta_info_def", 1, M, one, ".wa.MetaInfoDef"), ("graph_def", 2, M, one, ".wa.GraphDef"),
            ("saver_def", 3, M, one, ".wa.SaverDef"), ("object_graph_def", 7, M, one, ".wa.SavedObjectGraph"),
            maps=(("signature_def", 5, M, ".wa.SignatureDef"),))
    message("MetaInfoDef", ("tags", 4, S, rep, None), ("tensorflow_version", 5, S, one, None))
    message("GraphDef", ("node", 1, M, rep, ".wa.NodeDef"), ("library", 2, M, one, ".wa.FunctionDefLibrary"))
    message("FunctionDefLibrary", ("function", 1, M, rep, ".wa.FunctionDef"))
    message("FunctionDef", ("signature", 1, M, one, ".wa.OpDef"), ("node_def", 3, M, rep, ".wa.NodeDef"))
    message("OpDef", ("name", 1, S, one, None))
    message("NodeDef", ("name", 1, S, one, None), ("op", 2, S, one, None), ("input", 3, S, rep, None),
            ("device", 4, S, one, None), maps=(("attr", 5, M, ".wa.AttrValue"),))
    message("AttrValue", ("list", 1, M, one, ".wa.ListValue"), ("s", 2, B, one, None), ("i", 3, I, one, None),
            ("type", 6, F.TYPE_INT32, one, None), ("tensor", 8, M, one, ".wa.TensorProto"),
            ("func", 10, M, one, ".wa.NameAttrList"))
    message("ListValue", ("s", 2, B, rep, None), ("func", 9, M, rep, ".wa.NameAttrList"))
    message("NameAttrList", ("name", 1, S, one, None), maps=(("attr", 2, M, ".wa.AttrValue"),))
    message("TensorProto", ("dtype", 1, F.TYPE_INT32, one, None), ("string_val", 8, B, rep, None))
    message("SaverDef", ("filename_tensor_name", 1, S, one, None), ("save_tensor_name", 2, S, one, None),
            ("restore_op_name", 3, S, one, None))
    message("SignatureDef", ("method_name", 3, S, one, None),
            maps=(("inputs", 1, M, ".wa.TensorInfo"), ("outputs", 2, M, ".wa.TensorInfo")))
    message("TensorInfo", ("name", 1, S, one, None))
    message("SavedObjectGraph", ("nodes", 1, M, rep, ".wa.SavedObject"),
            maps=(("concrete_functions", 2, M, ".wa.SavedConcreteFunction"),))
    message("SavedObject", ("variable", 7, M, one, ".wa.SavedVariable"))
    message("SavedVariable")
    message("SavedConcreteFunction")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"wa.{name}"))
            for name in ("SavedModel",)}


def _google_ops(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for meta in model.meta_graphs:
        nodes = list(meta.graph_def.node) + [n for f in meta.graph_def.library.function for n in f.node_def]
        for node in nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def _google_functions(model) -> list[str]:
    return [f.signature.name for meta in model.meta_graphs for f in meta.graph_def.library.function]


def _differential_models() -> dict[str, bytes]:
    from tests.rules.test_savedmodel_attacks import ATTACKS

    models = {name: sm.encode(model) for name, (model, *_rest) in ATTACKS.items()}
    models["benign"] = sm.encode(sm.tf2_model())
    node = sm.encode(sm.node("n", "MatMul"))
    # protobuf corner cases: the last `op` wins; an `op` sent as a varint is an unknown field; two `signature`
    # messages merge (the last name wins); two `graph_def` messages merge.
    last_wins = node + sm.encode([(2, "op", "WriteFile")])
    wrong_wire = node + sm.varint(2 << 3) + sm.varint(7)
    two_signatures = sm.encode(sm.function("__inference_a_1") + [(1, "signature", [(1, "name", "__inference_b_2")])])
    graph = (sm.encode([(1, "node", [])]).replace(b"\x0a\x00", b"") + sm.varint(1 << 3 | 2) + sm.varint(len(last_wins))
             + last_wins + sm.varint(1 << 3 | 2) + sm.varint(len(wrong_wire)) + wrong_wire)
    library = sm.varint(1 << 3 | 2) + sm.varint(len(two_signatures)) + two_signatures
    graph += sm.varint(2 << 3 | 2) + sm.varint(len(library)) + library
    meta = (sm.varint(2 << 3 | 2) + sm.varint(len(graph)) + graph) * 2
    models["protobuf-corners"] = sm.varint(2 << 3 | 2) + sm.varint(len(meta)) + meta
    return models


@pytest.mark.parametrize("name, data", sorted(_differential_models().items()) if _has_protobuf() else [],
                         ids=lambda value: value if isinstance(value, str) else "")
def test_google_protobuf_agrees(tmp_path: Path, name: str, data: bytes) -> None:
    """Our wire and text readers see the ops Google's protobuf sees: in our encoding, in Google's re-encoding,
    and in Google's text format."""
    from google.protobuf import text_format

    saved_model = _proto_classes()["SavedModel"]
    model = saved_model.FromString(data)
    expected = _google_ops(model)
    variants = {"ours": (data, False), "google-wire": (model.SerializeToString(), False),
                "google-text": (text_format.MessageToString(model).encode(), True)}
    for variant, (payload, text) in variants.items():
        folder = tmp_path / variant
        folder.mkdir()
        (folder / ("saved_model.pbtxt" if text else "saved_model.pb")).write_bytes(payload)
        loaded = SAVEDMODEL_LOADER.load(folder, variant, LoadOptions())
        assert loaded.facts["op_counts"] == expected, variant
        assert list(loaded.facts["functions"]) == _google_functions(model), variant
        assert loaded.facts["saved_model"]["tags"] == [t for m in model.meta_graphs for t in m.meta_info_def.tags]
    # Our text writer, read back by Google's text parser (which refuses a repeated singular field in text
    # format: we read it as the wire format does, last one wins, so such a file can only be judged stricter).
    if name not in ("protobuf-corners", "op-overridden-by-last-field"):
        ours_text = sm.to_text(_model_of(name))
        assert text_format.Parse(ours_text, saved_model()) == model


def test_mutated_text_graphs_never_crash(tmp_path: Path) -> None:
    """Random byte edits of a text-format SavedModel: always a LoadedFile, never an exception."""
    import random

    rng = random.Random("pbtxt")
    seed = sm.to_text(sm.tf2_model(serve_nodes=[sm.node("p", "PrintV2", output_stream=sm.attr_s("a\\b\"c"))]))
    seed = seed.encode() + b'\n# comment\nmeta_graphs < meta_info_def { tags: ["x", \'y\'] } >\n'
    alphabet = b'{}<>[]:;,"\'\\#\n x0-_.'
    folder = tmp_path / "m"
    folder.mkdir()
    for _ in range(400):
        data = bytearray(seed)
        for _edit in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[position] = rng.choice(alphabet)
            elif choice < 0.7:
                del data[position:position + rng.randint(1, 20)]
            else:
                data[position:position] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        (folder / "saved_model.pbtxt").write_bytes(bytes(data))
        loaded = SAVEDMODEL_LOADER.load(folder, "m", LoadOptions())
        assert loaded.status in (FileStatus.OK, FileStatus.ERROR)
        assert loaded.verified or loaded.findings
