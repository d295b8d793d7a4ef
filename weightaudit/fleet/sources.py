"""SOURCES -> releases: a release (file or folder), a folder of release folders, a Hugging Face cache root
(each repository's refs/main snapshot, or every snapshot), or a list file with one path per line."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from weightaudit.errors import UsageError

MODEL_CARDS = ("readme.md", "model_card.md", "saved_model.pb")


@dataclass(frozen=True)
class Release:
    """One release to audit: the path handed to the audit, and its Hub revision when it is a cache snapshot."""

    path: str
    repository: str | None = None
    revision: str | None = None


def expand(sources: Iterable[str], from_file: str | None = None, all_revisions: bool = False) -> list[Release]:
    """Every release the SOURCES name, each once (absolute paths), in the order given (sub-folders by name)."""
    given = list(sources) + (_read_list(from_file) if from_file else [])
    if not given:
        raise UsageError("give at least one SOURCE or --from-file LIST")
    out: list[Release] = []
    seen: set[str] = set()
    for source in given:
        for release in _expand_one(Path(source), all_revisions):
            key = os.path.realpath(release.path)
            if key not in seen:
                seen.add(key)
                out.append(replace(release, path=os.path.abspath(release.path)))   # same row from any cwd
    return out


def _read_list(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--from-file {path}: {exc.strerror or exc}") from exc
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _expand_one(path: Path, all_revisions: bool) -> list[Release]:
    from weightaudit import hub_cache

    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_file():
        return [Release(str(path))]
    if hub_cache.is_cache_root(path):
        return [r for repo in hub_cache.scan_root(path) for r in _repo_releases(repo.folder, all_revisions)]
    if _is_repo_folder(path):
        return _repo_releases(path, all_revisions)
    if looks_like_release(path):
        return [Release(str(path))]
    children = sorted((Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)),
                      key=lambda p: p.name)
    releases = [r for child in children if _is_repo_folder(child) or looks_like_release(child)
                for r in _expand_one(child, all_revisions)]
    return releases or [Release(str(path))]      # nothing inside looks like a release: audit it as one


def _is_repo_folder(path: Path) -> bool:
    from weightaudit import hub_cache

    return hub_cache.repository_id(path.name) is not None and (path / "snapshots").is_dir()


def _repo_releases(repo: Path, all_revisions: bool) -> list[Release]:
    """refs/main's snapshot (else the only one); every snapshot with ``all_revisions``."""
    from weightaudit import hub_cache

    name = hub_cache.repository_id(repo.name)[1]   # type: ignore[index]
    snapshots = hub_cache._snapshots(repo)
    if all_revisions:
        chosen = list(snapshots)
    else:
        main = hub_cache._read_ref(repo, "main")
        chosen = [main] if main in snapshots else (list(snapshots) if len(snapshots) == 1 else [])
    if not chosen:     # no snapshot to pick: the audit of the repository folder says why
        return [Release(str(repo), name, None)]
    return [Release(str(repo / "snapshots" / commit), name, commit) for commit in chosen]


def looks_like_release(folder: Path) -> bool:
    """A folder that itself holds weights or a model card."""
    from weightaudit.discover import WEIGHT_SUFFIXES

    try:
        names = [e.name.lower() for e in os.scandir(folder) if not e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    return any(Path(n).suffix in WEIGHT_SUFFIXES or n in MODEL_CARDS for n in names)
