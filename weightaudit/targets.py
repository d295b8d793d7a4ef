"""Which targets are separate releases, and when a target is judged as a file rather than as a release.

Used by the Python API (and through it by every command): ``weightaudit audit A B`` gives one report per release
when A and B are separate releases, and a file given alone is judged as that file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def release_groups(paths: Sequence[str]) -> list[tuple[str, ...]]:
    """Paths that are separate releases audit separately: two or more folders, none inside another, each
    holding weights or a model card of its own. Anything else (files, one folder) is one release."""
    folders = [Path(p) for p in paths]
    if len(folders) < 2 or not all(f.is_dir() for f in folders):
        return [tuple(paths)]
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) < len(resolved):       # the same folder twice: one release
        return [tuple(paths)]
    nested = any(a in b.parents for a in resolved for b in resolved)
    if nested or not all(_looks_like_release(f) for f in folders):
        return [tuple(paths)]
    return [(p,) for p in paths]


def _looks_like_release(folder: Path) -> bool:
    from weightaudit.discover import WEIGHT_SUFFIXES
    from weightaudit.hub_cache import repository_id

    if repository_id(folder.name) is not None:     # a Hugging Face cache repository folder: one release each
        return True
    try:
        names = [entry.name.lower() for entry in os.scandir(folder)]
    except OSError:
        return True     # unreadable: its own report says so
    return any(Path(n).suffix in WEIGHT_SUFFIXES or n in ("readme.md", "model_card.md", "saved_model.pb")
               for n in names)


def only_files(paths: Sequence[str]) -> bool:
    """Every target is a file: it is judged as that file, never as its parent folder's release."""
    return all(Path(p).is_file() and Path(p).name != "saved_model.pb" for p in paths)
