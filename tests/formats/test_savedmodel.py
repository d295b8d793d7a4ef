"""SavedModel and bare-checkpoint loaders: inventory vs tf.train.list_variables, op listing, integrity."""

from __future__ import annotations

import builtins
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
    assert any(op == "ReadFile" and fn and fn.startswith("__inference_read_") for op, _n, fn in ops)
    assert any(op == "SaveV2" and fn and fn.startswith("__inference__traced_save_") for op, _n, fn in ops)
    assert any(op == "StatefulPartitionedCall" and fn is None for op, _n, fn in ops)
    assert loaded.facts["op_counts"]["ReadFile"] == 1
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
    (folder / "saved_model.pbtxt").write_text("meta_graphs {}")
    assert SAVEDMODEL_LOADER.load(folder, "sm", LoadOptions()).status is FileStatus.ERROR


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
