"""Large releases split per file (load, statistics, merge as separate tasks) give the row an unsplit audit gives:
the same JSON reports as `audit`/`scorecard` of the whole release, on local processes and on Dask, with
release-level findings (cross-file duplicates, shards, the scorecard) judged on the merged whole."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.fleet.fleet_fixtures import LICENSED_CARD, MALICIOUS_PICKLE
from weightaudit import api
from weightaudit.cli import cli
from weightaudit.fleet import work as work_module

MiB = 1 << 20


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    import struct

    header, blobs, offset = {}, [], 0
    for name, values in tensors.items():
        data = values.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(values.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def _index(folder: Path, shards: dict[str, list[str]], base: str) -> None:
    weight_map = {name: shard for shard, names in shards.items() for name in names}
    (folder / f"{base}.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def sharded_with_duplicates(folder: Path) -> Path:
    """Three safetensors shards with an index: a tensor copied byte for byte into another shard (WA306 across
    files), a NaN in the last shard, and two big tensors whose statistics pieces depend on the release's total
    bytes (10 MiB and 14 MiB: measured per file alone they would be cut differently)."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(LICENSED_CARD.format(name=folder.name))
    shared = rng.normal(0, 0.02, (64, 32)).astype("f4")
    nan = rng.normal(0, 0.02, (8, 8)).astype("f4")
    nan[1, 1] = np.nan
    lookalike = rng.normal(0, 1, 256).astype("f4")
    other = lookalike.copy()
    extremes = {int(np.argmin(lookalike)), int(np.argmax(lookalike)), int(np.argmax(np.abs(lookalike)))}
    i = next(k for k in range(100, 110) if not {k, k + 1} & extremes)
    other[[i, i + 1]] = other[[i + 1, i]]   # same signature (facts + first bytes), other bytes: not a duplicate
    shards = {
        "model-00001-of-00003.safetensors": {"embed": shared, "big_a": rng.normal(0, 1, (10 * MiB // 4,)),
                                             "lookalike.a": lookalike},
        "model-00002-of-00003.safetensors": {"big_b": rng.normal(0, 1, (14 * MiB // 4,)),
                                             **{f"small.{i}": rng.normal(0, 0.1, (16, 4)) for i in range(40)}},
        "model-00003-of-00003.safetensors": {"lm_head": shared.copy(), "norm": nan, "lookalike.b": other},
    }
    for name, tensors in shards.items():
        (folder / name).write_bytes(_safetensors(tensors))
    _index(folder, {name: list(tensors) for name, tensors in shards.items()}, "model.safetensors")
    return folder


def pickle_shard_malicious(folder: Path) -> Path:
    """PyTorch shards with an index, the second shard a pickle that would run a shell command if unpickled."""
    torch = pytest.importorskip("torch")
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(LICENSED_CARD.format(name=folder.name))
    torch.save({"encoder.weight": torch.arange(64, dtype=torch.float32).reshape(8, 8)},
               folder / "pytorch_model-00001-of-00002.bin")
    (folder / "pytorch_model-00002-of-00002.bin").write_bytes(MALICIOUS_PICKLE)
    _index(folder, {"pytorch_model-00001-of-00002.bin": ["encoder.weight"],
                    "pytorch_model-00002-of-00002.bin": ["decoder.weight"]}, "pytorch_model.bin")
    return folder


def onnx_external_data(folder: Path) -> Path:
    """An ONNX model whose tensors live in weights.bin (discovery lists it as an unrecognised file; the model's
    part reads its tensors from it, and the merge drops it as the model's data, as the whole audit does), next
    to a safetensors file."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "big"),
             numpy_helper.from_array(np.ones(2, np.float32), "small")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=1024)
    (folder / "extra.safetensors").write_bytes(_safetensors({"w": rng.normal(0, 1, (32, 8))}))
    return folder


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split")
    sharded_with_duplicates(root / "sharded")
    pickle_shard_malicious(root / "pickled")
    onnx_external_data(root / "onnx")
    from tests.fleet.fleet_fixtures import write_release

    write_release(root / "small", "clean", 1)          # one weight file: never split
    return root


def _rows(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    try:
        return {path: (status, reason, code, verdict, json.loads(audit or "null"), json.loads(card or "null"))
                for path, status, reason, code, verdict, audit, card in conn.execute(
                    "SELECT r.path, a.status, a.reason, a.exit_code, a.verdict, a.audit_json, a.scorecard_json "
                    "FROM audits a JOIN releases r ON r.id = a.release_id")}
    finally:
        conn.close()


def _batch_spying(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, dict[str, int]]:
    """Run batch in this process; returns its exit code and how many parts each split release had."""
    split: dict[str, int] = {}
    real = work_module.plan_split

    def spy(task, above):
        job = real(task, above)
        if job is not None:
            split[Path(task.path).name] = len(job.parts)
        return job

    monkeypatch.setattr(work_module, "plan_split", spy)
    result = CliRunner().invoke(cli, ["batch", *args, "-q"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, split


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_split_rows_equal_the_whole_release_audit(releases: Path, tmp_path: Path, engine: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if engine == "dask":
        pytest.importorskip("distributed")
    db = tmp_path / "split.db"
    code, split = _batch_spying(monkeypatch, str(releases), "--db", str(db), "-j", "2", "--engine", engine,
                                "--split-above", "1")
    assert code == 1
    assert split == {"sharded": 3, "pickled": 2, "onnx": 2}
    rows = _rows(db)
    assert len(rows) == 4
    for path, (status, reason, exit_code, verdict, audit_json, card_json) in rows.items():
        whole = api.audit(path, workers=1)
        assert status == "ok", reason
        assert audit_json == whole.to_dict(), Path(path).name
        assert card_json == api.scorecard(path).to_dict(), Path(path).name
        assert (exit_code, verdict) == (int(whole.exit_code), whole.verdict.value)
    findings = {Path(p).name: {f["rule_id"] for f in row[4]["findings"]} for p, row in rows.items()}
    assert "WA306" in findings["sharded"] and findings["sharded"] & {"WA301", "WA302", "WA303"}
    sharded = next(row[4] for path, row in rows.items() if Path(path).name == "sharded")
    duplicates = [f for f in sharded["findings"] if f["rule_id"] == "WA306"]
    assert len(duplicates) == 1 and "lookalike" not in json.dumps(duplicates)
    assert any(rule.startswith("WA4") for rule in findings["pickled"]) and rows_exit(rows, "pickled") == 1
    unsplit = tmp_path / "whole.db"
    code, split = _batch_spying(monkeypatch, str(releases), "--db", str(unsplit), "-j", "2", "--split-above",
                                "never")
    assert (code, split) == (1, {})
    assert {p: r[:5] for p, r in _rows(unsplit).items()} == {p: r[:5] for p, r in rows.items()}


def rows_exit(rows: dict[str, tuple], name: str) -> int:
    return next(row[2] for path, row in rows.items() if Path(path).name == name)


def test_a_failed_stage_fails_the_release_once(releases: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "t.db"
    code, split = _batch_spying(monkeypatch, str(releases / "sharded"), "--db", str(db), "-j", "2",
                                "--split-above", "1", "--timeout", "0.001")
    assert code == 3 and split == {"sharded": 3}
    ((status, reason, *_),) = _rows(db).values()
    assert status == "failed" and reason.startswith("timeout:"), reason
