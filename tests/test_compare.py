"""`weightaudit diff`: a safetensors file against its torch.save twin and against edited copies, through the CLI
and the API. Every tensor file here is built by the test (torch.save of plain tensors; nothing is loaded)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

import weightaudit  # noqa: E402
from tests.conftest import invoke, invoke_json  # noqa: E402
from weightaudit.compare import Tolerance, layer_of  # noqa: E402
from weightaudit.errors import UsageError  # noqa: E402


def _weights() -> dict:
    generator = torch.Generator().manual_seed(7)
    return {
        "embed.weight": torch.randn(64, 16, generator=generator),
        "layers.0.attn.q.weight": torch.randn(16, 16, generator=generator),
        "layers.0.attn.q.bias": torch.randn(16, generator=generator),
        "layers.1.mlp.up.weight": torch.randn(300_000, generator=generator),   # more than one compared block
        "layers.1.mlp.up.bias": torch.randn(7, generator=generator).to(torch.bfloat16),
        "norm.scale": torch.randn(9, generator=generator).half(),
        "position_ids": torch.arange(12, dtype=torch.int64),
    }


@pytest.fixture
def twin(tmp_path: Path) -> tuple[Path, Path, dict]:
    weights = _weights()
    save_file(weights, tmp_path / "model.safetensors")
    torch.save(dict(weights), tmp_path / "pytorch_model.bin")
    return tmp_path / "model.safetensors", tmp_path / "pytorch_model.bin", weights


def _statuses(report: dict) -> dict[str, str]:
    return {t["name"]: t["status"] for t in report["tensors"]}


def _save(tmp_path: Path, weights: dict, name: str = "edited.bin") -> Path:
    torch.save(weights, tmp_path / name)
    return tmp_path / name


def test_safetensors_and_its_torch_save_twin_are_identical(runner, twin) -> None:
    a, b, weights = twin
    code, report = invoke_json(runner, "diff", a, b)
    assert code == 0 and report["command"] == "diff" and report["schema_version"] == "1"
    assert report["summary"] == {"identical": len(weights), "changed": 0, "added": 0, "removed": 0, "renamed": 0,
                                 "retyped": 0, "reshaped": 0}
    assert set(_statuses(report).values()) == {"identical"} and report["layers"] == []
    assert {f["format"] for f in report["a"]["files"]} == {"safetensors"}
    assert {f["format"] for f in report["b"]["files"]} == {"pytorch-zip"}


def test_one_tensor_perturbed_by_a_tenth_of_a_percent_is_named_alone(runner, twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    original = weights["layers.1.mlp.up.weight"]
    edited["layers.1.mlp.up.weight"] = original * 1.001
    code, report = invoke_json(runner, "diff", a, _save(tmp_path, edited))
    assert code == 1
    changed = [t for t in report["tensors"] if t["status"] != "identical"]
    assert [t["name"] for t in changed] == ["layers.1.mlp.up.weight"] and changed[0]["status"] == "changed"
    x = original.double().numpy()
    y = (original * 1.001).double().numpy()
    # float32 work precision for F32 tensors (compare_values.py): a few float32 ulps of the exact figures
    assert changed[0]["max_abs_diff"] == pytest.approx(np.max(np.abs(x - y)), rel=1e-6)
    assert changed[0]["rel_l2"] == pytest.approx(np.linalg.norm(x - y) / np.linalg.norm(x), rel=1e-6)
    assert changed[0]["rel_l2"] == pytest.approx(0.001, rel=1e-3)
    assert changed[0]["cosine"] == pytest.approx(1.0, abs=1e-9)
    assert report["layers"] == [{"layer": "layers.1", "tensors": 2, "touched": 1, "statuses": {"changed": 1}}]


def test_bf16_values_are_compared_in_element_order(twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    bias = weights["layers.1.mlp.up.bias"].clone()
    bias[3] = bias[3] + 1.0
    edited["layers.1.mlp.up.bias"] = bias
    report = weightaudit.diff(a, _save(tmp_path, edited))
    (row,) = [t for t in report if t.status.value == "changed"]
    x, y = weights["layers.1.mlp.up.bias"].double().numpy(), bias.double().numpy()
    assert row.values.max_abs_diff == pytest.approx(np.max(np.abs(x - y)))
    assert row.values.differing_elements == 1
    assert row.values.cosine == pytest.approx(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)))


@pytest.mark.parametrize("edit, name, status", [
    (lambda w: w.update({"layers.0.attn.query.weight": w.pop("layers.0.attn.q.weight")}),
     "layers.0.attn.query.weight", "renamed"),
    (lambda w: w.update({"extra.weight": torch.ones(3)}), "extra.weight", "added"),
    (lambda w: w.pop("position_ids"), "position_ids", "removed"),
    (lambda w: w.update({"embed.weight": w["embed.weight"].half()}), "embed.weight", "retyped"),
    (lambda w: w.update({"embed.weight": w["embed.weight"].reshape(16, 64)}), "embed.weight", "reshaped"),
])
def test_each_kind_of_difference_is_named(runner, twin, tmp_path: Path, edit, name: str, status: str) -> None:
    a, _, weights = twin
    edited = dict(weights)
    edit(edited)
    code, report = invoke_json(runner, "diff", a, _save(tmp_path, edited))
    assert code == 1
    assert {n: s for n, s in _statuses(report).items() if s != "identical"} == {name: status}
    assert report["summary"][status] == 1
    assert sum(report["summary"].values()) == len(edited) + (status == "removed")


def test_renamed_tensor_says_where_it_came_from(twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    edited["head.weight"] = edited.pop("embed.weight")
    (row,) = [t for t in weightaudit.diff(a, _save(tmp_path, edited)) if t.status.value == "renamed"]
    assert (row.name, row.renamed_from) == ("head.weight", "embed.weight")


def test_retyped_values_are_compared_and_tolerance_accepts_a_lossy_conversion(runner, twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    edited["embed.weight"] = weights["embed.weight"].half()
    b = _save(tmp_path, edited)
    code, report = invoke_json(runner, "diff", a, b)
    (row,) = [t for t in report["tensors"] if t["status"] == "retyped"]
    assert code == 1 and 0 < row["max_abs_diff"] < 0.01 and row["cosine"] > 0.9999
    code, report = invoke_json(runner, "diff", a, b, "--tolerance", "abs=0.01")
    assert code == 0 and report["tolerance"] == {"absolute": 0.01, "relative": None}
    assert [t["within_tolerance"] for t in report["tensors"] if t["status"] == "retyped"] == [True]
    code, _ = invoke_json(runner, "diff", a, b, "--tolerance", "1e-6")
    assert code == 1


def test_relative_tolerance_and_bad_tolerances(runner, twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    edited["layers.1.mlp.up.weight"] = weights["layers.1.mlp.up.weight"] * 1.001
    b = _save(tmp_path, edited)
    assert invoke(runner, "diff", a, b, "--tolerance", "rel=0.2%").exit_code == 0
    assert invoke(runner, "diff", a, b, "--tolerance", "rel=0.05%").exit_code == 1
    result = invoke(runner, "diff", a, b, "--tolerance", "rel=lots")
    assert result.exit_code == 2 and "not a number" in result.stderr
    with pytest.raises(UsageError):
        Tolerance.parse("angle=3")


def test_non_contiguous_torch_view_equals_the_contiguous_tensor(twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    storage = torch.empty(16, 16)
    storage.copy_(weights["layers.0.attn.q.weight"].t())
    edited["layers.0.attn.q.weight"] = storage.t()         # saved as a strided view of a transposed storage
    assert not edited["layers.0.attn.q.weight"].is_contiguous()
    report = weightaudit.diff(a, _save(tmp_path, edited))
    assert report.exit_code == 0 and {t.status.value for t in report} == {"identical"}


def test_releases_with_two_copies_compare_their_preferred_copy(runner, twin, tmp_path: Path) -> None:
    a, b, _ = twin
    release_a, release_b = tmp_path / "ra", tmp_path / "rb"
    release_a.mkdir()
    release_b.mkdir()
    shutil.copy(a, release_a / a.name)
    shutil.copy(b, release_a / b.name)
    shutil.copy(a, release_b / a.name)
    code, report = invoke_json(runner, "diff", release_a, release_b)
    assert code == 0 and report["summary"]["identical"] == report["a"]["tensor_count"] == 7
    assert report["notes"] == ["A: pytorch_model.bin: 7 tensor(s) also held by another file of this release (its "
                               "copy, preferred by format, is the one compared)"]


def test_something_unreadable_makes_the_diff_incomplete(runner, twin, tmp_path: Path) -> None:
    a, _, _ = twin
    release_a, release_b = tmp_path / "ra", tmp_path / "rb"
    for release in (release_a, release_b):
        release.mkdir()
        shutil.copy(a, release / a.name)
    (release_b / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    code, report = invoke_json(runner, "diff", release_a, release_b)
    assert code == 3 and report["verdict"] == "incomplete"
    assert any("broken.safetensors" in note for note in report["notes"])


@pytest.mark.parametrize("width", [80, 120])
def test_text_fits_the_width_and_ends_with_the_verdict(runner, twin, tmp_path: Path, monkeypatch, width: int) -> None:
    a, _, weights = twin
    edited = dict(weights)
    edited["a.very.long.name." * 12 + "weight"] = torch.ones(2)
    edited["layers.1.mlp.up.weight"] = weights["layers.1.mlp.up.weight"] * 1.001
    monkeypatch.setenv("COLUMNS", str(width))
    result = invoke(runner, "diff", a, _save(tmp_path, edited))
    lines = result.stdout.splitlines()
    assert result.exit_code == 1 and all(len(line) <= width for line in lines)
    assert lines[-1].strip().startswith("DIFFERENT (exit 1)")
    assert "layers.1.mlp.up.weight" in result.stdout and "\x1b" not in result.stdout


def test_markdown_names_the_changed_tensor(runner, twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    edited["norm.scale"] = weights["norm.scale"] * 2
    out = tmp_path / "diff.md"
    assert invoke(runner, "diff", a, _save(tmp_path, edited), "-o", out).exit_code == 1
    text = out.read_text()
    assert text.startswith("# weightaudit diff") and "| `norm.scale` | changed |" in text


def test_layer_of_groups_by_layer_index_else_by_prefix() -> None:
    assert layer_of("model.layers.3.self_attn.q_proj.weight") == "model.layers.3"
    assert layer_of("embeddings.word_embeddings.weight") == "embeddings.word_embeddings"
    assert layer_of("bias") == "bias"


def test_json_numbers_are_strict_json(twin, tmp_path: Path) -> None:
    a, _, weights = twin
    edited = dict(weights)
    scale = weights["norm.scale"].clone()
    scale[0] = math.inf
    edited["norm.scale"] = scale
    document = weightaudit.diff(a, _save(tmp_path, edited)).to_dict()
    text = json.dumps(document, allow_nan=False)
    (row,) = [t for t in json.loads(text)["tensors"] if t["status"] == "changed"]
    assert row["max_abs_diff"] == "inf" and row["nonfinite_mismatches"] == 1


def test_json_follows_the_published_schema(runner, twin, tmp_path: Path) -> None:
    from importlib import resources

    import jsonschema

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/diff.v1.schema.json").read_text())
    a, _, weights = twin
    edited = dict(weights)
    edited["layers.1.mlp.up.weight"] = weights["layers.1.mlp.up.weight"] * 1.001
    edited["head.weight"] = edited.pop("embed.weight")
    edited["norm.scale"] = weights["norm.scale"].float()
    del edited["position_ids"]
    _, report = invoke_json(runner, "diff", a, _save(tmp_path, edited), "--tolerance", "rel=1%")
    jsonschema.validate(report, schema)
    assert {t["status"] for t in report["tensors"]} == {"identical", "changed", "renamed", "retyped", "removed"}


def test_big_endian_arrays_compare_identical_to_little_endian_ones(tmp_path: Path) -> None:
    from safetensors.numpy import save_file as save_numpy

    values = np.arange(1000, dtype="<f4") / 7
    save_numpy({"array": values}, tmp_path / "little.safetensors")
    np.save(tmp_path / "array.npy", values.astype(">f4"))
    report = weightaudit.diff(tmp_path / "little.safetensors", tmp_path / "array.npy")
    assert report.exit_code == 0 and [t.status.value for t in report] == ["identical"]
    np.save(tmp_path / "array.npy", (values * 2).astype(">f4"))
    (row,) = weightaudit.diff(tmp_path / "little.safetensors", tmp_path / "array.npy").tensors
    assert row.status.value == "changed" and row.values.max_abs_diff == pytest.approx(float(values.max()))


def test_a_tensor_that_cannot_be_streamed_in_c_order_is_unchecked_never_same(runner, tmp_path: Path) -> None:
    from safetensors.numpy import save_file as save_numpy

    values = np.arange(12, dtype="<f4").reshape(3, 4)
    save_numpy({"array": values}, tmp_path / "c.safetensors")   # the name numpy.load gives a .npy array
    np.save(tmp_path / "f.npy", np.asfortranarray(values))
    code, report = invoke_json(runner, "diff", tmp_path / "c.safetensors", tmp_path / "f.npy")
    assert code == 3 and report["verdict"] == "incomplete"
    assert [t["status"] for t in report["tensors"]] == ["unchecked"]
    assert sum(report["summary"].values()) == 0


def test_tolerance_forms() -> None:
    assert Tolerance.parse("1e-3") == Tolerance(absolute=1e-3)
    assert Tolerance.parse("1%") == Tolerance(relative=0.01)
    assert Tolerance.parse("abs=0.5, rel=2e-3") == Tolerance(0.5, 2e-3)
    with pytest.raises(UsageError):
        Tolerance.parse("-1")


def test_text_lists_the_largest_changes_first_when_many_differ(runner, tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(11)
    weights = {f"layers.{i}.weight": torch.randn(8, generator=generator) for i in range(50)}
    save_file(weights, tmp_path / "a.safetensors")
    edited = {name: tensor * (1 + 0.001 * (i + 1)) for i, (name, tensor) in enumerate(weights.items())}
    b = _save(tmp_path, edited)
    text = invoke(runner, "diff", tmp_path / "a.safetensors", b).stdout
    assert "layers.49.weight" in text and "layers.0.weight" not in text      # the 40 largest rel L2 of 50
    assert "... and 10 more (--all-tensors" in text
    full = invoke(runner, "diff", tmp_path / "a.safetensors", b, "--all-tensors").stdout
    assert "layers.0.weight" in full and "more (--all-tensors" not in full
