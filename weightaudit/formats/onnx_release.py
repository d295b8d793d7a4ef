"""ONNX external-data files belong to their model: an ``.onnx.data`` (or ``weights.bin``) file holds raw tensor
bytes that the ONNX loader already read and checked, so it is not a weight file of its own.

Discovery cannot know that before the models are parsed, so it may report such a file as unrecognised content
with a weight-file name (WA122) or hand it to the raw-pickle loader, which fails on it. After loading, a file
that a verified-or-not ONNX model names as external data is taken out of the release's weight files and
problems — but only when no loader could read it as a format of its own (a real pickle or checkpoint named as
external data stays in the audit: pointing external data at ``pytorch_model.bin`` must not hide that file).
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

from weightaudit.model import FileStatus, LoadedFile, Release

ONNX_FORMAT = "onnx"
FALLBACK_FORMATS = frozenset({"pickle"})   # loaders that claim by fuzzy content, not by a format's magic


def external_data_paths(loaded: tuple[LoadedFile, ...]) -> frozenset[str]:
    """Release-relative paths of every external data file the ONNX models read."""
    paths: set[str] = set()
    for model in loaded:
        if model.format != ONNX_FORMAT:
            continue
        folder = posixpath.dirname(model.path)
        for name in model.facts.get("external_data_files", ()):
            paths.add(posixpath.normpath(posixpath.join(folder, name)))
    return frozenset(paths)


def _not_a_format(file: LoadedFile) -> bool:
    return file.status is not FileStatus.OK and file.format in FALLBACK_FORMATS


def absorb_external_data(loaded: tuple[LoadedFile, ...], release: Release) -> tuple[tuple[LoadedFile, ...], Release]:
    """Drop the external data files of ONNX models from ``loaded`` and ``release`` (see the module doc)."""
    data = external_data_paths(loaded)
    if not data:
        return loaded, release
    dropped = {f.path for f in loaded if f.path in data and _not_a_format(f)}
    problems = tuple(p for p in release.problems if p.path not in data or p.status is FileStatus.SKIPPED)
    weight_files = tuple(w for w in release.weight_files if w.rel not in dropped)
    kept = tuple(f for f in loaded if f.path not in dropped)
    return kept, replace(release, weight_files=weight_files, problems=problems)
