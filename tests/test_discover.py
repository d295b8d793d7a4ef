"""Discovery: content sniffing, side files, shard maps, LFS pointers, symlinks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from weightaudit.discover import discover
from weightaudit.errors import UsageError
from weightaudit.model import FileStatus

from tests.conftest import FIXTURES

sys.path.insert(0, str(FIXTURES))
import make_fixtures  # noqa: E402


def test_folder_release_has_weights_and_side_files() -> None:
    release = discover([str(FIXTURES / "tiny-bert")])
    assert [(w.rel, w.format) for w in release.weight_files] == [("model.safetensors", "safetensors")]
    assert release.side("config") == ("config.json",)
    assert release.side("model_card") == ("README.md",)
    assert release.side("license") == ("LICENSE",)


def test_single_file_release() -> None:
    release = discover([str(FIXTURES / "tiny-bert" / "model.safetensors")])
    assert [w.rel for w in release.weight_files] == ["model.safetensors"]
    assert release.side_files == {}


def test_shard_index_is_read() -> None:
    release = discover([str(FIXTURES / "sharded")])
    assert len(release.weight_files) == 3
    (index,) = release.shard_indexes
    assert index.rel == "model.safetensors.index.json"
    assert set(index.weight_map.values()) == {w.rel for w in release.weight_files}


def test_lfs_pointer_is_not_downloaded_not_corrupt() -> None:
    release = discover([str(FIXTURES / "lfs")])
    (problem,) = release.problems
    assert problem.status is FileStatus.SKIPPED and not problem.verified
    assert problem.reason == "not downloaded (Git LFS pointer)"
    assert [f.rule_id for f in problem.findings] == ["WA120"]


def test_symlink_leaving_the_release_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(make_fixtures.encode({"a": np.zeros(2, np.float32)}, {"format": "pt"}))
    release_dir = tmp_path / "release"
    release_dir.mkdir()
    (release_dir / "model.safetensors").symlink_to(outside)
    inside = release_dir / "real.safetensors"
    inside.write_bytes(outside.read_bytes())
    (release_dir / "alias.safetensors").symlink_to(inside)
    release = discover([str(release_dir)])
    assert [w.rel for w in release.weight_files] == ["alias.safetensors", "real.safetensors"]
    assert [(f.rule_id, f.path) for f in release.findings] == [("WA121", "model.safetensors")]


def test_unknown_content_with_weight_extension_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_text("this is not a model at all\n")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "notes.md").write_text("# notes")
    release = discover([str(tmp_path)])
    problems = {p.path: p for p in release.problems}
    assert problems["model.pt"].status is FileStatus.ERROR
    assert [f.rule_id for f in problems["model.pt"].findings] == ["WA122"]
    assert "starts with text" in problems["model.pt"].reason
    assert release.side("other") == ("notes.md",)
    assert [w.rel for w in release.weight_files] == ["empty.safetensors"]   # claimed, parser reports WA101


def test_invalid_index_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    release = discover([str(tmp_path)])
    assert [f.rule_id for f in release.findings] == ["WA129"]
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": 3}}))
    assert [f.rule_id for f in discover([str(tmp_path)]).findings] == ["WA129"]


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        discover([str(tmp_path / "nope")])


def test_gguf_is_read_by_the_gguf_loader(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 32)
    release = discover([str(tmp_path)])
    assert release.problems == ()
    assert [(w.rel, w.format) for w in release.weight_files] == [("m.gguf", "gguf")]


def test_hidden_vcs_folders_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.safetensors").write_bytes(b"junk")
    assert discover([str(tmp_path)]).problems == ()


def test_other_model_formats_are_unsupported_not_corrupt(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\0" * 32)
    package = tmp_path / "m.mlpackage"
    (package / "Data" / "com.apple.CoreML" / "weights").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(b"\x15\0\0\0\x02\0\0\0")
    problems = {p.path: p for p in discover([str(tmp_path)]).problems}
    assert set(problems) == {"m.tflite", "m.mlpackage"}
    for problem in problems.values():
        assert problem.status is FileStatus.SKIPPED and [f.rule_id for f in problem.findings] == ["WA124"]


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    (problem,) = discover([str(fifo)]).problems
    assert problem.reason == "not a regular file (FIFO, socket or device); not opened" and not problem.verified


def test_saved_model_pb_given_alone_means_its_folder() -> None:
    graph = FIXTURES / "keras_tf" / "sm_module" / "saved_model.pb"
    release = discover([str(graph)])
    assert [(w.rel, w.format) for w in release.weight_files] == [("sm_module", "tf-savedmodel")]
