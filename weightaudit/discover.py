"""Discovery: the paths a user gives become a ``Release``.

Weight files are found by content (each loader's ``sniff``), never by extension alone. Shard maps
(``*.index.json``) and side files (config, model card, licences, code, data cards) are collected for the rules
and the openness scorecard. Git LFS pointers are reported as not downloaded; symlinks that leave the release
are not followed — except that a Hugging Face cache snapshot's links may reach the same repository's ``blobs/``
(``hub_cache``: a repository folder is read as its snapshot; a cache root is a usage error listing its repositories).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from weightaudit import formats, hub_cache
from weightaudit.errors import UsageError
from weightaudit.formats.base import LFS_MAGIC, Probe, folder_size, read_probe
from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import FileStatus, Finding, LoadedFile, Release, ShardIndex, WeightFileRef
from weightaudit.rules import integrity as R
from weightaudit.safe_read import UnsafeDocument, is_regular, load_json, read_text

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", "node_modules", ".venv", ".tox",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache"})
WEIGHT_SUFFIXES = frozenset({
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".hdf5", ".keras", ".pkl", ".pickle", ".joblib",
    ".npy", ".npz", ".pb", ".gguf", ".onnx", ".tflite", ".msgpack", ".model", ".tar", ".mar", ".nemo",
    ".distcp", ".dill", ".index",
})
# (kind, pattern on the lower-case file name). First match wins.
SIDE_FILE_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("config", re.compile(r"^config\.json$")),
    ("audit_policy", re.compile(r"^\.?weightaudit\.ya?ml$")),
    ("model_card", re.compile(r"^(readme|model_card|modelcard)(\.md|\.markdown|\.txt)?$")),
    ("license", re.compile(r"^(licen[cs]e|copying)([._-].*)?$")),
    ("notice", re.compile(r"^notice([._-].*)?$")),
    ("policy", re.compile(r"^(use_policy|acceptable[_-]use[_-]policy|responsible_use)([._-].*)?$")),
    ("data_card", re.compile(r"^(data_?card|datasheet|dataset_card)([._-].*)?$")),
    ("code", re.compile(r".*\.(py|sh|ipynb|yaml|yml|toml|cfg)$")),
)
# Recognised formats we do not read yet: (name, test on the probe). Reported as not verified (WA124).
UNSUPPORTED_FORMATS: tuple[tuple[str, Callable[[Probe], bool]], ...] = (
    ("PyTorch preview archive", lambda p: p.head.startswith(b"PYTORCH1")),
    ("TensorFlow Lite", lambda p: p.head[4:8] == b"TFL3" or p.suffix == ".tflite"),
    ("Core ML", lambda p: p.suffix in (".mlmodel", ".mlpackage") or (p.is_dir and "Manifest.json" in p.entries
                                                                   and p.path.suffix == ".mlpackage")),
)


@dataclass
class _Walk:
    root: Path
    weights: list[WeightFileRef] = field(default_factory=list)
    indexes: list[ShardIndex] = field(default_factory=list)
    side: dict[str, list[str]] = field(default_factory=dict)
    problems: list[LoadedFile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    limits: Limits = DEFAULT_LIMITS
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)   # (device, inode) of every folder read
    link_roots: tuple[Path, ...] = ()   # besides root, where links may lead (a cache snapshot's own blobs/)

    def link_ok(self, path: Path) -> bool:
        return any(_inside(folder, path) for folder in (self.root, *self.link_roots))

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path != self.root else path.name

    def problem(self, rel: str, size: int, rule, message: str, status: FileStatus, fmt: str = "unknown") -> None:
        finding = rule.finding(rel, message)
        self.problems.append(LoadedFile(rel, fmt, size, findings=(finding,), status=status, reason=message,
                                        verified=False))


def discover(paths: Sequence[str], limits: Limits = DEFAULT_LIMITS) -> Release:
    """Turn file or folder paths into one Release (root = their common folder). Raises UsageError when a
    path does not exist, or is a whole Hugging Face cache."""
    if not paths:
        raise UsageError("no path given")
    resolved, hubs = [], []
    for given in paths:
        path = Path(given)
        if not path.exists() and not path.is_symlink():
            raise UsageError(f"{given}: no such file or directory")
        hub = hub_cache.resolve(path)
        if hub is not None:
            hubs.append(hub)
            path = hub.path
        if path.name == "saved_model.pb" and path.is_file():
            path = path.parent  # a SavedModel is its folder: the graph alone is read with its variables
        resolved.append(path.absolute())
    units = {path for path in resolved if path.is_dir() and formats.sniff(read_probe(path)) is not None}
    root = _common_root(resolved, units)
    walk = _Walk(root, limits=limits, link_roots=tuple(sorted({h.blobs for h in hubs})))
    for path in resolved:
        if path in units:
            _claim_folder(walk, path)
        elif path.is_dir():
            _walk_dir(walk, path)
        else:
            _visit_file(walk, path)
    return Release(
        target=" ".join(paths), root=str(root),
        weight_files=tuple(sorted(_dedupe(walk.weights), key=lambda w: w.rel)),
        shard_indexes=tuple(sorted(walk.indexes, key=lambda i: i.rel)),
        side_files={k: tuple(sorted(set(v))) for k, v in sorted(walk.side.items())},
        problems=tuple(sorted(walk.problems, key=lambda p: p.path)),
        findings=tuple(sorted(walk.findings, key=Finding.sort_key)),
        hub=hubs[0].hub if hubs and len({h.hub for h in hubs}) == 1 and len(hubs) == len(paths) else None,
    )


def _dedupe(refs: Iterable[WeightFileRef]) -> list[WeightFileRef]:
    return list({ref.rel: ref for ref in refs}.values())


def _common_root(paths: list[Path], units: set[Path]) -> Path:
    """The folder paths are relative to. A file, or a folder read as one unit (SavedModel), counts from
    its parent, so its own name stays in every relative path."""
    folders = [p if p.is_dir() and p not in units else p.parent for p in paths]
    return Path(os.path.commonpath([str(f) for f in folders]))


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def _walk_dir(walk: _Walk, folder: Path) -> None:
    if folder != walk.root and _claim_folder(walk, folder):
        return
    try:
        walk.seen_dirs.add(_identity(os.stat(folder)))
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        walk.problem(walk.rel(folder), 0, R.UNREADABLE, f"cannot list folder: {exc.strerror}", FileStatus.ERROR)
        return
    for entry in entries:
        _visit_entry(walk, Path(entry.path), entry.name, entry.is_symlink())


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def _visit_entry(walk: _Walk, path: Path, name: str, is_link: bool) -> None:
    """One folder entry: links are checked before anything follows them; every folder is read once; only
    regular files go on to be probed (a FIFO, socket or device is reported, never opened)."""
    rel = walk.rel(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            walk.findings.append(R.SYMLINK_LOOP.finding(rel, "symbolic link loop (the chain of links never ends); "
                                                        "not followed"))
        elif is_link:
            walk.findings.append(R.SYMLINK_OUTSIDE.finding(rel, f"dangling symbolic link to {_link_text(path)}; "
                                                           "not followed"))
        else:
            walk.problem(rel, 0, R.UNREADABLE, f"cannot read: {exc.strerror or exc}", FileStatus.ERROR)
        return
    if is_link and not walk.link_ok(path):
        walk.findings.append(R.SYMLINK_OUTSIDE.finding(
            rel, f"symbolic link to {_link_text(path)} leaves the release; not followed"))
        return
    if stat.S_ISDIR(info.st_mode):
        if name in SKIP_DIRS:
            return
        if _identity(info) in walk.seen_dirs:
            walk.findings.append(R.SYMLINK_LOOP.finding(
                rel, f"link to folder {_link_text(path)}, which the audit already reads; not followed again"))
            return
        _walk_dir(walk, path)
    elif stat.S_ISREG(info.st_mode):
        _visit_file(walk, path)
    else:
        walk.problem(rel, 0, R.UNREADABLE, "not a regular file (FIFO, socket or device); not opened",
                     FileStatus.SKIPPED)


def _link_text(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "(unreadable link)"


def _claim_folder(walk: _Walk, folder: Path) -> bool:
    """A folder a loader reads as a whole (TensorFlow SavedModel)."""
    probe = read_probe(folder)
    loader = formats.sniff(probe)
    if loader is None:
        return _unsupported(walk, probe, walk.rel(folder))
    walk.weights.append(WeightFileRef(str(folder), walk.rel(folder), loader.name, folder_size(folder)))
    return True


def _visit_file(walk: _Walk, path: Path) -> None:
    rel = walk.rel(path)
    if path.is_symlink() and not walk.link_ok(path):
        walk.findings.append(R.SYMLINK_OUTSIDE.finding(rel, "symbolic link leaves the release; not followed"))
        return
    if not is_regular(path):  # a FIFO, socket or device: opening it could block or never end
        walk.problem(rel, 0, R.UNREADABLE, "not a regular file (FIFO, socket or device); not opened",
                     FileStatus.SKIPPED)
        return
    try:
        probe = read_probe(path)
    except OSError as exc:
        walk.problem(rel, 0, R.UNREADABLE, f"cannot read file: {exc.strerror or exc}", FileStatus.ERROR)
        return
    if probe.head.startswith(LFS_MAGIC) and probe.size < 1024:
        walk.problem(rel, probe.size, R.LFS_POINTER, "not downloaded (Git LFS pointer)", FileStatus.SKIPPED)
        return
    loader = formats.sniff(probe)
    if loader is not None:
        walk.weights.append(WeightFileRef(str(path), rel, loader.name, probe.size))
        return
    if path.name.lower().endswith(".index.json"):
        _read_index(walk, path, rel)
        return
    if _unsupported(walk, probe, rel):
        return
    if probe.suffix in WEIGHT_SUFFIXES:
        what = "empty file" if probe.size == 0 else f"content matches no supported weight format ({_describe(probe.head)})"
        walk.problem(rel, probe.size, R.NOT_A_MODEL, f"{probe.suffix} file, but {what}", FileStatus.ERROR)
        return
    walk.side.setdefault(_side_kind(path.name), []).append(rel)


def _unsupported(walk: _Walk, probe: Probe, rel: str) -> bool:
    """Report a recognised format that has no loader yet (not verified); True when one matched."""
    for name, matches in UNSUPPORTED_FORMATS:
        if matches(probe):
            size = folder_size(probe.path) if probe.is_dir else probe.size
            walk.problem(rel, size, R.UNSUPPORTED, f"{name} {'package' if probe.is_dir else 'file'}: format not "
                         "supported yet, not verified", FileStatus.SKIPPED, fmt=name.lower().replace(" ", "-"))
            return True
    return False


def _describe(head: bytes) -> str:
    sample = head[:16]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return f"starts with text {sample.decode('ascii', 'replace')!r}"
    return f"starts with bytes {sample[:8].hex(' ')}"


def _side_kind(name: str) -> str:
    lower = name.lower()
    for kind, pattern in SIDE_FILE_KINDS:
        if pattern.match(lower):
            return kind
    return "other"


def _read_index(walk: _Walk, path: Path, rel: str) -> None:
    try:
        data = load_json(read_text(path, walk.limits.side_file_bytes), walk.limits)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise ValueError("no 'weight_map' object of tensor name -> shard file name")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("'metadata' is not an object")
    except UnsafeDocument as exc:
        walk.findings.append(R.SIDE_FILE_REFUSED.finding(rel, f"shard index {rel} not read: {exc}"))
        walk.side.setdefault("other", []).append(rel)
        return
    except (OSError, ValueError) as exc:
        message = getattr(exc, "msg", None) or getattr(exc, "strerror", None) or str(exc)
        walk.findings.append(R.INDEX_INVALID.finding(rel, f"invalid shard index: {message}"))
        walk.side.setdefault("other", []).append(rel)
        return
    walk.indexes.append(ShardIndex(rel, dict(weight_map), dict(metadata)))
