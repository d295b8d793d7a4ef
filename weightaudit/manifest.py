"""``weightaudit hash`` writes a manifest of a release; ``weightaudit verify`` checks a release against one.

Manifest (JSON, schema_version 1)::

    {"schema_version": "1", "tool": {...}, "command": "hash", "target": "...",
     "files":   [{"path": "model.safetensors", "size": 123, "sha256": "..."}],
     "tensors": [{"name": "wte.weight", "file": "model.safetensors", "dtype": "F32", "shape": [50257, 768],
                  "sha256": "..."}],
     "unhashable": ["file: tensor (why)"]}

``files`` lists every file discovery found (weights, shard indexes, side files), with paths relative to the
release root. A tensor's ``sha256`` is tensor_hash.py's: over its dtype, shape and little-endian C-order bytes,
so the same weights hash the same in any container. Everything is streamed (files in 4 MiB reads).

``verify`` recomputes file hashes, and tensor hashes only for weight files whose bytes changed (the same bytes
parse to the same tensors), then names every changed, missing and extra file and tensor. Exit 0 all match, 1
something differs, 3 something could not be checked (nothing differing).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from weightaudit import __version__
from weightaudit.errors import ExitCode, UsageError
from weightaudit.formats.base import LoadOptions
from weightaudit.release_tensors import LoadedTarget, TensorSource, load_target
from weightaudit.safe_read import open_regular

__all__ = ["FileEntry", "TensorEntry", "Manifest", "VerifyReport", "Check", "build_manifest", "read_manifest",
           "verify_manifest", "file_sha256", "READ_CHUNK"]

MANIFEST_SCHEMA_VERSION = "1"
READ_CHUNK = 4 * 1024 * 1024
HASH_THREADS = 8                  # at most; never more than the cores (memory: one READ_CHUNK buffer per thread)
MAX_MANIFEST_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str | None      # None: could not be read (named in the manifest's notes)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    sha256: str | None      # None: unhashable (see tensor_hash.py)

    @property
    def key(self) -> tuple[str, str]:
        return (self.file, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "dtype": self.dtype, "shape": list(self.shape),
                "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    target: str
    files: tuple[FileEntry, ...]
    tensors: tuple[TensorEntry, ...]
    notes: tuple[str, ...] = ()
    command: str = "hash"

    @property
    def complete(self) -> bool:
        return not self.notes

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.complete else ExitCode.INCOMPLETE

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": MANIFEST_SCHEMA_VERSION, "tool": {"name": "weightaudit", "version": __version__},
                "command": self.command, "target": self.target,
                "files": [f.to_dict() for f in self.files], "tensors": [t.to_dict() for t in self.tensors],
                "notes": list(self.notes)}


# ---------------------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------------------


def file_sha256(path: Path, chunk_bytes: int = READ_CHUNK) -> str:
    """sha256 of a regular file, read in fixed chunks through one reused buffer."""
    hasher = hashlib.sha256()
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    with open_regular(path) as handle:
        raw = handle.raw if hasattr(handle, "raw") else handle
        while True:
            got = raw.readinto(view)
            if not got:
                break
            hasher.update(view[:got])
    return hasher.hexdigest()


def _release_files(target: LoadedTarget) -> Iterator[tuple[str, Path]]:
    """(relative path, path on disk) of every file the release holds: weights, indexes, side files."""
    release = target.release
    root = Path(release.root)
    seen: set[str] = set()
    for ref in release.weight_files:
        path = Path(ref.path)
        if path.is_dir():       # a SavedModel: every regular file below it (links not followed)
            for dirpath, _dirs, names in os.walk(path):
                for name in names:
                    full = Path(dirpath) / name
                    yield f"{ref.rel}/{full.relative_to(path).as_posix()}", full
        else:
            yield ref.rel, path
        seen.add(ref.rel)
    others = [i.rel for i in release.shard_indexes] + release.all_side_files()
    others += [p.path for p in release.problems if not (root / p.path).is_symlink()]
    for rel in sorted(set(others) - seen):
        yield rel, root / rel


def _pool() -> ThreadPoolExecutor:
    """hashlib releases the GIL on large updates: files and tensors hash on every core at once."""
    return ThreadPoolExecutor(max_workers=max(2, min(HASH_THREADS, os.cpu_count() or 1)))


def _file_entry(rel: str, path: Path) -> tuple[FileEntry, str | None]:
    try:
        return FileEntry(rel, path.stat().st_size, file_sha256(path)), None
    except OSError as exc:
        return FileEntry(rel, 0, None), f"{rel}: cannot read ({exc.strerror or exc})"


def _file_entries(target: LoadedTarget, skip: Path | None, pool: ThreadPoolExecutor
                  ) -> tuple[list[FileEntry], list[str]]:
    wanted = [(rel, path) for rel, path in _release_files(target) if skip is None or not _same_file(path, skip)]
    done = list(pool.map(lambda item: _file_entry(*item), wanted))
    return sorted((entry for entry, _ in done), key=lambda e: e.path), [note for _, note in done if note]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _tensor_entry(source: TensorSource) -> tuple[TensorEntry, str | None]:
    from weightaudit.tensor_hash import tensor_digest

    tensor = source.tensor
    digest = tensor_digest(source.path, source.fmt, tensor)
    note = None if digest is not None else f"{tensor.file}: tensor {tensor.name!r} ({tensor.dtype}) could not be hashed"
    return TensorEntry(tensor.name, tensor.file, tensor.dtype, tuple(tensor.shape), digest), note


def _tensor_entries(sources: Sequence[TensorSource], pool: ThreadPoolExecutor) -> tuple[list[TensorEntry], list[str]]:
    done = list(pool.map(_tensor_entry, sorted(sources, key=lambda s: -(s.tensor.nbytes or 0))))   # largest first
    return [entry for entry, _ in done], [note for _, note in done if note]


def build_manifest(paths: Sequence[str], options: LoadOptions | None = None, skip: Path | None = None) -> Manifest:
    """Hash every file and every tensor of a target. ``skip``: a file not to list (the manifest being written)."""
    target = load_target(paths, options)
    return _manifest_of(target, skip)


def _manifest_of(target: LoadedTarget, skip: Path | None) -> Manifest:
    with _pool() as pool:
        files_job = pool.submit(_file_entries, target, skip, pool)
        tensors, tensor_notes = _tensor_entries(target.sources, pool)
        files, file_notes = files_job.result()
    notes = list(target.problems) + file_notes + tensor_notes
    return Manifest(target.target, tuple(files), tuple(sorted(tensors, key=lambda t: t.key)), tuple(notes))


def read_manifest(path: Path) -> Manifest:
    """Parse a manifest written by ``hash`` (a usage error when it is not one)."""
    try:
        with open_regular(path) as handle:           # a FIFO or device is refused, never waited on
            data = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise UsageError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES:,} bytes")
        document = json.loads(data)
        if document.get("schema_version") != MANIFEST_SCHEMA_VERSION:
            raise UsageError(f"{path}: not a weightaudit manifest (schema_version "
                             f"{document.get('schema_version')!r}, expected {MANIFEST_SCHEMA_VERSION!r})")
        files = tuple(FileEntry(str(f["path"]), int(f["size"]), f.get("sha256")) for f in document["files"])
        tensors = tuple(TensorEntry(str(t["name"]), str(t.get("file", "")), str(t["dtype"]),
                                    tuple(int(d) for d in t["shape"]), t.get("sha256"))
                        for t in document["tensors"])
    except OSError as exc:
        raise UsageError(f"{path}: cannot read manifest ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UsageError(f"{path}: not a valid manifest ({type(exc).__name__}: {exc})") from exc
    return Manifest(str(document.get("target", "")), files, tensors, tuple(document.get("notes", ())))


# ---------------------------------------------------------------------------------------------------------
# Verifying
# ---------------------------------------------------------------------------------------------------------


class Check(str, enum.Enum):
    OK = "ok"
    CHANGED = "changed"
    MISSING = "missing"       # in the manifest, not in the target
    EXTRA = "extra"           # in the target, not in the manifest
    UNCHECKED = "unchecked"   # could not be read or hashed


@dataclass(frozen=True)
class Mismatch:
    kind: str                 # "file" or "tensor"
    name: str                 # file path, or tensor name
    check: Check
    file: str | None = None   # for tensors: the file holding it
    expected: Mapping[str, Any] | None = None
    actual: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.check.value}
        if self.file is not None:
            out["file"] = self.file
        out["expected"] = dict(self.expected) if self.expected else None
        out["actual"] = dict(self.actual) if self.actual else None
        return out


@dataclass(frozen=True)
class VerifyReport:
    target: str
    manifest: str
    files: tuple[Mismatch, ...]       # every file, ok or not
    tensors: tuple[Mismatch, ...]     # every tensor, ok or not
    notes: tuple[str, ...] = ()
    command: str = "verify"

    def __iter__(self) -> Iterator[Mismatch]:
        return iter(self.problems)

    @property
    def problems(self) -> list[Mismatch]:
        return [m for m in self.files + self.tensors if m.check is not Check.OK]

    @property
    def verdict(self) -> str:
        if any(m.check in (Check.CHANGED, Check.MISSING, Check.EXTRA) for m in self.problems):
            return "mismatch"
        return "incomplete" if self.problems or self.notes else "match"

    @property
    def exit_code(self) -> ExitCode:
        return {"match": ExitCode.OK, "mismatch": ExitCode.FINDINGS}.get(self.verdict, ExitCode.INCOMPLETE)

    def summary(self) -> dict[str, dict[str, int]]:
        def count(items: tuple[Mismatch, ...]) -> dict[str, int]:
            return {c.value: sum(1 for m in items if m.check is c) for c in Check}
        return {"files": count(self.files), "tensors": count(self.tensors)}

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": MANIFEST_SCHEMA_VERSION, "tool": {"name": "weightaudit", "version": __version__},
                "command": self.command, "target": self.target, "manifest": self.manifest,
                "summary": self.summary(), "verdict": self.verdict,
                "files": [m.to_dict() for m in self.files if m.check is not Check.OK],
                "tensors": [m.to_dict() for m in self.tensors if m.check is not Check.OK],
                "notes": list(self.notes)}


def verify_manifest(paths: Sequence[str], manifest_path: Path, options: LoadOptions | None = None) -> VerifyReport:
    expected = read_manifest(manifest_path)
    target = load_target(paths, options)
    with _pool() as pool:
        files, file_notes = _file_entries(target, manifest_path, pool)
        file_checks = _compare_files(expected.files, files)
        changed = {m.name for m in file_checks if m.check in (Check.CHANGED, Check.EXTRA, Check.UNCHECKED)}
        rehash = [s for s in target.sources if s.tensor.file in changed]
        actual_tensors, tensor_notes = _tensor_entries(rehash, pool)
    tensor_checks = _compare_tensors(expected.tensors, actual_tensors, target, changed)
    return VerifyReport(target.target, str(manifest_path), tuple(file_checks), tuple(tensor_checks),
                        tuple(list(target.problems) + file_notes + tensor_notes))


def _compare_files(expected: Sequence[FileEntry], actual: Sequence[FileEntry]) -> list[Mismatch]:
    want = {e.path: e for e in expected}
    have = {e.path: e for e in actual}
    out = []
    for path in sorted(set(want) | set(have)):
        w, h = want.get(path), have.get(path)
        if h is None:
            check = Check.MISSING
        elif w is None:
            check = Check.EXTRA
        elif h.sha256 is None:
            check = Check.UNCHECKED
        else:
            check = Check.OK if (w.size, w.sha256) == (h.size, h.sha256) else Check.CHANGED
        out.append(Mismatch("file", path, check, expected=w.to_dict() if w else None,
                            actual=h.to_dict() if h else None))
    return out


def _compare_tensors(expected: Sequence[TensorEntry], rehashed: Sequence[TensorEntry], target: LoadedTarget,
                     changed_files: set[str]) -> list[Mismatch]:
    """Tensors of unchanged files match by construction; those of changed files are compared by hash."""
    want = {e.key: e for e in expected}
    have = {e.key: e for e in rehashed}
    present = {(s.tensor.file, s.name) for s in target.sources}
    out = []
    for key in sorted(set(want) | present, key=lambda k: (k[0], k[1])):
        w, h = want.get(key), have.get(key)
        if key not in present:
            check = Check.MISSING
        elif w is None:
            check = Check.EXTRA
        elif key[0] not in changed_files:
            check = Check.OK
        elif h is None or h.sha256 is None:
            check = Check.UNCHECKED
        else:
            check = Check.OK if (w.dtype, w.shape, w.sha256) == (h.dtype, h.shape, h.sha256) else Check.CHANGED
        out.append(Mismatch("tensor", key[1], check, file=key[0], expected=w.to_dict() if w else None,
                            actual=h.to_dict() if h else None))
    return out
