"""Hugging Face cache layouts: a repository folder and a snapshot read exactly like the plain release folder;
links may reach the same repository's blobs and nothing else; a cache root is a usage error listing its repos."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.conftest import invoke, invoke_json
from weightaudit import hub_cache
from weightaudit.discover import discover
from weightaudit.errors import UsageError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def make_release(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    save_file({"model.embed_tokens.weight": rng.standard_normal((64, 16)).astype(np.float32),
               "model.layers.0.mlp.weight": rng.standard_normal((16, 16)).astype(np.float32)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 64, "hidden_size": 16,
                                                    "num_hidden_layers": 1}))
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    return folder


def cache_from(release: Path, root: Path, repo_id: str = "org/tiny", commit: str = COMMIT,
               refs: dict[str, str] | None = None) -> Path:
    """Lay ``release`` out as huggingface_hub does: blobs by hash, snapshot links ../../blobs/<hash>, refs."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    for source in sorted(p for p in release.rglob("*") if p.is_file()):
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(source, blob)
        link = snapshot / source.relative_to(release)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for name, target in (refs if refs is not None else {"main": commit}).items():
        (repo / "refs" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / name).write_text(target)
    return repo


def inventory(path: Path) -> tuple:
    release = discover([str(path)])
    return ([(w.rel, w.format, w.size_bytes) for w in release.weight_files], dict(release.side_files),
            [(f.rule_id, f.path) for f in release.findings], [p.path for p in release.problems])


@pytest.fixture
def cached(tmp_path: Path) -> tuple[Path, Path]:
    plain = make_release(tmp_path / "plain")
    return plain, cache_from(plain, tmp_path / "hub")


def test_snapshot_and_repo_folder_read_like_the_plain_folder(cached: tuple[Path, Path]) -> None:
    plain, repo = cached
    expected = inventory(plain)
    assert expected[0] and not expected[2]
    assert inventory(repo) == expected                              # no blobs counted next to the links
    assert inventory(repo / "snapshots" / COMMIT) == expected


def test_revision_is_named(cached: tuple[Path, Path]) -> None:
    _, repo = cached
    for path, ref in ((repo, "main"), (repo / "snapshots" / COMMIT, "main"),
                      (repo / "snapshots" / COMMIT / "model.safetensors", "main")):
        hub = discover([str(path)]).hub
        assert hub is not None and (hub.repository, hub.revision, hub.ref) == ("org/tiny", COMMIT, ref)


def test_plain_folder_has_no_hub_revision(cached: tuple[Path, Path]) -> None:
    assert discover([str(cached[0])]).hub is None


def test_only_snapshot_without_refs(tmp_path: Path) -> None:
    repo = cache_from(make_release(tmp_path / "p"), tmp_path / "hub", refs={})
    hub = discover([str(repo)]).hub
    assert hub is not None and (hub.revision, hub.ref) == (COMMIT, None)


def test_revision_option_picks_a_branch_or_commit(tmp_path: Path) -> None:
    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub", refs={"main": COMMIT})
    other = make_release(tmp_path / "p2")
    (other / "extra.safetensors").write_bytes((plain / "model.safetensors").read_bytes())
    cache_from(other, tmp_path / "hub", commit=OTHER, refs={"dev": OTHER, "pr/1": OTHER})
    with hub_cache.revision("dev"):
        release = discover([str(repo)])
    assert (release.hub.revision, release.hub.ref) == (OTHER, "dev")
    assert [w.rel for w in release.weight_files] == ["extra.safetensors", "model.safetensors"]
    with hub_cache.revision("pr/1"):
        assert discover([str(repo)]).hub.ref == "pr/1"
    with hub_cache.revision(COMMIT[:10]):
        assert discover([str(repo)]).hub.revision == COMMIT
    with hub_cache.revision("nope"), pytest.raises(UsageError, match="neither a ref"):
        discover([str(repo)])


def test_several_snapshots_without_main_is_a_usage_error(tmp_path: Path) -> None:
    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub", refs={})
    cache_from(plain, tmp_path / "hub", commit=OTHER, refs={})
    with pytest.raises(UsageError, match="--revision"):
        discover([str(repo)])


def test_ref_that_climbs_out_is_not_followed(tmp_path: Path) -> None:
    """refs/main holding ../../.. must not make the snapshot folder anything but snapshots/<plain name>."""
    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub", refs={"main": "../../../p"})
    hub = discover([str(repo)]).hub        # refs/main unusable: the only snapshot is read
    assert hub.revision == COMMIT and hub.ref is None
    with hub_cache.revision("../../../p"), pytest.raises(UsageError):
        discover([str(repo)])


def test_link_to_another_repositorys_blobs_leaves_the_release(tmp_path: Path) -> None:
    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub")
    other = cache_from(plain, tmp_path / "hub", repo_id="evil/other")
    snapshot = repo / "snapshots" / COMMIT
    blob = next((other / "blobs").iterdir())
    (snapshot / "stolen.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    (snapshot / "outside.safetensors").symlink_to(plain / "model.safetensors")
    release = discover([str(repo)])
    outside = sorted(f.path for f in release.findings if f.rule_id == "WA121")
    assert outside == ["outside.safetensors", "stolen.safetensors"]
    assert "stolen.safetensors" not in [w.rel for w in release.weight_files]


def test_link_loop_in_a_snapshot_is_reported_once(tmp_path: Path) -> None:
    repo = cache_from(make_release(tmp_path / "p"), tmp_path / "hub")
    snapshot = repo / "snapshots" / COMMIT
    (snapshot / "a").symlink_to("b")
    (snapshot / "b").symlink_to("a")
    (snapshot / "sub").mkdir()
    (snapshot / "sub" / "up").symlink_to("..")
    release = discover([str(repo)])
    loops = sorted(f.path for f in release.findings if f.rule_id == "WA134")
    assert loops == ["a", "b", "sub/up"]


def test_blob_that_is_not_a_regular_file_is_not_opened(tmp_path: Path) -> None:
    repo = cache_from(make_release(tmp_path / "p"), tmp_path / "hub")
    os.mkfifo(repo / "blobs" / "fifo")
    (repo / "snapshots" / COMMIT / "pipe.bin").symlink_to("../../blobs/fifo")
    release = discover([str(repo)])
    assert [(p.path, p.status.value) for p in release.problems] == [("pipe.bin", "skipped")]


def test_cache_root_is_a_usage_error_listing_repositories(tmp_path: Path, runner) -> None:
    plain = make_release(tmp_path / "p")
    cache_from(plain, tmp_path / "hub")
    cache_from(plain, tmp_path / "hub", repo_id="gpt2", commit=OTHER)
    with pytest.raises(UsageError) as raised:
        discover([str(tmp_path / "hub")])
    message = str(raised.value)
    assert "Hugging Face cache with 2 repositories" in message
    assert "model org/tiny" in message and f"main={COMMIT[:12]}" in message and "model gpt2" in message
    result = invoke(runner, "inspect", tmp_path / "hub")
    assert result.exit_code == 2 and "2 repositories" in result.stderr


def test_listing_agrees_with_huggingface_hub(tmp_path: Path) -> None:
    """Differential: huggingface_hub's own offline scanner sees the same repositories, refs and sizes."""
    scan_cache_dir = pytest.importorskip("huggingface_hub").scan_cache_dir
    plain = make_release(tmp_path / "p")
    cache_from(plain, tmp_path / "hub")
    cache_from(plain, tmp_path / "hub", repo_id="gpt2", commit=OTHER, refs={"main": OTHER, "v1": OTHER})
    ours = {(r.repository, tuple(sorted(r.refs.items())), r.snapshots, r.size_bytes)
            for r in hub_cache.scan_root(tmp_path / "hub")}
    theirs = {(r.repo_id, tuple(sorted((ref, rev.commit_hash) for rev in r.revisions for ref in rev.refs)),
               tuple(sorted(rev.commit_hash for rev in r.revisions)), r.size_on_disk)
              for r in scan_cache_dir(tmp_path / "hub").repos}
    assert ours == theirs


def test_cli_report_names_repository_and_revision(cached: tuple[Path, Path], runner) -> None:
    plain, repo = cached
    code, doc = invoke_json(runner, "inspect", repo)
    plain_code, plain_doc = invoke_json(runner, "inspect", plain)
    assert code == plain_code == 0
    assert doc["release"] == {"repository": "org/tiny", "revision": COMMIT, "ref": "main", "kind": "model"}
    assert "release" not in plain_doc
    assert doc["summary"]["parameter_count"] == plain_doc["summary"]["parameter_count"]
    validate(doc)
    text = invoke(runner, "inspect", repo).stdout
    assert "org/tiny" in text and COMMIT[:12] in text


def test_cli_revision_option(tmp_path: Path, runner) -> None:
    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub", refs={"main": COMMIT, "dev": OTHER})
    cache_from(plain, tmp_path / "hub", commit=OTHER, refs={})
    for command in ("inspect", "audit"):
        code, doc = invoke_json(runner, command, repo, "--revision", "dev")
        assert doc["release"]["revision"] == OTHER and doc["release"]["ref"] == "dev"


def validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_two_repository_folders_are_two_releases(tmp_path: Path, runner) -> None:
    plain = make_release(tmp_path / "p")
    first = cache_from(plain, tmp_path / "hub")
    second = cache_from(plain, tmp_path / "hub", repo_id="other/model", commit=OTHER)
    code, doc = invoke_json(runner, "inspect", first, second)
    assert code == 0
    assert [r["release"]["repository"] for r in doc["reports"]] == ["org/tiny", "other/model"]


def test_scorecard_of_a_cache_folder_reads_the_linked_side_files(cached: tuple[Path, Path], runner) -> None:
    plain, repo = cached
    text = invoke(runner, "scorecard", repo).stdout
    assert "no release folder or model card" not in text and "Licence: none found" not in text
    assert invoke(runner, "scorecard", plain).stdout.splitlines()[1] == text.splitlines()[1]   # same headline


def test_revision_outside_a_cache_or_against_another_snapshot_is_a_usage_error(cached: tuple[Path, Path],
                                                                                runner) -> None:
    plain, repo = cached
    result = invoke(runner, "inspect", plain, "--revision", "main")
    assert result.exit_code == 2 and "applies to a Hugging Face cache repository folder" in result.stderr
    snapshot = repo / "snapshots" / COMMIT
    assert invoke(runner, "inspect", snapshot, "--revision", "main").exit_code == 0
    assert invoke(runner, "inspect", snapshot, "--revision", COMMIT[:8]).exit_code == 0
    other = invoke(runner, "inspect", snapshot, "--revision", "dev")
    assert other.exit_code == 2 and "not revision dev" in other.stderr


def test_python_api_revision(tmp_path: Path) -> None:
    import weightaudit
    from weightaudit.hub_cache import revision

    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub", refs={"main": COMMIT, "dev": OTHER})
    cache_from(plain, tmp_path / "hub", commit=OTHER, refs={})
    with revision("dev"):
        report = weightaudit.audit(repo)
    assert report.to_dict()["release"]["ref"] == "dev" and int(report.exit_code) == 0
    assert weightaudit.inspect(repo).release.hub.ref == "main"       # outside the block: refs/main again


def test_markdown_names_the_repository(cached: tuple[Path, Path], runner) -> None:
    markdown = invoke(runner, "inspect", cached[1], "--format", "markdown").stdout
    assert f"| Repository | org/tiny @ main ({COMMIT}) |" in markdown


def test_public_helpers_for_the_fleet(tmp_path: Path) -> None:
    plain = make_release(tmp_path / "p")
    repo = cache_from(plain, tmp_path / "hub", refs={"main": COMMIT, "dev": OTHER})
    cache_from(plain, tmp_path / "hub", commit=OTHER, refs={})
    assert hub_cache.snapshots(repo) == (COMMIT, OTHER)
    assert hub_cache.read_ref(repo, "dev") == OTHER and hub_cache.read_ref(repo, "../x") is None
    assert hub_cache.choose_revision(repo) == (COMMIT, "main")
    assert hub_cache.choose_revision(repo, OTHER[:9]) == (OTHER, None)
    assert hub_cache.repository_id("models--org--tiny") == ("model", "org/tiny")
    assert hub_cache.repository_id("models--a--b--c") is None and hub_cache.repository_id("models--..") is None
