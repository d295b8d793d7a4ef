"""Hugging Face cache layouts, read offline from the folder structure alone (no huggingface_hub import, no network).

A cache root (``~/.cache/huggingface/hub``) holds one folder per repository, ``models--org--name`` (also
``datasets--`` and ``spaces--``), each with::

    blobs/<sha>                    the files' bytes, named by their hash
    refs/<branch or refs/pr/N>     a text file holding the commit hash the branch pointed at
    snapshots/<commit>/<path>      symbolic links into ../../blobs/ (one folder per revision downloaded)

``resolve`` turns a path the user gave into what discovery reads: a repository folder becomes the snapshot of
``--revision`` (a branch name under ``refs/`` or a commit hash), else of ``refs/main``, else the only snapshot;
a snapshot (or a file or folder inside it) stays as given. Either way the snapshot's links may point into the SAME
repository's ``blobs/`` and nowhere else. A cache root is not a release: ``resolve`` raises a UsageError (exit 2)
listing its repositories with their revisions and sizes, so the user picks one (the fleet command audits all).

Every name read from the cache (a ref's content, ``--revision``) must be one plain path component or a
``refs/`` path of plain components: a ref holding ``../../x`` never leads discovery out of the repository.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from weightaudit.errors import UsageError
from weightaudit.model import HubRevision

__all__ = ["HubTarget", "CachedRepo", "resolve", "repo_of", "is_cache_root", "scan_root", "requested_revision",
           "revision", "repository_id", "snapshots", "read_ref", "choose_revision", "REPO_TYPES"]

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_REPO_FOLDER = re.compile(r"^(?P<kind>models|datasets|spaces)--(?P<id>[^/]+)$")
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_REF_BYTES = 256              # a ref file holds one commit hash and a newline
_LISTED_REPOS = 200           # a cache root's listing names at most this many repositories
_MAX_REFS = 1000              # refs read per repository (branches, tags, pull requests)

_REVISION: contextvars.ContextVar[str | None] = contextvars.ContextVar("weightaudit_hub_revision", default=None)


def requested_revision() -> str | None:
    """The ``--revision`` of this run (set by the CLI option or ``with revision(...)``), else None."""
    return _REVISION.get()


@contextlib.contextmanager
def revision(rev: str | None) -> Iterator[None]:
    """Resolve cache repository folders to ``rev`` inside this block (library callers' ``--revision``)."""
    token = _REVISION.set(rev)
    try:
        yield
    finally:
        _REVISION.reset(token)


def set_requested_revision(rev: str | None) -> None:
    """For the CLI: one command per process, so the option's value simply holds for the rest of the run."""
    _REVISION.set(rev)


@dataclass(frozen=True)
class HubTarget:
    """What a given path becomes: the folder or file to read, and the repository whose blobs links may reach."""

    path: Path
    blobs: Path
    hub: HubRevision


@dataclass(frozen=True)
class CachedRepo:
    """One repository of a cache root, for the listing."""

    repository: str
    kind: str
    folder: Path
    refs: dict[str, str]
    snapshots: tuple[str, ...]
    size_bytes: int


def repository_id(folder_name: str) -> tuple[str, str] | None:
    """``models--org--name`` -> ("model", "org/name"); None for any other name."""
    match = _REPO_FOLDER.match(folder_name)
    if match is None:
        return None
    parts = match.group("id").split("--")
    if not all(_COMPONENT.match(p) for p in parts) or len(parts) > 2:
        return None
    return REPO_TYPES[match.group("kind")], "/".join(parts)


def _is_repo_folder(path: Path) -> bool:
    return repository_id(path.name) is not None and (path / "snapshots").is_dir() and not path.is_symlink()


def is_cache_root(path: Path) -> bool:
    """A folder whose entries include repository folders (and that is not one itself)."""
    if not path.is_dir() or _is_repo_folder(path):
        return False
    try:
        return any(_is_repo_folder(Path(e.path)) for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except OSError:
        return False


def repo_of(path: Path) -> tuple[Path, str] | None:
    """The repository folder and commit when ``path`` is a snapshot or lies inside one (``.../snapshots/<rev>/...``)."""
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and i >= 1:
            repo = Path(*parts[:i])
            if _is_repo_folder(repo) and _COMPONENT.match(parts[i + 1]):
                return repo, parts[i + 1]
    return None


def _read_ref(repo: Path, name: str) -> str | None:
    """The commit a ref file names; None when there is no such ref. Refs are regular files of one line."""
    if not all(_COMPONENT.match(p) for p in name.split("/")):
        return None
    path = repo / "refs" / name
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > _REF_BYTES:
        return None
    with open(path, "rb") as handle:
        text = handle.read(_REF_BYTES).decode("ascii", "replace").strip()
    return text if _COMPONENT.match(text) else None


def _refs(repo: Path) -> dict[str, str]:
    """Every ref (``main``, ``refs/pr/1`` -> ``pr/1``) and the commit it names."""
    out: dict[str, str] = {}
    base = repo / "refs"
    seen = 0
    for dirpath, _dirs, files in os.walk(base):   # os.walk does not follow links to folders
        for name in sorted(files):
            seen += 1
            if seen > _MAX_REFS:
                return dict(sorted(out.items()))
            ref = Path(dirpath, name).relative_to(base).as_posix()
            commit = _read_ref(repo, ref)
            if commit is not None:
                out[ref] = commit
    return dict(sorted(out.items()))


def _snapshots(repo: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(e.name for e in os.scandir(repo / "snapshots")
                            if e.is_dir(follow_symlinks=False) and _COMPONENT.match(e.name)))
    except OSError:
        return ()


def _choose(repo: Path, wanted: str | None) -> tuple[str, str | None]:
    """(commit, ref name or None) of the revision to read; UsageError when it cannot be told."""
    snapshots = _snapshots(repo)
    name = repository_id(repo.name)[1]  # type: ignore[index]
    if wanted is not None:
        commit = _read_ref(repo, wanted)
        if commit is not None:
            return commit, wanted
        matches = [s for s in snapshots if s == wanted or (len(wanted) >= 7 and s.startswith(wanted))]
        if len(matches) == 1:
            return matches[0], None
        raise UsageError(f"{repo}: revision {wanted!r} is neither a ref of {name} nor one downloaded snapshot "
                         f"(snapshots: {', '.join(snapshots) or 'none'})")
    commit = _read_ref(repo, "main")
    if commit is not None:
        return commit, "main"
    if len(snapshots) == 1:
        return snapshots[0], None
    if not snapshots:
        raise UsageError(f"{repo}: Hugging Face cache folder of {name} has no downloaded snapshot")
    raise UsageError(f"{repo}: {name} has {len(snapshots)} snapshots and no refs/main; choose one with --revision "
                     f"({', '.join(snapshots)})")


def _target(repo: Path, commit: str, ref: str | None, path: Path | None = None) -> HubTarget:
    kind, name = repository_id(repo.name)  # type: ignore[misc]
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir() or snapshot.is_symlink():
        raise UsageError(f"{repo}: revision {ref or commit} names snapshot {commit}, which is not downloaded")
    return HubTarget(path or snapshot, repo / "blobs", HubRevision(name, commit, ref, kind))


def resolve(path: Path) -> HubTarget | None:
    """A repository folder, a snapshot or a path inside one -> what to read; None for any other path. A cache root
    raises a UsageError with the listing of its repositories."""
    absolute = path.absolute()
    if _is_repo_folder(absolute):
        commit, ref = _choose(absolute, requested_revision())
        return _target(absolute, commit, ref)
    inside = repo_of(absolute)
    if is_cache_root(absolute):
        raise UsageError(cache_listing(absolute))
    wanted = requested_revision()
    if inside is None:
        if wanted is not None:
            raise UsageError(f"{path}: --revision {wanted} applies to a Hugging Face cache repository folder "
                             "(models--org--name), and this is none")
        return None
    repo, commit = inside
    refs = [name for name, target in _refs(repo).items() if target == commit]
    if wanted is not None and wanted not in refs and not (len(wanted) >= 7 and commit.startswith(wanted)):
        raise UsageError(f"{path}: is snapshot {commit}, not revision {wanted}; give the repository folder "
                         f"{repo} to choose a revision")
    return _target(repo, commit, "main" if "main" in refs else (refs[0] if refs else None), absolute)


def snapshots(repo: Path) -> tuple[str, ...]:
    """The commits downloaded for a repository folder (its ``snapshots/`` entries that are plain folder names)."""
    return _snapshots(repo)


def read_ref(repo: Path, name: str) -> str | None:
    """The commit ``refs/<name>`` names; None when there is no such ref or it is not a plain one-line name."""
    return _read_ref(repo, name)


def choose_revision(repo: Path, wanted: str | None = None) -> tuple[str, str | None]:
    """(commit, ref or None) that ``resolve`` reads for a repository folder; UsageError when it cannot be told."""
    return _choose(repo, wanted)


def scan_root(root: Path) -> list[CachedRepo]:
    """The repositories of a cache root, sorted by name (blob sizes from lstat: nothing is opened)."""
    out = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        folder = Path(entry.path)
        ident = repository_id(entry.name)
        if ident is None or not _is_repo_folder(folder):
            continue
        out.append(CachedRepo(ident[1], ident[0], folder, _refs(folder), _snapshots(folder), _blob_bytes(folder)))
    return out


def _blob_bytes(repo: Path) -> int:
    total = 0
    try:
        for entry in os.scandir(repo / "blobs"):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    except OSError:
        pass
    return total


def cache_listing(root: Path) -> str:
    """The usage message for a cache root: what it holds and how to audit one repository."""
    from weightaudit.render.common import human_bytes

    repos = scan_root(root)
    lines = [f"{root} is a Hugging Face cache with {len(repos)} repositories, not one release; give one "
             "repository folder (or a snapshot), e.g. " + str(repos[0].folder if repos else root / "models--org--name")]
    for repo in repos[:_LISTED_REPOS]:
        revisions = ", ".join(f"{ref}={commit[:12]}" for ref, commit in repo.refs.items()) or \
            ", ".join(s[:12] for s in repo.snapshots) or "no snapshot"
        lines.append(f"  {repo.kind} {repo.repository}  {human_bytes(repo.size_bytes)}  {revisions}"
                     f"  ({len(repo.snapshots)} snapshot(s))")
    if len(repos) > _LISTED_REPOS:
        lines.append(f"  … {len(repos) - _LISTED_REPOS} more")
    return "\n".join(lines)
