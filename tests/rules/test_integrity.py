"""Shard-map rules (WA125-WA128) through the pipeline, on copies of the sharded fixture."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from weightaudit.pipeline import RunOptions, run

from tests.conftest import FIXTURES

sys.path.insert(0, str(FIXTURES))
import make_fixtures  # noqa: E402


@pytest.fixture
def sharded(tmp_path: Path) -> Path:
    target = tmp_path / "sharded"
    shutil.copytree(FIXTURES / "sharded", target)
    return target


def _findings(path: Path) -> list[tuple[str, str, str | None]]:
    report = run([str(path)], RunOptions(command="inspect", rule_prefixes=("WA1",)))
    return [(f.rule_id, f.path, f.tensor) for f in report.findings]


def _index(path: Path) -> dict:
    return json.loads((path / "model.safetensors.index.json").read_text())


def _write_index(path: Path, index: dict) -> None:
    (path / "model.safetensors.index.json").write_text(json.dumps(index))


def test_valid_sharded_release_is_clean(sharded: Path) -> None:
    assert _findings(sharded) == []


def test_missing_shard_is_named(sharded: Path) -> None:
    (sharded / "model-00002-of-00003.safetensors").unlink()
    assert _findings(sharded) == [("WA125", "model.safetensors.index.json", None)]


def test_tensor_listed_in_wrong_shard(sharded: Path) -> None:
    index = _index(sharded)
    name = next(n for n, s in index["weight_map"].items() if s.startswith("model-00001"))
    index["weight_map"][name] = "model-00002-of-00003.safetensors"
    _write_index(sharded, index)
    assert sorted(_findings(sharded)) == sorted([
        ("WA126", "model-00002-of-00003.safetensors", name),
        ("WA127", "model-00001-of-00003.safetensors", name),
    ])


def test_tensor_in_two_shards(sharded: Path) -> None:
    shard = sharded / "model-00003-of-00003.safetensors"
    tensors = {"embeddings.word_embeddings.weight": np.zeros((100, 32), np.float32)}
    index = _index(sharded)
    first = index["weight_map"]["embeddings.word_embeddings.weight"]
    extra = sharded / "model-extra.safetensors"
    extra.write_bytes(make_fixtures.encode(tensors, {"format": "pt"}))
    index["weight_map"]["zzz"] = "model-extra.safetensors"
    _write_index(sharded, index)
    found = _findings(sharded)
    assert ("WA128", max(first, "model-extra.safetensors"), "embeddings.word_embeddings.weight") in found \
        or ("WA128", "model-extra.safetensors", "embeddings.word_embeddings.weight") in found
    assert shard.exists()
