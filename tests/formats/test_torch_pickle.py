"""PyTorch containers: inventories match torch.load on checkpoints the tests generate, plus real legacy files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, real_sample
from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.formats.base import tensor_view
from weightaudit.formats.torch_pickle import TORCH_DTYPES
from weightaudit.model import FileStatus, LoadedFile, Role, Severity

torch = pytest.importorskip("torch")


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_torch_fixtures", ROOT / "fixtures" / "make_torch_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh checkpoints written by torch in this test session (torch.load is only used on these)."""
    return _generator().main(tmp_path_factory.mktemp("torch"), verbose=False)


def load(path: Path) -> tuple[str, LoadedFile]:
    loader = sniff(read_probe(path))
    assert loader is not None, f"no loader claims {path.name}"
    return loader.name, loader.load(path, path.name, LoadOptions())


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            out.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
    return out


def _tensor_bytes(path: Path, loaded: LoadedFile, name: str) -> bytes:
    loader = sniff(read_probe(path))
    tensor = next(t for t in loaded.tensors if t.name == name)
    if tensor.data_offsets is not None:
        return bytes(tensor_view(path, tensor))
    return b"".join(bytes(chunk) for chunk in loader.iter_chunks(path, tensor, 7))


def _torch_bytes(tensor: Any) -> bytes:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _assert_matches_torch(path: Path, weights_only: bool = True) -> LoadedFile:
    _, loaded = load(path)
    assert loaded.status is FileStatus.OK and loaded.verified, loaded.reason
    expected = _flatten(torch.load(path, weights_only=weights_only, map_location="cpu"))
    ours = {t.name: t for t in loaded.tensors}
    assert sorted(ours) == sorted(expected)
    for name, tensor in expected.items():
        info = ours[name]
        assert info.dtype == TORCH_DTYPES[str(tensor.dtype).removeprefix("torch.")], name
        assert info.shape == tuple(tensor.shape), name
        assert info.strides == tuple(tensor.stride()), name
        assert _tensor_bytes(path, loaded, name) == _torch_bytes(tensor), name
    return loaded


@pytest.mark.parametrize("name", ["all_dtypes_zip.pt", "all_dtypes_legacy.pt", "training_zip.pt",
                                  "training_legacy.pt", "tied_views_zip.pt", "tied_views_legacy.pt",
                                  "checkpoint.pth.tar"])
def test_inventory_matches_torch_load(generated: Path, name: str) -> None:
    loaded = _assert_matches_torch(generated / name)
    assert loaded.facts["weights_only_accepts"] is True
    assert loaded.facts["executes_code"] is False
    assert [f for f in loaded.findings if f.severity >= Severity.LOW] == []


def test_protocol_4_matches_torch_and_is_refused_by_weights_only(generated: Path) -> None:
    path = generated / "protocol4_zip.pt"
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)
    loaded = _assert_matches_torch(path, weights_only=False)
    assert loaded.facts["weights_only_accepts"] is False
    assert any("FRAME" in r for r in loaded.facts["weights_only_reasons"])
    assert loaded.facts["executes_code"] is False


def test_every_dtype_is_listed(generated: Path) -> None:
    _, loaded = load(generated / "all_dtypes_zip.pt")
    dtypes = {t.dtype for t in loaded.tensors}
    assert {"BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2", "I8", "I16", "I32", "I64", "U8", "U16", "U32",
            "U64", "BOOL", "C64", "C128"} <= dtypes


def test_training_checkpoint_names_roles_and_optimizer_count(generated: Path) -> None:
    for name in ("training_zip.pt", "training_legacy.pt"):
        _, loaded = load(generated / name)
        roles = {t.name: t.role for t in loaded.tensors}
        assert roles["model_state.0.weight"] is Role.PARAMETER
        assert roles["optimizer_state.state.0.exp_avg"] is Role.OPTIMIZER
        assert roles["optimizer_state.state.0.step"] is Role.OPTIMIZER
        optimizer = sum(t.parameter_count for t in loaded.tensors if t.role is Role.OPTIMIZER)
        assert loaded.facts["optimizer_parameter_count"] == optimizer > 0


def test_tied_weights_and_views_share_a_storage(generated: Path) -> None:
    _, loaded = load(generated / "tied_views_zip.pt")
    by_name = {t.name: t for t in loaded.tensors}
    assert by_name["w"].storage is not None and by_name["w"].storage == by_name["tied"].storage == by_name["row1"].storage
    assert by_name["bias"].storage is None
    assert by_name["t"].data_offsets is None            # transposed view: streamed through iter_chunks
    assert by_name["row1"].data_offsets[0] - by_name["w"].data_offsets[0] == 16
    shared = loaded.facts["shared_storages"]
    assert any({"w", "tied", "row1", "col2", "t", "tail"} <= set(names) for names in shared.values())


def test_torchscript_is_flagged_and_inventoried(generated: Path) -> None:
    name, loaded = load(generated / "torchscript.pt")
    assert name == "torchscript"
    assert loaded.facts["torchscript"] is True
    assert {t.name for t in loaded.tensors} == {"weight", "bias"}
    assert any(f.rule_id == "WA413" for f in loaded.findings)
    assert loaded.facts["weights_only_accepts"] is False


def test_whole_module_pickle_is_inventoried_with_unknown_globals(generated: Path) -> None:
    _, loaded = load(generated / "module_zip.pt")
    assert {t.name for t in loaded.tensors} == {"weight", "bias"}
    assert {f.rule_id for f in loaded.findings} >= {"WA403"}
    # not allowlisted (torch.nn.modules.linear.Linear runs torch's module code on load): high, never a pass
    assert max(f.severity for f in loaded.findings) == Severity.HIGH


def test_malicious_fixtures_are_critical_and_not_loadable_safely(generated: Path) -> None:
    for name in ("evil_zip.pt", "evil_legacy.pt", "evil_duplicate.pt"):
        _, loaded = load(generated / name)
        critical = [f for f in loaded.findings if f.severity is Severity.CRITICAL]
        assert critical and "os.system('touch weightaudit_pwned_marker')" in critical[0].message, name
        assert critical[0].where and "REDUCE" in critical[0].where
        assert loaded.facts["executes_code"] is True
        assert loaded.facts["weights_only_accepts"] is False


def test_duplicate_member_last_wins_and_is_reported(generated: Path) -> None:
    _, loaded = load(generated / "evil_duplicate.pt")
    assert any(f.rule_id == "WA141" for f in loaded.findings)
    assert loaded.tensors == ()          # the last data.pkl (the malicious one) is what torch reads


def test_truncated_zip_is_a_clear_error(generated: Path) -> None:
    name, loaded = load(generated / "truncated_zip.pt")
    assert loaded.status is FileStatus.ERROR and not loaded.verified
    assert "truncated_zip.pt" in loaded.reason and "\n" not in loaded.reason


def test_out_of_bounds_view_is_reported(generated: Path) -> None:
    _, loaded = load(generated / "oob_view.pt")
    assert any(f.rule_id == "WA146" for f in loaded.findings)
    assert not loaded.verified


def test_cuda_location_loads_on_cpu(tmp_path: Path) -> None:
    path = tmp_path / "cuda.pt"
    torch.save({"w": torch.ones(2)}, path)
    data = path.read_bytes().replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    import zipfile, io
    with zipfile.ZipFile(path) as zin:
        pkl = zin.read("cuda/data.pkl").replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, pkl if info.filename.endswith("data.pkl") else zin.read(info.filename))
    path.write_bytes(out.getvalue())
    _, loaded = load(path)
    assert loaded.facts["storage_locations"] == ["cuda:0"]
    assert [t.name for t in loaded.tensors] == ["w"] and loaded.verified
    del data


@pytest.mark.real
def test_resemblyzer_pretrained_legacy_checkpoint() -> None:
    path = real_sample("resemblyzer/resemblyzer/pretrained.pt")
    name, loaded = load(path)
    assert name == "pytorch-legacy" and loaded.verified
    assert len(loaded.tensors) == 48
    assert loaded.parameter_count == 4_270_854
    assert loaded.facts["optimizer_parameter_count"] == 2_847_236
    assert "cuda:0" in loaded.facts["storage_locations"]
    assert max((f.severity for f in loaded.findings), default=Severity.INFO) < Severity.HIGH
    weight = next(t for t in loaded.tensors if t.name == "model_state.lstm.weight_ih_l0")
    assert weight.dtype == "F32" and weight.role is Role.PARAMETER
    reference = torch.load(path, weights_only=True, map_location="cpu")["model_state"]["lstm.weight_ih_l0"]
    assert _tensor_bytes(path, loaded, weight.name) == _torch_bytes(reference)


@pytest.mark.real
@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
@pytest.mark.parametrize("version", ["v0.0", "v0.1"])
def test_lpips_2018_weights(net: str, version: str) -> None:
    path = real_sample(f"lpips/lpips/weights/{version}/{net}.pth")
    name, loaded = load(path)
    assert name == "pytorch-legacy" and loaded.status is FileStatus.OK and loaded.verified
    assert loaded.tensors and all(t.dtype == "F32" for t in loaded.tensors)
    assert max((f.severity for f in loaded.findings), default=Severity.INFO) < Severity.MEDIUM


def test_prose_that_parses_as_protocol_0_is_not_a_pickle(tmp_path) -> None:
    """'Copyright (c) ...' runs as protocol-0 opcodes up to a '.', but a licence file is not a weight file;
    the same text with a hidden import is still claimed and scanned."""
    from weightaudit.formats import read_probe, sniff

    licence = tmp_path / "LICENSE"
    licence.write_text("Copyright (c) 2018, Richard Zhang, Phillip Isola, Alexei A. Efros.\n"
                       "All rights reserved.\n\nRedistribution and use in source and binary forms ...\n" * 5)
    assert sniff(read_probe(licence)) is None
    payload = tmp_path / "NOTES"
    payload.write_bytes(b"cos\nsystem\n(S'id'\ntR.\n" + b"Just some notes after the pickle.\n" * 10)
    loader = sniff(read_probe(payload))
    assert loader is not None and loader.name == "pickle"


def test_a_load_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    """Loads make the cyclic collector lazy while they run (collector.lazy_collections_while_loading), never beyond: after a
    clean load and after one that fails part-way, thresholds and state are what they were."""
    import gc

    from weightaudit.formats.torch_pickle import PYTORCH_ZIP

    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(good.read_bytes()[:200])
    before = gc.get_threshold()
    assert load(good)[1].status is FileStatus.OK
    assert gc.get_threshold() == before and gc.isenabled()
    assert PYTORCH_ZIP.load(broken, broken.name, LoadOptions()).status is FileStatus.ERROR
    assert gc.get_threshold() == before and gc.isenabled()
