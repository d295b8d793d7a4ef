"""Gather what a release folder shows about its openness: a bounded, symlink-safe walk of ``Release.root``.

Never follows a symlink out of the root, never reads more than ``MAX_TEXT_BYTES`` of a text file, stops the walk
after ``MAX_ENTRIES`` entries (the facts then say ``truncated``). Weight files are never opened except for the
first bytes that tell a Git LFS pointer from real content.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from weightaudit.formats.base import LFS_MAGIC
from weightaudit.model import Release
from weightaudit.openness.card import ModelCard, parse_model_card
from weightaudit.openness.licenses import TextMatch, identify_license_text
from weightaudit.safe_read import load_json, open_regular, read_bytes

MAX_TEXT_BYTES = 1 << 20
MAX_ENTRIES = 20_000
MAX_DEPTH = 8
LFS_POINTER_V1 = LFS_MAGIC + b"v1"

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.gguf", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.h5",
                   "*.keras", "*.msgpack", "*.nemo", "*.tflite", "saved_model.pb", "model*.bin")
LICENSE_PATTERNS = ("license", "license.*", "licence", "licence.*", "copying", "copying.*", "license-*",
                    "license_*", "licenses/*")
NOTICE_PATTERNS = ("notice", "notice.*")
POLICY_PATTERNS = ("use_policy*", "acceptable_use*", "responsible_use*")
CARD_NAMES = ("readme.md", "model_card.md", "modelcard.md")
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".cache", "node_modules", ".venv"}


@dataclass(frozen=True)
class TextFile:
    """A side file read as text (capped): its relative path, the licence recognised in it (if any)."""

    rel: str
    text: str
    license: TextMatch | None = None


@dataclass(frozen=True)
class ReleaseFacts:
    """Everything the scorecard reads from a folder. Paths are relative to the release root, '/'-separated."""

    files: tuple[str, ...]
    dirs: tuple[str, ...]
    weight_files: tuple[str, ...]
    lfs_pointers: tuple[str, ...]
    card: ModelCard | None
    license_files: tuple[TextFile, ...]
    notice_files: tuple[TextFile, ...]
    policy_files: tuple[TextFile, ...]
    config: Mapping[str, Any] | None
    config_path: str | None
    adapter_config: Mapping[str, Any] | None
    truncated: bool = False
    root_name: str | None = None
    link_roles: tuple[Any, ...] = ()   # links.LinkRole of every card link (set by the scorecard with the knowledge)
    known_model: Any = None            # (knowledge.KnownModel, the name that matched, where it was read) or None
    knowledge: Any = None              # knowledge.Knowledge used to resolve links and ids

    def matching(self, *patterns: str) -> tuple[str, ...]:
        """Files whose base name matches any pattern (case-insensitive)."""
        out = []
        for rel in self.files:
            base = PurePosixPath(rel).name.lower()
            if any(fnmatch.fnmatch(base, p) for p in patterns):
                out.append(rel)
        return tuple(out)

    def matching_dirs(self, *patterns: str) -> tuple[str, ...]:
        return tuple(d for d in self.dirs if any(fnmatch.fnmatch(PurePosixPath(d).name.lower(), p) for p in patterns))


EMPTY_FACTS = ReleaseFacts((), (), (), (), None, (), (), (), None, None, None)


def _inside(root: Path, path: Path) -> bool:
    """Inside the release, or (a Hugging Face cache snapshot's links) inside its own repository's blobs/."""
    from weightaudit.hub_cache import repo_of

    inside = repo_of(root)
    for folder in (root, *((inside[0] / "blobs",) if inside else ())):
        try:
            path.resolve().relative_to(folder)
            return True
        except (OSError, ValueError, RuntimeError):   # RuntimeError: a symlink loop (pathlib, Python < 3.13)
            continue
    return False


def _walk(root: Path) -> tuple[list[str], list[str], bool]:
    files: list[str] = []
    dirs: list[str] = []
    count = 0
    for current, subdirs, names in os.walk(root, followlinks=False):
        rel_dir = Path(current).relative_to(root)
        depth = len(rel_dir.parts)
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS and not (Path(current) / d).is_symlink()
                            and depth < MAX_DEPTH)
        for d in subdirs:
            dirs.append((rel_dir / d).as_posix())
        for name in sorted(names):
            count += 1
            if count > MAX_ENTRIES:
                return files, dirs, True
            path = Path(current) / name
            if path.is_symlink() and not _inside(root, path):
                continue
            files.append((rel_dir / name).as_posix())
    return files, dirs, False


def read_text(root: Path, rel: str, limit: int = MAX_TEXT_BYTES) -> str | None:
    """At most ``limit`` bytes of a file as text (UTF-8, bad bytes replaced); None if unreadable or outside."""
    path = root / rel
    if not _inside(root, path):
        return None
    try:
        data = read_bytes(path, limit, truncate=True)   # regular files only: a FIFO would block forever
    except OSError:
        return None
    return data.decode("utf-8", errors="replace")


def _is_lfs_pointer(root: Path, rel: str) -> bool:
    try:
        with open_regular(root / rel) as handle:
            return handle.read(len(LFS_POINTER_V1)) == LFS_POINTER_V1
    except OSError:
        return False


def _json(root: Path, rel: str | None) -> Mapping[str, Any] | None:
    if rel is None:
        return None
    text = read_text(root, rel)
    if text is None:
        return None
    try:
        loaded = load_json(text)
    except ValueError:   # invalid, too deep, huge integers: no config evidence (discovery reports the file)
        return None
    return loaded if isinstance(loaded, dict) else None


def _top_level(files: list[str], names: tuple[str, ...]) -> str | None:
    for rel in files:
        if "/" not in rel and rel.lower() in names:
            return rel
    return None


def _text_files(root: Path, rels: list[str]) -> tuple[TextFile, ...]:
    out = []
    for rel in rels:
        text = read_text(root, rel)
        if text is not None:
            out.append(TextFile(rel, text, identify_license_text(text)))
    return tuple(out)


def _select(files: list[str], patterns: tuple[str, ...], top_only: bool = True) -> list[str]:
    picked = []
    for rel in files:
        lowered = rel.lower()
        if top_only and "/" in lowered and not lowered.startswith("licenses/"):
            continue
        if any(fnmatch.fnmatch(lowered, p) for p in patterns):
            picked.append(rel)
    return picked


def collect(release: Release) -> ReleaseFacts:
    """Read a release's side files (bounded) into ``ReleaseFacts``."""
    root = Path(release.root).resolve()
    if not root.is_dir():
        return EMPTY_FACTS
    files, dirs, truncated = _walk(root)
    known_weights = {ref.rel for ref in release.weight_files}
    candidates = sorted(known_weights | {rel for rel in files if any(
        fnmatch.fnmatch(PurePosixPath(rel).name.lower(), p) for p in WEIGHT_PATTERNS)})
    lfs = tuple(rel for rel in candidates if _is_lfs_pointer(root, rel))
    weights = tuple(rel for rel in candidates if rel not in lfs and (root / rel).exists())
    # Only the release root's README.md / MODEL_CARD.md is the model card: data/README.md describes a dataset.
    side_cards = [rel for rel in release.side("model_card") if "/" not in rel and rel.lower() in CARD_NAMES]
    card_rel = next(iter(side_cards), None) or _top_level(files, CARD_NAMES)
    card_text = read_text(root, card_rel) if card_rel else None
    card = parse_model_card(card_text, card_rel) if card_text is not None and card_rel else None
    license_rels = sorted(set(release.side("license")) | set(_select(files, LICENSE_PATTERNS)))
    notice_rels = sorted(set(release.side("notice")) | set(_select(files, NOTICE_PATTERNS)))
    policy_rels = sorted(set(release.side("policy")) | set(_select(files, POLICY_PATTERNS)))
    config_rel = "config.json" if "config.json" in files else None
    adapter_rel = "adapter_config.json" if "adapter_config.json" in files else None
    return ReleaseFacts(
        files=tuple(files),
        dirs=tuple(dirs),
        weight_files=weights,
        lfs_pointers=lfs,
        card=card,
        license_files=_text_files(root, license_rels),
        notice_files=_text_files(root, notice_rels),
        policy_files=_text_files(root, policy_rels),
        config=_json(root, config_rel),
        config_path=config_rel,
        adapter_config=_json(root, adapter_rel),
        truncated=truncated,
        root_name=release.hub.repository if release.hub is not None else root.name,
    )


def script_files(facts: ReleaseFacts, words: tuple[str, ...]) -> tuple[str, ...]:
    """Code files (.py/.sh/.ipynb/...) whose name starts with, or whose folder is named after, one of ``words``."""
    code_ext = (".py", ".sh", ".ipynb", ".jl", ".rs", ".cpp", ".c", ".lua", ".js", ".ts")
    out = []
    for rel in facts.files:
        lowered = rel.lower()
        if not lowered.endswith(code_ext):
            continue
        parts = PurePosixPath(lowered).parts
        base = parts[-1]
        stem_words = re.split(r"[_\-.]", base)
        if any(base.startswith(w) or w in stem_words for w in words) or any(p in words for p in parts[:-1]):
            out.append(rel)
    return tuple(out)
