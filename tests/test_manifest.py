"""`weightaudit hash` / `verify` and the container-independent tensor hash (tensor_hash.py). Every file is built
by the test; nothing is loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.numpy import save_file as save_numpy  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import weightaudit  # noqa: E402
from tests.conftest import invoke, invoke_json  # noqa: E402
from weightaudit.formats.base import LoadOptions  # noqa: E402
from weightaudit.release_tensors import load_target  # noqa: E402
from weightaudit.tensor_hash import canonical_header, tensor_digest  # noqa: E402


def _weights() -> dict:
    generator = torch.Generator().manual_seed(3)
    return {"wte.weight": torch.randn(32, 8, generator=generator),
            "h.0.attn.weight": torch.randn(8, 8, generator=generator).to(torch.bfloat16),
            "h.0.ln.bias": torch.randn(8, generator=generator).half(),
            "ids": torch.arange(5, dtype=torch.int32)}


@pytest.fixture
def release(tmp_path: Path) -> Path:
    folder = tmp_path / "release"
    folder.mkdir()
    save_file(_weights(), folder / "model.safetensors")
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    return folder


def _tensor_hashes(paths) -> dict[str, str]:
    return {t.name: t.sha256 for t in weightaudit.hash(paths).tensors}


def test_the_hash_is_sha256_of_the_canonical_header_and_little_endian_bytes(release: Path) -> None:
    (source,) = [s for s in load_target([str(release / "model.safetensors")]).sources if s.name == "wte.weight"]
    expected = hashlib.sha256(canonical_header("F32", (32, 8)) + _weights()["wte.weight"].numpy().tobytes())
    assert tensor_digest(source.path, source.fmt, source.tensor) == expected.hexdigest()
    assert canonical_header("F32", (32, 8)) == b"weightaudit-tensor-v1\0F32\x0032,8\0"


def test_safetensors_and_torch_save_copies_hash_the_same(release: Path, tmp_path: Path) -> None:
    weights = _weights()
    torch.save(weights, tmp_path / "pytorch_model.bin")
    strided = dict(weights)
    storage = torch.empty(8, 32)
    storage.copy_(weights["wte.weight"].t())
    strided["wte.weight"] = storage.t()                     # a non-contiguous view: gathered in C order
    torch.save(strided, tmp_path / "strided.bin")
    from_safetensors = _tensor_hashes(release / "model.safetensors")
    assert None not in from_safetensors.values() and len(from_safetensors) == 4
    assert _tensor_hashes(tmp_path / "pytorch_model.bin") == from_safetensors
    assert _tensor_hashes(tmp_path / "strided.bin") == from_safetensors


def test_big_endian_arrays_hash_like_little_endian_ones(tmp_path: Path) -> None:
    values = np.arange(12, dtype="<f4").reshape(3, 4) / 7
    save_numpy({"array": values}, tmp_path / "little.safetensors")
    np.save(tmp_path / "array.npy", values.astype(">f4"))
    assert _tensor_hashes(tmp_path / "array.npy") == _tensor_hashes(tmp_path / "little.safetensors")


def test_a_fortran_ordered_array_is_unhashable_not_wrong(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.asfortranarray(np.arange(12, dtype="<f4").reshape(3, 4)))
    manifest = weightaudit.hash(tmp_path / "f.npy")
    assert [t.sha256 for t in manifest.tensors] == [None]
    assert manifest.exit_code == 3 and any("could not be hashed" in n for n in manifest.notes)


def test_hash_writes_a_manifest_and_verify_matches_it(runner, release: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    result = invoke(runner, "hash", release, "-o", manifest)
    assert result.exit_code == 0
    document = json.loads(manifest.read_text())
    assert document["schema_version"] == "1"
    assert [f["path"] for f in document["files"]] == ["config.json", "model.safetensors"]
    data = (release / "model.safetensors").read_bytes()
    assert document["files"][1] == {"path": "model.safetensors", "size": len(data),
                                    "sha256": hashlib.sha256(data).hexdigest()}
    assert sorted(t["name"] for t in document["tensors"]) == sorted(_weights())
    assert all(set(t) >= {"name", "dtype", "shape", "sha256"} for t in document["tensors"])
    code, report = invoke_json(runner, "verify", release, manifest)
    assert code == 0 and report["verdict"] == "match" and report["files"] == [] and report["tensors"] == []
    assert report["summary"]["tensors"]["ok"] == 4


def test_verify_names_the_changed_tensor_and_missing_and_extra_files(runner, release: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    assert invoke(runner, "hash", release, "-o", manifest).exit_code == 0
    weights = _weights()
    weights["h.0.ln.bias"] = weights["h.0.ln.bias"] * 1.001
    save_file(weights, release / "model.safetensors")
    (release / "config.json").unlink()
    (release / "notes.txt").write_text("added later")
    code, report = invoke_json(runner, "verify", release, manifest)
    assert code == 1 and report["verdict"] == "mismatch"
    assert {(f["name"], f["status"]) for f in report["files"]} == {
        ("config.json", "missing"), ("notes.txt", "extra"), ("model.safetensors", "changed")}
    assert [(t["name"], t["status"]) for t in report["tensors"]] == [("h.0.ln.bias", "changed")]
    text = invoke(runner, "verify", release, manifest).stdout
    assert "h.0.ln.bias" in text and text.splitlines()[-1].startswith("  MISMATCH (exit 1)")


def test_verify_names_missing_and_extra_tensors(release: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(weightaudit.hash(release).to_dict()))
    weights = _weights()
    weights["lm_head.weight"] = weights.pop("wte.weight")
    save_file(weights, release / "model.safetensors")
    report = weightaudit.verify(release, manifest)
    assert report.exit_code == 1
    assert sorted((m.name, m.check.value) for m in report.problems if m.kind == "tensor") == [
        ("lm_head.weight", "extra"), ("wte.weight", "missing")]


def test_a_manifest_inside_the_release_is_not_listed_in_itself(runner, release: Path) -> None:
    manifest = release / "manifest.json"
    assert invoke(runner, "hash", release, "-o", manifest).exit_code == 0
    assert "manifest.json" not in [f["path"] for f in json.loads(manifest.read_text())["files"]]
    assert invoke(runner, "verify", release, manifest).exit_code == 0


def test_not_a_manifest_is_a_usage_error(runner, release: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"schema_version": "1", "files": 3}')
    result = invoke(runner, "verify", release, bogus)
    assert result.exit_code == 2 and "not a valid manifest" in result.stderr


def test_hash_text_lists_digest_and_path_like_sha256sum(runner, release: Path) -> None:
    result = invoke(runner, "hash", release)
    digest = hashlib.sha256((release / "config.json").read_bytes()).hexdigest()
    assert result.exit_code == 0 and f"{digest}  config.json" in result.stdout
    assert result.stdout.splitlines()[-1].strip().startswith("OK (exit 0)")


def test_load_options_are_accepted(release: Path) -> None:
    target = load_target([str(release)], LoadOptions())
    assert target.complete and sorted(target.by_name) == sorted(_weights())


def test_manifest_and_verify_json_follow_the_published_schema(runner, release: Path, tmp_path: Path) -> None:
    from importlib import resources

    import jsonschema

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/manifest.v1.schema.json").read_text())
    manifest = tmp_path / "manifest.json"
    assert invoke(runner, "hash", release, "-o", manifest).exit_code == 0
    jsonschema.validate(json.loads(manifest.read_text()), schema)
    (release / "config.json").write_text("{}")
    code, report = invoke_json(runner, "verify", release, manifest)
    assert code == 1
    jsonschema.validate(report, schema)
