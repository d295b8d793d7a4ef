"""The tensors of a target (a file, a folder, several paths): discovered and parsed exactly as ``audit`` does,
without rules or statistics. ``diff``, ``hash`` and ``verify`` start here.

Every loaded tensor is kept with the file it came from (``sources``); ``by_name`` holds one tensor per name, the
copy in the preferred container when a release holds the same model twice (safetensors first, as the Hub does).
Files that could not be read or fully checked are named in ``problems``: a comparison that skipped them is
incomplete, never clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from weightaudit.formats.base import LoadOptions
from weightaudit.model import FileStatus, LoadedFile, Release, TensorInfo

__all__ = ["TensorSource", "LoadedTarget", "load_target", "FORMAT_PREFERENCE"]

# Which copy of a tensor name represents the model when several containers hold it (lower wins).
FORMAT_PREFERENCE: Mapping[str, int] = {"safetensors": 0, "gguf": 1, "pytorch-zip": 2, "pytorch-legacy": 3,
                                         "keras-zip": 4, "hdf5": 4}


@dataclass(frozen=True)
class TensorSource:
    """A tensor and where to stream its bytes from."""

    tensor: TensorInfo
    path: Path        # the file on disk
    fmt: str          # its loader's name (formats.iter_tensor_chunks)

    @property
    def name(self) -> str:
        return self.tensor.name


@dataclass(frozen=True)
class LoadedTarget:
    target: str
    release: Release
    files: tuple[LoadedFile, ...]
    sources: tuple[TensorSource, ...]                 # every tensor of every file, by (file, name)
    by_name: Mapping[str, TensorSource] = field(default_factory=dict)
    problems: tuple[str, ...] = ()                    # "path: reason" for files not fully read

    @property
    def shadowed(self) -> dict[str, int]:
        """Files holding tensors whose name another (preferred) copy represents: file -> how many."""
        counts: dict[str, int] = {}
        for source in self.sources:
            chosen = self.by_name.get(source.name)
            if chosen is not None and chosen is not source:
                counts[source.tensor.file] = counts.get(source.tensor.file, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def copy_notes(self) -> tuple[str, ...]:
        return tuple(f"{path}: {n} tensor(s) also held by another file of this release (its copy, preferred "
                     "by format, is the one compared)" for path, n in self.shadowed.items())

    @property
    def complete(self) -> bool:
        return not self.problems and bool(self.files)

    def summary(self) -> dict:
        """What the JSON of diff/verify says about one side."""
        return {"target": self.target, "root": self.release.root,
                "files": [{"path": f.path, "format": f.format, "size_bytes": f.size_bytes, "verified": f.verified}
                          for f in self.files],
                "tensor_count": len(self.by_name),
                "parameter_count": sum(s.tensor.parameter_count for s in self.by_name.values()),
                "complete": self.complete}


def load_target(paths: Sequence[str], options: LoadOptions | None = None) -> LoadedTarget:
    """Discover and load the weight files of ``paths`` (no rules, no statistics)."""
    from weightaudit.discover import discover
    from weightaudit.pipeline import load_file

    options = options or LoadOptions()
    release = discover(list(paths), options.limits)
    sources: list[TensorSource] = []
    loaded: list[LoadedFile] = []
    for ref in release.weight_files:
        lf = load_file(Path(ref.path), ref.rel, ref.format, options)
        loaded.append(lf)
        sources += [TensorSource(t, Path(ref.path), ref.format) for t in lf.tensors]
    files = tuple(sorted(loaded + list(release.problems), key=lambda f: f.path))
    problems = tuple(f"{f.path}: {f.reason or f.status.value}" for f in files
                     if f.status is not FileStatus.OK or not f.verified)
    if not release.weight_files:
        problems += (f"no weight files found in {release.target}",)
    sources.sort(key=lambda s: (s.tensor.file, s.name))
    return LoadedTarget(target=release.target, release=release, files=files, sources=tuple(sources),
                        by_name=_preferred(sources), problems=problems)


def _preferred(sources: list[TensorSource]) -> dict[str, TensorSource]:
    """One tensor per name: the preferred container's copy, then the first file by path."""
    ranked = sorted(sources, key=lambda s: (FORMAT_PREFERENCE.get(s.fmt, 9), s.tensor.file))
    out: dict[str, TensorSource] = {}
    for source in ranked:
        out.setdefault(source.name, source)
    return dict(sorted(out.items()))
