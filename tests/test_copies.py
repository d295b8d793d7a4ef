"""One model in several containers: a safetensors file and its torch.save twin count once, are clean, and every
tensor on which they disagree is named (WA208). The torch files are written by torch.save here and never loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

from tests.conftest import invoke, invoke_json  # noqa: E402
from weightaudit.copies import find_copies, tensor_key  # noqa: E402
from weightaudit.discover import discover  # noqa: E402
from weightaudit.formats.base import LoadOptions  # noqa: E402
from weightaudit.pipeline import load_file  # noqa: E402


def weights() -> dict:
    generator = torch.Generator().manual_seed(3)
    return {
        "model.embed_tokens.weight": torch.randn(64, 32, generator=generator),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(32, 32, generator=generator),
        "model.layers.0.mlp.up_proj.weight": torch.randn(64, 32, generator=generator),
        "model.layers.0.input_layernorm.weight": torch.ones(32),
        "model.norm.weight": torch.ones(32),
    }


def release(folder: Path, bin_weights: dict | None = None, st_weights: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = weights()
    save_file(st_weights or base, folder / "model.safetensors")
    torch.save(bin_weights or dict(base), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 64, "hidden_size": 32,
                                                    "num_hidden_layers": 1, "tie_word_embeddings": False}))
    return folder


def wa208(doc: dict) -> list[tuple[str, str, str]]:
    return sorted((f["path"], f["tensor"], f["severity"]) for f in doc["findings"] if f["rule_id"] == "WA208")


def test_safetensors_and_torch_save_copies_count_once_and_are_clean(tmp_path: Path, runner) -> None:
    folder = release(tmp_path / "r")
    code, doc = invoke_json(runner, "audit", folder)
    params = sum(t.numel() for t in weights().values())
    assert doc["summary"]["parameter_count"] == params               # not twice
    assert doc["summary"]["tensor_count"] == 5
    assert [(c["format"], c["files"], c["primary"]) for c in doc["summary"]["copies"]] == [
        ("safetensors", ["model.safetensors"], True), ("pytorch", ["pytorch_model.bin"], False)]
    assert [f["rule_id"] for f in doc["findings"] if f["rule_id"] in ("WA208", "WA306")] == []
    assert code == 0, doc["findings"]
    validate(doc)
    text = invoke(runner, "inspect", folder).stdout
    assert "Copies" in text and "2 copies of one model" in text


def test_one_changed_tensor_is_named_exactly(tmp_path: Path, runner) -> None:
    edited = weights()
    edited["model.layers.0.mlp.up_proj.weight"][3, 4] += 0.01
    folder = release(tmp_path / "r", bin_weights=edited)
    _, doc = invoke_json(runner, "audit", folder)
    assert wa208(doc) == [("pytorch_model.bin", "model.layers.0.mlp.up_proj.weight", "medium")]
    _, header_only = invoke_json(runner, "inspect", folder)           # values need streamed bytes
    assert wa208(header_only) == []
    _, with_stats = invoke_json(runner, "inspect", "--stats", folder)
    assert wa208(with_stats) == [("pytorch_model.bin", "model.layers.0.mlp.up_proj.weight", "medium")]


def test_missing_reshaped_retyped_and_extra_tensors_are_named(tmp_path: Path, runner) -> None:
    edited = weights()
    del edited["model.norm.weight"]
    edited["model.layers.0.self_attn.q_proj.weight"] = edited["model.layers.0.self_attn.q_proj.weight"].reshape(16, 64)
    edited["model.embed_tokens.weight"] = edited["model.embed_tokens.weight"].half()
    edited["model.extra.bias"] = torch.zeros(3)
    folder = release(tmp_path / "r", bin_weights=edited)
    _, doc = invoke_json(runner, "inspect", folder)
    messages = {f["tensor"]: f["message"] for f in doc["findings"] if f["rule_id"] == "WA208"}
    assert set(messages) == {"model.norm.weight", "model.layers.0.self_attn.q_proj.weight",
                             "model.embed_tokens.weight", "model.extra.bias"}
    assert "missing from this copy" in messages["model.norm.weight"]
    assert "reshaped" in messages["model.layers.0.self_attn.q_proj.weight"]
    assert "re-typed" in messages["model.embed_tokens.weight"]
    assert "only in this copy" in messages["model.extra.bias"]


def test_training_checkpoint_wrapper_is_matched(tmp_path: Path, runner) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    save_file(weights(), folder / "model.safetensors")
    torch.save({"state_dict": weights()}, folder / "checkpoint.pt")
    code, doc = invoke_json(runner, "audit", folder)
    assert [c["files"] for c in doc["summary"]["copies"]] == [["model.safetensors"], ["checkpoint.pt"]]
    assert wa208(doc) == [] and code == 0


def test_unrelated_models_are_not_copies(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    save_file(weights(), folder / "model.safetensors")
    torch.save({"encoder.weight": torch.randn(4, 4), "decoder.weight": torch.randn(4, 4)}, folder / "other.bin")
    rel = discover([str(folder)])
    files = [load_file(Path(w.path), w.rel, w.format, LoadOptions()) for w in rel.weight_files]
    assert find_copies(files, rel) == ()


def test_sharded_safetensors_with_index_and_a_single_bin(tmp_path: Path, runner) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    base = weights()
    names = sorted(base)
    first, second = names[:2], names[2:]
    save_file({n: base[n] for n in first}, folder / "model-00001-of-00002.safetensors")
    save_file({n: base[n] for n in second}, folder / "model-00002-of-00002.safetensors")
    weight_map = {n: "model-00001-of-00002.safetensors" for n in first} | \
        {n: "model-00002-of-00002.safetensors" for n in second}
    total = sum(t.numel() * 4 for t in base.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                    "weight_map": weight_map}))
    torch.save(dict(base), folder / "pytorch_model.bin")
    code, doc = invoke_json(runner, "audit", folder)
    assert doc["summary"]["parameter_count"] == sum(t.numel() for t in base.values())
    assert [c["files"] for c in doc["summary"]["copies"]] == [
        ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"], ["pytorch_model.bin"]]
    assert wa208(doc) == [] and code == 0


def test_duplicates_inside_one_copy_are_still_found(tmp_path: Path, runner) -> None:
    twin = weights()
    twin["model.layers.0.mlp.up_proj.weight"] = twin["model.embed_tokens.weight"].clone()
    folder = release(tmp_path / "r", bin_weights=twin, st_weights=twin)
    _, doc = invoke_json(runner, "audit", folder)
    duplicates = [(f["path"], f["tensor"]) for f in doc["findings"] if f["rule_id"] == "WA306"]
    assert len(duplicates) == 1                  # one finding for the pair, not one per copy


def test_tensor_key_conventions() -> None:
    assert tensor_key("bert/embeddings/weight:0") == "bert.embeddings.weight"
    assert tensor_key("module.a.b", "module.") == "a.b"


def validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_many_files_in_one_folder_group_by_exact_names_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """300 files of two containers in one folder: exact name sets pair up without pairwise fuzzy comparisons;
    the fuzzy comparisons that remain are capped (MAX_FUZZY_CHECKS)."""
    from weightaudit import copies
    from weightaudit.model import LoadedFile, Release, TensorInfo

    calls = []
    real = copies._best_match
    monkeypatch.setattr(copies, "_best_match", lambda a, b: calls.append(1) or real(a, b))

    def loaded(path: str, fmt: str, names: list[str]) -> LoadedFile:
        return LoadedFile(path, fmt, 0, tensors=tuple(TensorInfo(n, "F32", (2,), path) for n in names))

    files = []
    for i in range(150):
        names = [f"m{i}.layer.{j}.weight" for j in range(20)]
        files.append(loaded(f"model{i}.safetensors", "safetensors", names))
        files.append(loaded(f"model{i}.bin", "pytorch-zip", names))
    files.append(loaded("stray.bin", "pytorch-zip", [f"x{j}" for j in range(20)]))
    groups = copies.find_copies(files, Release("t", "/", ()))
    assert len(groups) == 150
    assert all(g.members[0].files[0].replace(".safetensors", ".bin") == g.members[1].files[0] for g in groups)
    assert len(calls) <= copies.MAX_FUZZY_CHECKS


def write_tf_copy(path: Path, pt: dict, changed: str | None = None) -> None:
    """transformers' tf_model.h5 layout: one group per Keras layer, TF names, dense kernels stored [in, out]."""
    import h5py

    names = {"model.embed_tokens.weight": "tf_llama_model/model/embed_tokens/embeddings:0",
             "model.layers.0.self_attn.q_proj.weight": "tf_llama_model/model/layers_._0/self_attn/q_proj/kernel:0",
             "model.layers.0.mlp.up_proj.weight": "tf_llama_model/model/layers_._0/mlp/up_proj/kernel:0",
             "model.layers.0.input_layernorm.weight": "tf_llama_model/model/layers_._0/input_layernorm/gamma:0",
             "model.norm.weight": "tf_llama_model/model/norm/gamma:0"}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"tf_llama_model"]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        group = f.create_group("tf_llama_model")
        group.attrs["weight_names"] = [n.encode() for n in names.values()]
        for pt_name, tf_name in names.items():
            value = pt[pt_name].numpy()
            if tf_name.endswith("kernel:0"):
                value = value.T.copy()
            if pt_name == changed:
                value = value.copy()
                value.flat[5] += 1.0
            group.create_dataset(tf_name, data=value)


def test_tensorflow_copy_with_transposed_kernels_is_a_clean_copy(tmp_path: Path, runner) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    save_file(weights(), folder / "model.safetensors")
    write_tf_copy(folder / "tf_model.h5", weights())
    code, doc = invoke_json(runner, "audit", folder)
    assert [(c["format"], c["files"]) for c in doc["summary"]["copies"]] == [
        ("safetensors", ["model.safetensors"]), ("keras", ["tf_model.h5"])]
    assert doc["summary"]["parameter_count"] == sum(t.numel() for t in weights().values())
    assert wa208(doc) == [] and code == 0, doc["findings"]


def test_changed_tensorflow_kernel_is_named(tmp_path: Path, runner) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    save_file(weights(), folder / "model.safetensors")
    write_tf_copy(folder / "tf_model.h5", weights(), changed="model.layers.0.mlp.up_proj.weight")
    _, doc = invoke_json(runner, "audit", folder)
    assert wa208(doc) == [("tf_model.h5", "tf_llama_model/model/layers_._0/mlp/up_proj/kernel", "medium")]


def test_numeric_findings_of_an_equal_copy_are_not_repeated(tmp_path: Path, runner) -> None:
    """The norm weights are exactly 1 (WA308 untrained): said once, on the counted copy, unless the copies differ."""
    folder = release(tmp_path / "r")
    _, doc = invoke_json(runner, "audit", folder)
    untrained = sorted((f["path"], f["tensor"]) for f in doc["findings"] if f["rule_id"] == "WA308")
    assert untrained == [("model.safetensors", "model.layers.0.input_layernorm.weight"),
                         ("model.safetensors", "model.norm.weight")]
    edited = weights()
    edited["model.norm.weight"] = torch.full((32,), 1.0)
    edited["model.norm.weight"][0] = float("nan")
    folder = release(tmp_path / "s", bin_weights=edited)
    _, doc = invoke_json(runner, "audit", folder)
    assert ("pytorch_model.bin", "model.norm.weight") in {(f["path"], f["tensor"]) for f in doc["findings"]
                                                          if f["rule_id"] == "WA301"}
    assert wa208(doc) == [("pytorch_model.bin", "model.norm.weight", "medium")]


def test_a_finding_only_one_copy_has_is_kept_whatever_is_selected(tmp_path: Path, runner) -> None:
    edited = weights()
    edited["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
    folder = release(tmp_path / "r", bin_weights=edited)
    _, doc = invoke_json(runner, "audit", folder, "--select", "WA3")
    assert [(f["path"], f["tensor"]) for f in doc["findings"] if f["rule_id"] == "WA301"] == [
        ("pytorch_model.bin", "model.layers.0.mlp.up_proj.weight")]


def test_copies_row_of_many_shards_stays_short(tmp_path: Path, runner) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    base = weights()
    names = sorted(base)
    for i, name in enumerate(names, 1):
        save_file({name: base[name]}, folder / f"model-{i:05d}-of-{len(names):05d}.safetensors")
    torch.save(dict(base), folder / "pytorch_model.bin")
    text = " ".join(invoke(runner, "inspect", folder).stdout.split())
    assert ("model-00001-of-00005.safetensors, model-00002-of-00005.safetensors … (5 files) (safetensors, counted); "
            "pytorch_model.bin (pytorch)") in text.replace(" | ", " ").replace("| ", "")


def test_markdown_lists_copies(tmp_path: Path, runner) -> None:
    folder = release(tmp_path / "r")
    markdown = invoke(runner, "inspect", folder, "--format", "markdown").stdout
    assert ("| Copies | 2 copies of one model: model.safetensors (safetensors, counted); pytorch_model.bin (pytorch) |"
            in markdown)


def test_clean_copies_are_compared_without_reading_them_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statistics pass already fingerprinted every tensor: equal copies cost no second read."""
    import weightaudit
    from weightaudit import tensor_hash

    calls = []
    real = tensor_hash.tensor_digest
    monkeypatch.setattr(tensor_hash, "tensor_digest", lambda *a, **k: calls.append(a[2].name) or real(*a, **k))
    edited = weights()
    edited["model.norm.weight"][1] = 3.0
    report = weightaudit.audit(release(tmp_path / "r", bin_weights=edited))
    assert [f.tensor for f in report.findings if f.rule_id == "WA208"] == ["model.norm.weight"]
    assert sorted(calls) == ["model.norm.weight", "model.norm.weight"]     # only the differing tensor, both sides
