"""Keras .keras / legacy .h5 / .weights.h5 and plain HDF5 inventories vs what Keras reports (ground_truth.json)."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import FIXTURES, real_sample
from weightaudit.formats import get_loader, read_probe, sniff
from weightaudit.formats import hdf5_read, keras_h5
from weightaudit.formats.base import LoadOptions, tensor_view
from weightaudit.formats.keras_h5 import HDF5_LOADER, KERAS_ZIP_LOADER, keras3_variable_names, legacy_tensor_name
from weightaudit.model import FileStatus, Role

KERAS_TF = FIXTURES / "keras_tf"
TRUTH = json.loads((KERAS_TF / "ground_truth.json").read_text())
MODELS = ("sequential", "functional", "lambda", "nested_lambda")


def _load(path: Path, rel: str | None = None):
    loader = KERAS_ZIP_LOADER if path.suffix == ".keras" else HDF5_LOADER
    return loader.load(path, rel or path.name, LoadOptions())


def _keras_names(model: str, key: str = "weights") -> dict[str, tuple[list[int], str]]:
    """Keras's variable paths without the top-level model name (Sequential prefixes it, Functional not)."""
    out = {}
    for weight in TRUTH["keras"][model][key]:
        name = weight["name"]
        first, _, rest = name.partition("/")
        if first in {"seq", "lam"}:
            name = rest
        out[name] = (weight["shape"], {"float32": "F32", "int64": "I64"}[weight["dtype"]])
    return out


def _inner_h5(path: Path) -> h5py.File:
    return h5py.File(io.BytesIO(zipfile.ZipFile(path).read("model.weights.h5")), "r")


SAVED = [(m, s) for m in MODELS for s in (".keras", ".h5", ".weights.h5") if (KERAS_TF / f"{m}{s}").exists()]


@pytest.mark.parametrize(("model", "suffix"), SAVED)
def test_parameters_match_keras(model: str, suffix: str) -> None:
    path = KERAS_TF / f"{model}{suffix}"
    loaded = _load(path)
    assert loaded.status is FileStatus.OK and loaded.verified and not loaded.findings
    params = {t.name: (list(t.shape), t.dtype) for t in loaded.tensors if t.role is Role.PARAMETER}
    assert params == _keras_names(model)
    assert sum(t.parameter_count for t in loaded.tensors if t.role is Role.PARAMETER) == TRUTH["keras"][model]["count_params"]


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".weights.h5"])
def test_optimizer_state_is_marked(suffix: str) -> None:
    loaded = _load(KERAS_TF / f"functional{suffix}")
    optimizer = [t for t in loaded.tensors if t.role is Role.OPTIMIZER]
    truth = TRUTH["keras"]["functional"]["optimizer_weights"]
    assert Counter(tuple(t.shape) for t in optimizer) == Counter(tuple(w["shape"]) for w in truth)
    assert sum(t.parameter_count for t in optimizer) == TRUTH["keras"]["functional"]["optimizer_parameter_count"]
    if suffix == ".h5":   # legacy files keep Keras's own optimizer variable names
        assert {t.name for t in optimizer} == {w["name"] for w in truth}


@pytest.mark.parametrize("name", ["sequential.h5", "functional.weights.h5", "sequential.keras", "functional.keras"])
def test_offsets_point_at_the_dataset_bytes(name: str) -> None:
    path = KERAS_TF / name
    loaded = _load(path)
    reference = _inner_h5(path) if path.suffix == ".keras" else h5py.File(path, "r")
    paths = dict(_paths(loaded, path))
    for tensor in loaded.tensors:
        assert tensor.data_offsets is not None and tensor.file == name
        expected = np.ascontiguousarray(reference[paths[tensor.name]][()]).tobytes()
        assert bytes(tensor_view(path, tensor)) == expected
        streamed = b"".join(bytes(c) for c in get_loader(loaded.format).iter_chunks(path, tensor, 8))
        assert streamed == expected


def _paths(loaded, path: Path):
    opener = _inner_h5(path) if path.suffix == ".keras" else h5py.File(path, "r")
    naming = keras_h5.name_datasets(opener, loaded.path)
    return keras_h5.inventory_file(opener, loaded.path, None, naming).paths.items()


def test_keras_facts() -> None:
    loaded = _load(KERAS_TF / "nested_lambda.keras")
    assert loaded.facts["layout"] == "keras3-store"
    assert loaded.facts["keras_version"] == "3.15.1"
    assert loaded.facts["model_class"] == "Functional"
    assert loaded.facts["lambda_layers"] == ["outer/inner/sneaky"]
    assert {"path": "outer/inner", "class_name": "Sequential", "module": "keras"} in loaded.facts["layers"]
    assert loaded.facts["archive"]["weights_stored"] is True
    legacy = _load(KERAS_TF / "functional.h5")
    assert legacy.facts["layout"] == "keras-legacy-full"
    assert legacy.facts["backend"] == "tensorflow" and legacy.facts["keras_version"] == "3.15.1"
    assert legacy.facts["keras_training_config"]["loss"] == "mse"
    assert _load(KERAS_TF / "sequential.weights.h5").facts["layout"] == "keras3-store"


def test_plain_hdf5_contiguous_and_chunked() -> None:
    path = KERAS_TF / "plain.h5"
    loaded = _load(path)
    assert loaded.facts["layout"] == "hdf5" and loaded.facts["hdf5"]["chunked"] == 1
    tensors = {t.name: t for t in loaded.tensors}
    assert set(tensors) == set(TRUTH["hdf5"]["plain"]["datasets"])
    grid = tensors["grid/contiguous"]
    assert np.frombuffer(tensor_view(path, grid), "<f4").tolist() == list(range(12))
    chunked = tensors["grid/chunked"]
    assert chunked.data_offsets is None and chunked.dtype == "I32"
    blocks = [bytes(b) for b in HDF5_LOADER.iter_chunks(path, chunked, 400)]
    assert max(len(b) for b in blocks) <= 400
    assert np.frombuffer(b"".join(blocks), "<i4").tolist() == list(range(1000))


def test_compressed_keras_member_is_streamed(tmp_path: Path) -> None:
    source = zipfile.ZipFile(KERAS_TF / "sequential.keras")
    target = tmp_path / "deflated.keras"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info))
    loaded = _load(target)
    assert loaded.status is FileStatus.OK and not loaded.facts["archive"]["weights_stored"]
    kernel = next(t for t in loaded.tensors if t.name == "dense/kernel")
    assert kernel.data_offsets is None
    expected = np.ascontiguousarray(_inner_h5(KERAS_TF / "sequential.keras")["layers/dense/vars/0"][()]).tobytes()
    assert b"".join(bytes(c) for c in KERAS_ZIP_LOADER.iter_chunks(target, kernel, 16)) == expected


def test_sniffing() -> None:
    assert sniff(read_probe(KERAS_TF / "sequential.keras")) is KERAS_ZIP_LOADER
    assert sniff(read_probe(KERAS_TF / "sequential.h5")) is HDF5_LOADER
    assert sniff(read_probe(KERAS_TF / "plain.h5")) is HDF5_LOADER
    assert not KERAS_ZIP_LOADER.sniff(read_probe(KERAS_TF / "sequential.h5"))


def test_naming_helpers() -> None:
    assert legacy_tensor_name("conv2d_1", "conv2d_1_1/kernel:0") == "conv2d_1/kernel"   # Keras 2.0.5
    assert legacy_tensor_name("dense", "seq/dense/kernel") == "dense/kernel"            # Keras 3
    assert legacy_tensor_name("model_1", "dense_3/bias:0") == "model_1/dense_3/bias"    # nested Keras 2 model
    assert keras3_variable_names("dense_4", 1) == ("kernel",)
    assert keras3_variable_names("batch_normalization", 4)[-1] == "moving_variance"
    assert keras3_variable_names("my_layer", 2) == ("0", "1")


def test_chunked_attribute_lists(tmp_path: Path) -> None:
    path = tmp_path / "long.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names0"] = np.array([b"a"])
        handle.attrs["layer_names1"] = np.array([b"b"])
        for layer in "ab":
            group = handle.create_group(layer)
            group.attrs["weight_names"] = np.array([f"{layer}/kernel:0".encode()])
            group.create_dataset(f"{layer}/kernel:0", data=np.ones((2, 2), "f4"))
    loaded = _load(path)
    assert loaded.facts["layout"] == "keras-legacy-weights"
    assert sorted(t.name for t in loaded.tensors) == ["a/kernel", "b/kernel"]


def test_missing_weight_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "missing.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([b"a", b"ghost"])
        group = handle.create_group("a")
        group.attrs["weight_names"] = np.array([b"a/kernel:0", b"a/bias:0"])
        group.create_dataset("a/kernel:0", data=np.ones(3, "f4"))
    loaded = _load(path)
    assert [f.rule_id for f in loaded.findings].count("WA170") == 2


def test_external_link_and_external_storage(tmp_path: Path) -> None:
    path = tmp_path / "links.h5"
    (tmp_path / "raw.bin").write_bytes(b"\x00" * 16)
    with h5py.File(path, "w") as handle:
        handle["elsewhere"] = h5py.ExternalLink("/etc/other.h5", "/x")
        handle.create_dataset("ext", shape=(4,), dtype="<f4", external=[(str(tmp_path / "raw.bin"), 0, 16)])
        handle.create_dataset("fine", data=np.zeros(2, "f4"))
    loaded = _load(path)
    assert [f.rule_id for f in loaded.findings].count("WA435") == 2
    assert not loaded.verified and [t.name for t in loaded.tensors] == ["fine"]


def test_shape_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("huge", shape=(2**33,), dtype="f4", chunks=(1024,))
    loaded = _load(path)
    assert "WA168" in {f.rule_id for f in loaded.findings} and not loaded.verified and not loaded.tensors


@pytest.mark.parametrize("native", [True, False], ids=["native", "h5py"])
def test_filter_plugin_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    path = tmp_path / "plugin.h5"
    with h5py.File(path, "w") as handle:    # an LZ4 plugin, say: declared, never written through
        handle.create_dataset("lz4", shape=(8,), dtype="f4", chunks=(4,), compression=32004, allow_unknown_filter=True)
    if not native:
        monkeypatch.setattr(hdf5_read, "_native_scan", lambda handle, source: None)
    loaded = _load(path)
    assert [f.rule_id for f in loaded.findings] == ["WA436"] and not loaded.verified and not loaded.tensors


@pytest.mark.parametrize("content", [b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, b"", b"garbage"])
def test_bad_hdf5_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    loaded = _load(path)
    assert loaded.status is FileStatus.ERROR and not loaded.verified
    assert loaded.reason and "bad.h5" in loaded.reason and "\n" not in loaded.reason
    assert "WA171" in {f.rule_id for f in loaded.findings}


def test_bad_keras_archives(tmp_path: Path) -> None:
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as out:
        out.writestr("config.json", "{}")
        out.writestr("model.weights.h5", b"not hdf5")
    loaded = KERAS_ZIP_LOADER.load(broken, "broken.keras", LoadOptions())
    assert loaded.status is FileStatus.ERROR and "WA169" in {f.rule_id for f in loaded.findings}
    bad_json = tmp_path / "json.keras"
    with zipfile.ZipFile(bad_json, "w") as out:
        out.writestr("config.json", "{nope")
        out.writestr("model.weights.h5", b"")
    assert KERAS_ZIP_LOADER.load(bad_json, "json.keras", LoadOptions()).status is FileStatus.ERROR
    no_weights = tmp_path / "other.zip"
    with zipfile.ZipFile(no_weights, "w") as out:
        out.writestr("config.json", "{}")
    assert not KERAS_ZIP_LOADER.sniff(read_probe(no_weights))


@pytest.mark.real
def test_fer_keras2_model() -> None:
    path = real_sample("fer/fer/data/emotion_model.hdf5")
    loaded = HDF5_LOADER.load(path, "emotion_model.hdf5", LoadOptions())
    assert loaded.status is FileStatus.OK and loaded.verified and not loaded.findings
    assert loaded.parameter_count == 172_326
    assert sum(t.parameter_count for t in loaded.tensors if t.role is Role.OPTIMIZER) == 113_903
    assert loaded.facts["keras_version"] == "2.0.5" and loaded.facts["backend"] == "tensorflow"
    assert loaded.facts["model_class"] == "Model"
    assert "conv2d_1/kernel" in {t.name for t in loaded.tensors}
    assert all(t.data_offsets is not None for t in loaded.tensors)


def test_huge_attribute_is_refused_not_read(tmp_path) -> None:
    """A multi-MB config attribute (dense attribute storage) is refused before it is read into memory."""
    import h5py
    import numpy as np

    from weightaudit.formats import hdf5_read, keras_h5

    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w", libver="latest") as handle:
        handle.attrs["layer_names"] = np.array([b"x" * 64] * 20_000)   # 1.28 MB, stored densely
        handle.create_dataset("w", data=np.zeros(3, np.float32))
    original = hdf5_read.MAX_ATTRIBUTE_BYTES
    hdf5_read.MAX_ATTRIBUTE_BYTES = 1_000_000
    try:
        loaded = keras_h5.HDF5_LOADER.load(path, "bomb.h5", __import__("weightaudit.formats.base", fromlist=["x"]).LoadOptions())
    finally:
        hdf5_read.MAX_ATTRIBUTE_BYTES = original
    assert not loaded.verified and "too large to read" in (loaded.reason or "")


@pytest.mark.parametrize("userblock", [512, 4096])
def test_offsets_are_absolute_behind_a_user_block(tmp_path: Path, userblock: int) -> None:
    path = tmp_path / "ub.h5"
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    with h5py.File(path, "w", userblock_size=userblock) as handle:
        handle.create_dataset("w", data=data)
    loaded = _load(path)
    (tensor,) = loaded.tensors
    begin, end = tensor.data_offsets
    assert begin >= userblock and path.read_bytes()[begin:end] == data.tobytes()


def test_a_corrupt_object_header_loses_only_that_dataset(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("good", data=np.zeros(3, np.float32))
        handle.create_dataset("bad", data=np.ones(3, np.float32))
        handle["soft"] = h5py.SoftLink("/good")
    with h5py.File(path, "r") as handle:
        address = h5py.h5o.get_info(handle["bad"].id).addr
    raw = bytearray(path.read_bytes())
    raw[address + 16:address + 40] = b"\xff" * 24          # libhdf5: "message not aligned"
    path.write_bytes(bytes(raw))
    loaded = _load(path)
    assert loaded.status is FileStatus.OK and not loaded.verified
    assert [t.name for t in loaded.tensors] == ["good"]
    assert sorted((f.rule_id, f.where) for f in loaded.findings) == [("WA171", "bad"), ("WA435", "soft")]
