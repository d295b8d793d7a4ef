"""The ONNX loader, checked against the onnx package on models the tests build with ``onnx.helper``: the
inventory (names, dtypes, shapes, counts) equals what ``onnx.load`` / ``numpy_helper.to_array`` see, statistics
equal numpy's, external data stays inside the model's folder, custom operator domains are reported."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from weightaudit.formats import read_probe, sniff  # noqa: E402
from weightaudit.formats.base import LoadOptions  # noqa: E402
from weightaudit.formats.onnx import LOADER, parse  # noqa: E402
from weightaudit.formats.onnx_proto import ONNX_TYPES  # noqa: E402
from weightaudit.limits import Limits  # noqa: E402
from weightaudit.stats import compute_stats  # noqa: E402

OUR_CODE = {number: t.code for number, t in ONNX_TYPES.items()}
RNG = np.random.default_rng(12)


def _graph(nodes, initializers, name="g", sparse=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    return helper.make_graph(nodes, name, [x], [y], initializer=initializers, sparse_initializer=list(sparse))


def _save(model, folder: Path, name: str = "model.onnx", **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, str(path), **kwargs)
    return path


def _model(initializers, nodes=(), opsets=(("", 17),), sparse=(), functions=()):
    graph = _graph(list(nodes) or [helper.make_node("Identity", ["x"], ["y"])], initializers, sparse=sparse)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             functions=list(functions))


def _expected(model) -> dict[str, tuple[str, tuple[int, ...]]]:
    """What onnx itself holds: name -> (our dtype code, shape), walked the way the loader names tensors."""
    out: dict[str, tuple[str, tuple[int, ...]]] = {}

    def tensor(t, name):
        out[name] = (OUR_CODE[t.data_type], tuple(t.dims))

    def graph(g, scope):
        for index, node in enumerate(g.node):
            label = scope + (node.name or f"{node.op_type}@{index}")
            for attr in node.attribute:
                where = f"{label}/{attr.name}"
                if attr.HasField("t"):
                    tensor(attr.t, where)
                if attr.HasField("g"):
                    graph(attr.g, where + "/")
        for init in g.initializer:
            tensor(init, scope + init.name)
        for sp in g.sparse_initializer:
            tensor(sp.values, scope + sp.values.name)

    graph(model.graph, "")
    return out


def _inventory(loaded) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {t.name: (t.dtype, t.shape) for t in loaded.tensors}


# --------------------------------------------------------------- every dtype, raw and typed fields

RAW_ARRAYS = {
    "f32": np.float32, "f64": np.float64, "f16": np.float16, "i8": np.int8, "u8": np.uint8, "i16": np.int16,
    "u16": np.uint16, "i32": np.int32, "u32": np.uint32, "i64": np.int64, "u64": np.uint64, "b": np.bool_,
    "c64": np.complex64,
}
TYPED = {   # name -> (data type, values) written by helper.make_tensor into the typed fields (raw=False)
    "t_f32": (TensorProto.FLOAT, [1.5, -2.0, 3.25]), "t_f64": (TensorProto.DOUBLE, [1.0, 2.0, -7.5]),
    "t_i8": (TensorProto.INT8, [-128, 5, 127]), "t_u8": (TensorProto.UINT8, [0, 200, 255]),
    "t_i16": (TensorProto.INT16, [-30000, 1, 2]), "t_u16": (TensorProto.UINT16, [65535, 0, 9]),
    "t_i32": (TensorProto.INT32, [-(2**31), 0, 2**31 - 1]), "t_u32": (TensorProto.UINT32, [0, 2**32 - 1, 7]),
    "t_i64": (TensorProto.INT64, [-(2**62), 3, 2**40]), "t_u64": (TensorProto.UINT64, [2**63, 1, 2]),
    "t_bool": (TensorProto.BOOL, [True, False, True]), "t_f16": (TensorProto.FLOAT16, [0.5, -1.0, 65504.0]),
    "t_bf16": (TensorProto.BFLOAT16, [0.5, -3.0, 1.0e30]),
    "t_e4m3": (TensorProto.FLOAT8E4M3FN, [0.5, -2.0, 448.0]), "t_e5m2": (TensorProto.FLOAT8E5M2, [0.5, -2.0, 8.0]),
    "t_e4m3uz": (TensorProto.FLOAT8E4M3FNUZ, [0.5, -2.0, 4.0]),
    "t_e5m2uz": (TensorProto.FLOAT8E5M2FNUZ, [0.5, -2.0, 4.0]),
    "t_i4": (TensorProto.INT4, [-8, 7, 1]), "t_u4": (TensorProto.UINT4, [15, 0, 3]),
    "t_f4": (TensorProto.FLOAT4E2M1, [0.5, -6.0, 1.0]), "t_str": (TensorProto.STRING, [b"a", b"bc", b""]),
    "t_c64": (TensorProto.COMPLEX64, [1 + 2j, 3 - 1j, 0j]), "t_e8m0": (TensorProto.FLOAT8E8M0, [1.0, 2.0, 0.5]),
    "t_u2": (TensorProto.UINT2, [0, 3, 1]), "t_i2": (TensorProto.INT2, [-2, 1, 0]),
    "t_f6": (TensorProto.FLOAT6E2M3, [0.5, -1.0, 2.0]),
}


def _all_dtypes_model():
    inits = []
    for name, kind in RAW_ARRAYS.items():
        values = RNG.standard_normal((3, 4)) * 10
        if kind is np.complex64:
            values = values + 1j * values
        inits.append(numpy_helper.from_array(values.astype(kind), name))
    for name, (data_type, values) in TYPED.items():
        inits.append(helper.make_tensor(name, data_type, [len(values)], values))
    inits.append(helper.make_tensor("r_i4", TensorProto.INT4, [5], [-8, 7, 1, 0, -1]))   # packed, odd count
    inits.append(helper.make_tensor("r_bf16", TensorProto.BFLOAT16, [2, 2], [1.0, 2.0, -3.0, 0.25], raw=False))
    inits.append(numpy_helper.from_array(np.zeros((0, 3), np.float32), "empty"))
    inits.append(numpy_helper.from_array(np.float32(3.5), "scalar"))
    return _model(inits)


def test_every_dtype_is_inventoried_exactly_as_onnx_reads_it(tmp_path: Path) -> None:
    path = _save(_all_dtypes_model(), tmp_path)
    loaded = parse(path, "model.onnx")
    assert loaded.findings == () and loaded.verified and loaded.status.value == "ok"
    reference = onnx.load(str(path))
    assert _inventory(loaded) == _expected(reference)
    assert len(loaded.tensors) == len(reference.graph.initializer)
    for init in reference.graph.initializer:    # counts agree with the arrays onnx decodes
        array = numpy_helper.to_array(init)
        ours = next(t for t in loaded.tensors if t.name == init.name)
        assert ours.parameter_count == array.size == math.prod(init.dims)
    assert loaded.facts["no_statistics"]["t_str"]


def test_statistics_equal_numpy_on_raw_and_typed_tensors(tmp_path: Path) -> None:
    path = _save(_all_dtypes_model(), tmp_path)
    loaded = parse(path, "model.onnx")
    stats = compute_stats(tmp_path, [loaded], workers=1)
    reference = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    checked = 0
    for tensor in loaded.tensors:
        result = stats.get(tensor.key)
        array = reference[tensor.name]
        if result is None:
            assert tensor.dtype in ("STRING", "C64", "I4", "U4", "F4", "I2", "U2", "F6_E2M3"), tensor.name
            continue
        values = np.asarray(array, dtype=np.float64).ravel()
        assert result.count == values.size, tensor.name
        if values.size:
            finite = values[np.isfinite(values)]
            assert result.min == pytest.approx(finite.min()) and result.max == pytest.approx(finite.max()), tensor.name
            assert result.mean == pytest.approx(finite.mean(), rel=1e-6, abs=1e-9), tensor.name
        checked += 1
    assert checked >= 25


def test_sniffed_by_structure_with_or_without_the_name(tmp_path: Path) -> None:
    path = _save(_all_dtypes_model(), tmp_path)
    assert sniff(read_probe(path)) is LOADER
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(path.read_bytes())
    assert sniff(read_probe(renamed)) is LOADER          # the graph field is in the first 4 KiB
    text = tmp_path / "notes.onnx"
    text.write_bytes(b"\x08\x07hello world, not a protobuf\xff\xff")
    assert sniff(read_probe(text)) is not LOADER
    savedmodel_like = tmp_path / "saved_model.pb"
    savedmodel_like.write_bytes(b"\x08\x01\x12\x80\x80\x01" + bytes(100))
    assert sniff(read_probe(savedmodel_like)) is not LOADER


# --------------------------------------------------------------- subgraphs, functions, constants, sparse

def _branch(name: str, init_name: str):
    init = numpy_helper.from_array(RNG.standard_normal(3).astype(np.float32), init_name)
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [3])
    return helper.make_graph([helper.make_node("Identity", [init_name], ["o"])], name, [], [out], initializer=[init])


def test_subgraph_constant_and_sparse_initializers_are_inventoried(tmp_path: Path) -> None:
    inner_if = helper.make_node("If", ["c"], ["o"], name="inner", then_branch=_branch("t2", "deep"),
                                else_branch=_branch("e2", "deep"))
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [3])
    nested = helper.make_graph([inner_if], "nested", [], [out])
    if_node = helper.make_node("If", ["c"], ["y"], name="if0", then_branch=_branch("then", "w_then"),
                               else_branch=nested)
    const = helper.make_node("Constant", [], ["k"],
                             value=numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3)))
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "sp"),
                                       numpy_helper.from_array(np.array([0, 5], np.int64), "sp_idx"), [2, 4])
    model = _model([numpy_helper.from_array(np.ones(2, np.float32), "top")], nodes=[const, if_node], sparse=[sparse])
    path = _save(model, tmp_path)
    loaded = parse(path, "model.onnx")
    assert loaded.findings == () and loaded.verified
    assert _inventory(loaded) == _expected(onnx.load(str(path)))
    assert set(_inventory(loaded)) == {"top", "sp", "Constant@0/value", "if0/then_branch/w_then",
                                       "if0/else_branch/inner/then_branch/deep", "if0/else_branch/inner/else_branch/deep"}
    assert loaded.facts["sparse_initializers"] == {"sp": [2, 4]}


def test_subgraph_depth_is_a_named_limit(tmp_path: Path) -> None:
    graph = _branch("leaf", "w")
    for level in range(5):
        out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [3])
        node = helper.make_node("If", ["c"], ["o"], name=f"n{level}", then_branch=graph, else_branch=graph)
        graph = helper.make_graph([node], f"g{level}", [], [out])
    model = _model([], nodes=graph.node)
    path = _save(model, tmp_path)
    assert parse(path, "m.onnx").verified
    loaded = parse(path, "m.onnx", LoadOptions(limits=Limits(onnx_graph_depth=3)))
    assert [f.rule_id for f in loaded.findings] == ["WA132"] and not loaded.verified
    assert "limits.onnx_graph_depth = 3" in loaded.findings[0].message


def test_node_and_tensor_limits(tmp_path: Path) -> None:
    nodes = [helper.make_node("Identity", ["x"], [f"y{i}"]) for i in range(20)]
    path = _save(_model([numpy_helper.from_array(np.ones(1, np.float32), f"w{i}") for i in range(5)], nodes=nodes),
                 tmp_path)
    for limits, name in ((Limits(graph_nodes=10), "graph_nodes"), (Limits(tensors_per_file=3), "tensors_per_file"),
                         (Limits(graph_protobuf_fields=50), "graph_protobuf_fields")):
        loaded = parse(path, "m.onnx", LoadOptions(limits=limits))
        assert [f.rule_id for f in loaded.findings] == ["WA132"] and not loaded.verified, name
        assert f"limits.{name}" in loaded.findings[0].message


# --------------------------------------------------------------- operator domains

def test_custom_domain_is_medium_runtime_domain_low_local_function_silent(tmp_path: Path) -> None:
    function = helper.make_function("local.fn", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                    [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Identity", ["x"], ["a"]),
             helper.make_node("Twice", ["a"], ["b"], domain="local.fn"),
             helper.make_node("FusedMatMul", ["b", "b"], ["c"], domain="com.microsoft"),
             helper.make_node("Evil", ["c"], ["d"], domain="ai.onnx.contrib"),
             helper.make_node("Evil2", ["d"], ["y"], domain="ai.onnx.contrib"),
             helper.make_node("LabelEncoder", ["x"], ["e"], domain="ai.onnx.ml")]
    model = _model([], nodes=nodes, functions=[function],
                   opsets=(("", 17), ("local.fn", 1), ("com.microsoft", 1), ("ai.onnx.contrib", 1), ("ai.onnx.ml", 3)))
    loaded = parse(_save(model, tmp_path), "m.onnx")
    found = sorted((f.rule_id, f.severity.label) for f in loaded.findings)
    assert found == [("WA448", "medium"), ("WA449", "low")]
    custom = next(f for f in loaded.findings if f.rule_id == "WA448")
    assert "'ai.onnx.contrib'" in custom.message and "Evil, Evil2" in custom.message and "2 node(s)" in custom.message
    assert loaded.verified     # a domain is a risk to report, not something left unchecked
    assert loaded.facts["opset_imports"]["ai.onnx.contrib"] == 1 and loaded.facts["functions"] == ["local.fn:Twice"]


def test_standard_domains_are_silent_and_metadata_is_exposed(tmp_path: Path) -> None:
    model = _model([numpy_helper.from_array(np.ones(2, np.float32), "w")])
    model.producer_name, model.producer_version = "pytorch", "2.13.0"
    helper.set_model_props(model, {"license": "mit", "author": "me"})
    loaded = parse(_save(model, tmp_path), "m.onnx")
    assert loaded.findings == ()
    assert loaded.facts["metadata"] == {"license": "mit", "author": "me"}
    assert loaded.facts["license"] == "mit" and loaded.facts["producer"] == "pytorch 2.13.0"


# --------------------------------------------------------------- external data

def _external_model(folder: Path) -> Path:
    inits = [numpy_helper.from_array(RNG.standard_normal((64, 32)).astype(np.float32), "big"),
             numpy_helper.from_array(RNG.standard_normal(600).astype(np.float16), "half"),
             numpy_helper.from_array(np.ones(2, np.float32), "small")]
    return _save(_model(inits), folder, save_as_external_data=True, all_tensors_to_one_file=True,
                 location="model.onnx.data", size_threshold=1024)


def test_external_data_inside_the_folder_is_read_and_matches_onnx(tmp_path: Path) -> None:
    path = _external_model(tmp_path / "m")
    loaded = parse(path, "m/model.onnx")
    assert loaded.findings == () and loaded.verified
    assert loaded.facts["external_data_files"] == ["model.onnx.data"]
    reference = onnx.load(str(path))   # loads the external data too
    assert _inventory(loaded) == _expected(reference)
    stats = compute_stats(tmp_path, [loaded], workers=1)
    for init in reference.graph.initializer:
        array = numpy_helper.to_array(init).astype(np.float64)
        result = stats[("m/model.onnx", init.name)]
        assert result.count == array.size and result.mean == pytest.approx(array.mean(), rel=1e-5)
        assert result.max == pytest.approx(array.max())


def _point_external(path: Path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(path))


@pytest.mark.parametrize("location", ["/etc/passwd", "../outside.bin", "sub/../../outside.bin", "C:\\x.bin",
                                      "link.bin"])
def test_external_data_outside_the_folder_is_high_and_not_read(tmp_path: Path, location: str) -> None:
    path = _external_model(tmp_path / "m")
    (tmp_path / "outside.bin").write_bytes(bytes(10_000))
    os.symlink(tmp_path / "outside.bin", tmp_path / "m" / "link.bin")
    _point_external(path, location)
    loaded = parse(path, "m/model.onnx")
    rules = {(f.rule_id, f.severity.label) for f in loaded.findings}
    assert rules == {("WA191", "high")} and not loaded.verified
    assert {f.tensor for f in loaded.findings} == {"big", "half"}
    assert loaded.facts["external_data_files"] == []


def test_missing_or_short_external_file_is_high_and_unverified(tmp_path: Path) -> None:
    path = _external_model(tmp_path / "m")
    data = tmp_path / "m" / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    short = parse(path, "m/model.onnx")
    assert {f.rule_id for f in short.findings} == {"WA192"} and not short.verified
    data.unlink()
    missing = parse(path, "m/model.onnx")
    assert sorted((f.rule_id, f.tensor) for f in missing.findings) == [("WA192", "big"), ("WA192", "half")]
    assert not missing.verified and "does not exist" in missing.findings[0].message


# --------------------------------------------------------------- malformed tensors and files

def test_raw_data_of_the_wrong_size_and_duplicate_names_are_high(tmp_path: Path) -> None:
    bad = numpy_helper.from_array(np.ones(4, np.float32), "bad")
    bad.raw_data = bad.raw_data[:12]
    twice = [numpy_helper.from_array(np.ones(2, np.float32), "dup"), numpy_helper.from_array(np.zeros(2, np.float32), "dup")]
    loaded = parse(_save(_model([bad, *twice]), tmp_path), "m.onnx")
    assert sorted((f.rule_id, f.tensor) for f in loaded.findings) == [("WA193", "bad"), ("WA194", "dup")]
    assert not loaded.verified and [t.name for t in loaded.tensors].count("dup") == 1
    with pytest.raises(Exception):
        numpy_helper.to_array(bad)       # onnx refuses it too


def test_typed_values_that_do_not_match_dims_are_high(tmp_path: Path) -> None:
    short = helper.make_tensor("short", TensorProto.INT64, [4], [1, 2, 3, 4])
    del short.int64_data[-1]
    loaded = parse(_save(_model([short]), tmp_path), "m.onnx")
    assert [(f.rule_id, f.tensor) for f in loaded.findings] == [("WA193", "short")] and not loaded.verified


def test_truncated_and_garbage_files_are_malformed_not_errors(tmp_path: Path) -> None:
    path = _save(_all_dtypes_model(), tmp_path)
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) - 5):
        broken = tmp_path / f"cut{cut}.onnx"
        broken.write_bytes(data[:cut])
        loaded = parse(broken, broken.name)
        assert loaded.status.value == "error" and not loaded.verified
        assert [f.rule_id for f in loaded.findings] == ["WA190"]
    rng = np.random.default_rng(3)
    for index in range(200):   # hostile bytes never raise
        mutated = bytearray(data)
        for position in rng.integers(0, len(data), 8):
            mutated[position] = int(rng.integers(0, 256))
        target = tmp_path / "mut.onnx"
        target.write_bytes(bytes(mutated))
        loaded = parse(target, "mut.onnx")
        assert loaded.verified or loaded.findings, index


def test_statistics_in_worker_processes_and_after_a_fresh_start(tmp_path: Path) -> None:
    """Workers fork after loading (the walk's locations are inherited); a process that never loaded the model
    walks it again to find the values."""
    from weightaudit.formats import onnx as onnx_loader

    path = _external_model(tmp_path / "m")
    loaded = parse(path, "m/model.onnx")
    forked = compute_stats(tmp_path, [loaded], workers=2)
    onnx_loader._REMEMBERED.clear()
    fresh = compute_stats(tmp_path, [loaded], workers=1)
    assert set(forked) == set(fresh) == {t.key for t in loaded.tensors}
    assert {k: v.fingerprint for k, v in forked.items()} == {k: v.fingerprint for k, v in fresh.items()}


def test_audit_exit_codes_for_a_clean_and_an_escaping_release(runner, tmp_path: Path) -> None:
    from tests.conftest import invoke_json

    path = _external_model(tmp_path / "clean")
    code, report = invoke_json(runner, "audit", tmp_path / "clean", "--select", "WA1,WA3,WA4")
    assert code == 0 and report["findings"] == [] and report["summary"]["verified"] is True
    _point_external(path, "../../etc/passwd")
    code, report = invoke_json(runner, "audit", tmp_path / "clean", "--select", "WA1,WA3,WA4")
    assert code == 1 and report["summary"]["verified"] is False
    assert {(f["rule_id"], f["severity"]) for f in report["findings"]} >= {("WA191", "high")}


def test_external_data_files_are_part_of_their_model_not_weight_files(runner, tmp_path: Path) -> None:
    """``weights.bin`` / ``model.onnx.data`` hold the model's raw bytes: no WA122, no failed raw-pickle file; a
    real pickle named as external data stays in the audit (external data cannot hide a file from the scan)."""
    import pickle

    from tests.conftest import invoke_json

    path = _external_model(tmp_path / "r")
    (tmp_path / "r" / "model.onnx.data").rename(tmp_path / "r" / "weights.bin")
    _point_external(path, "weights.bin")
    code, report = invoke_json(runner, "audit", tmp_path / "r", "--select", "WA1,WA3,WA4")
    assert code == 0 and report["findings"] == [] and [f["path"] for f in report["files"]] == ["model.onnx"]
    (tmp_path / "r" / "weights.bin").write_bytes(pickle.dumps(bytes(20_000), protocol=2))   # ranges still fit
    loaded = parse(path, "model.onnx")
    assert loaded.verified and loaded.facts["external_data_files"] == ["weights.bin"]
    code, report = invoke_json(runner, "audit", tmp_path / "r", "--select", "WA1,WA3,WA4")
    assert sorted((f["path"], f["format"]) for f in report["files"]) == [("model.onnx", "onnx"), ("weights.bin", "pickle")]


def test_a_tensor_of_absurd_rank_is_malformed_not_a_memory_sink(tmp_path: Path) -> None:
    tensor = numpy_helper.from_array(np.ones(1, np.float32), "w")
    tensor.dims[:] = [1] * 100_000
    loaded = parse(_save(_model([tensor]), tmp_path), "m.onnx")
    assert [f.rule_id for f in loaded.findings] == ["WA190"] and not loaded.verified
    assert "more than 64 dimensions" in loaded.findings[0].message


def test_large_typed_varint_tensor_streams_across_chunks(tmp_path: Path) -> None:
    values = RNG.integers(-(2**40), 2**40, 300_000) * RNG.integers(0, 2, 300_000)   # 1-10 byte varints
    tensor = helper.make_tensor("v", TensorProto.INT64, [300_000], values.tolist())
    path = _save(_model([tensor]), tmp_path)
    loaded = parse(path, "model.onnx")
    assert loaded.findings == () and loaded.tensors[0].data_offsets is None
    result = compute_stats(tmp_path, [loaded], workers=1)[("model.onnx", "v")]
    expected = values.astype(np.float64)
    assert result.count == values.size and result.min == expected.min() and result.max == expected.max()
    assert result.zeros == int((values == 0).sum()) and result.mean == pytest.approx(expected.mean(), rel=1e-9)
