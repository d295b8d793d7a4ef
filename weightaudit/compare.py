"""``weightaudit diff A B``: what changed between two files or releases, in any formats.

Tensors are matched by name (one per name and side: the preferred container's copy, see release_tensors). Each
gets one status: ``identical`` (same dtype, shape and little-endian C-order bytes), ``changed`` (same dtype and
shape, other values), ``retyped`` (dtype differs), ``reshaped`` (shape differs), ``removed`` (only in A),
``added`` (only in B), ``renamed`` (only in B, with the content hash of a tensor only in A), or ``unchecked``
(its bytes could not be streamed: the diff is then incomplete, exit 3, never "same").

Values are compared streamed, block by block, with flat memory: both sides are cut into blocks of the same
element count, compared byte for byte first (identical tensors cost a memcmp), and only a tensor whose bytes
differ is decoded to float64 (the statistics engine's decoders) for max |a-b|, relative L2 ``||a-b|| / ||a||``
and cosine similarity. A retyped tensor of the same shape is compared by value too, so a lossy conversion
(F32 -> BF16) shows how lossy it was; ``--tolerance`` accepts differences within given bounds.

Exit codes (like ``diff``): 0 nothing differs, 1 something differs, 3 something could not be compared.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from weightaudit import __version__
from weightaudit.errors import ExitCode, UsageError
from weightaudit.formats.base import LoadOptions
from weightaudit.model import DTYPE_BITS, TensorInfo, element_count
from weightaudit.release_tensors import LoadedTarget, TensorSource, load_target

__all__ = ["Status", "Tolerance", "ValueDiff", "TensorDiff", "DiffReport", "diff_targets", "layer_of",
           "STATUSES", "BLOCK_ELEMENTS"]

BLOCK_ELEMENTS = 1 << 18          # elements per compared block (2 MiB of float64 per side when decoded)
DIFF_SCHEMA_VERSION = "1"


class Status(str, enum.Enum):
    IDENTICAL = "identical"
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"
    RENAMED = "renamed"
    RETYPED = "retyped"
    RESHAPED = "reshaped"
    UNCHECKED = "unchecked"


STATUSES = tuple(s.value for s in Status if s is not Status.UNCHECKED)   # the summary's keys, in order


@dataclass(frozen=True)
class Tolerance:
    """Accepted differences: ``absolute`` bounds max |a-b|, ``relative`` bounds ||a-b|| / ||a||."""

    absolute: float | None = None
    relative: float | None = None

    @property
    def given(self) -> bool:
        return self.absolute is not None or self.relative is not None

    @classmethod
    def parse(cls, text: str | None) -> "Tolerance":
        """``1e-3`` or ``abs=1e-3`` (absolute), ``rel=1e-2`` or ``1%`` (relative), comma-separated."""
        if not text:
            return cls()
        absolute = relative = None
        for part in (p.strip() for p in text.split(",") if p.strip()):
            key, _, value = part.rpartition("=")
            try:
                if value.endswith("%"):
                    key, number = key or "rel", float(value[:-1]) / 100
                else:
                    number = float(value)
            except ValueError:
                raise UsageError(f"--tolerance {text!r}: {part!r} is not a number") from None
            if not number >= 0:
                raise UsageError(f"--tolerance {text!r}: {part!r} must be a non-negative number")
            if key in ("", "abs", "absolute"):
                absolute = number
            elif key in ("rel", "relative"):
                relative = number
            else:
                raise UsageError(f"--tolerance {text!r}: {key!r} is neither abs nor rel")
        return cls(absolute, relative)

    def accepts(self, values: "ValueDiff | None") -> bool:
        if values is None or values.max_abs_diff is None or not self.given:
            return False
        if self.absolute is not None and not values.max_abs_diff <= self.absolute:
            return False
        return self.relative is None or (values.rel_l2 is not None and values.rel_l2 <= self.relative)

    def to_dict(self) -> dict[str, float | None]:
        return {"absolute": self.absolute, "relative": self.relative}


@dataclass(frozen=True)
class ValueDiff:
    """Element-wise comparison of two tensors with the same element count."""

    max_abs_diff: float | None
    rel_l2: float | None
    cosine: float | None
    differing_elements: int
    nonfinite_mismatches: int    # positions where one side is NaN/Inf and the other is not the same


@dataclass(frozen=True)
class TensorDiff:
    name: str
    status: Status
    a: TensorInfo | None = None
    b: TensorInfo | None = None
    values: ValueDiff | None = None
    renamed_from: str | None = None
    within_tolerance: bool = False
    note: str | None = None

    @property
    def differs(self) -> bool:
        """Counts against the exit code: anything but identical, unless accepted by --tolerance."""
        return self.status not in (Status.IDENTICAL, Status.UNCHECKED) and not self.within_tolerance

    def to_dict(self, with_tolerance: bool) -> dict[str, Any]:
        from weightaudit.report import _finite

        values = self.values
        out: dict[str, Any] = {
            "name": self.name, "status": self.status.value,
            "max_abs_diff": _finite(values.max_abs_diff) if values else None,
            "rel_l2": _finite(values.rel_l2) if values else None,
            "cosine": _finite(values.cosine) if values else None,
        }
        for side, info in (("a", self.a), ("b", self.b)):
            if info is not None:
                out[side] = {"file": info.file, "dtype": info.dtype, "shape": list(info.shape)}
        if values is not None:
            out["differing_elements"] = values.differing_elements
            out["nonfinite_mismatches"] = values.nonfinite_mismatches
        if self.renamed_from is not None:
            out["renamed_from"] = self.renamed_from
        if with_tolerance:
            out["within_tolerance"] = self.within_tolerance
        if self.note:
            out["note"] = self.note
        return out


class DiffVerdict(str, enum.Enum):
    SAME = "same"
    DIFFERENT = "different"
    INCOMPLETE = "incomplete"

    @property
    def exit_code(self) -> ExitCode:
        return {DiffVerdict.SAME: ExitCode.OK, DiffVerdict.DIFFERENT: ExitCode.FINDINGS,
                DiffVerdict.INCOMPLETE: ExitCode.INCOMPLETE}[self]


@dataclass(frozen=True)
class DiffReport:
    a: LoadedTarget
    b: LoadedTarget
    tensors: tuple[TensorDiff, ...]
    tolerance: Tolerance = field(default_factory=Tolerance)
    command: str = "diff"

    def __iter__(self) -> Iterator[TensorDiff]:
        return iter(self.tensors)

    @property
    def problems(self) -> tuple[str, ...]:
        """What could not be compared (the diff is incomplete when there is any)."""
        problems = [f"A: {p}" for p in self.a.problems] + [f"B: {p}" for p in self.b.problems]
        problems += [f"{t.name}: {t.note}" for t in self.tensors if t.status is Status.UNCHECKED]
        return tuple(problems)

    @property
    def notes(self) -> tuple[str, ...]:
        copies = [f"A: {n}" for n in self.a.copy_notes] + [f"B: {n}" for n in self.b.copy_notes]
        return self.problems + tuple(copies)

    @property
    def complete(self) -> bool:
        return self.a.complete and self.b.complete and not any(t.status is Status.UNCHECKED for t in self.tensors)

    @property
    def differing(self) -> list[TensorDiff]:
        return [t for t in self.tensors if t.differs]

    @property
    def verdict(self) -> DiffVerdict:
        if self.differing:
            return DiffVerdict.DIFFERENT
        return DiffVerdict.SAME if self.complete else DiffVerdict.INCOMPLETE

    @property
    def exit_code(self) -> ExitCode:
        return self.verdict.exit_code

    def summary(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES}
        for t in self.tensors:
            if t.status is not Status.UNCHECKED:
                counts[t.status.value] += 1
        return counts

    def layers(self) -> list[dict[str, Any]]:
        """Which layers changed (what a fine-tune touched): per layer with any non-identical tensor."""
        groups: dict[str, list[TensorDiff]] = {}
        for t in self.tensors:
            groups.setdefault(layer_of(t.name), []).append(t)
        out = []
        for layer in sorted(groups, key=_natural_key):
            members = groups[layer]
            touched = [t for t in members if t.status is not Status.IDENTICAL]
            if touched:
                statuses: dict[str, int] = {}
                for t in touched:
                    statuses[t.status.value] = statuses.get(t.status.value, 0) + 1
                out.append({"layer": layer, "tensors": len(members), "touched": len(touched), "statuses": statuses})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": DIFF_SCHEMA_VERSION,
            "tool": {"name": "weightaudit", "version": __version__},
            "command": self.command,
            "a": self.a.summary(), "b": self.b.summary(),
            "summary": self.summary(),
            "verdict": self.verdict.value,
            "tolerance": self.tolerance.to_dict() if self.tolerance.given else None,
            "layers": self.layers(),
            "tensors": [t.to_dict(self.tolerance.given) for t in self.tensors],
            "notes": list(self.notes),
        }


_DIGIT = re.compile(r"(\d+)")


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in _DIGIT.split(name)]


def layer_of(name: str) -> str:
    """``model.layers.3.mlp.up_proj.weight`` -> ``model.layers.3``; without a layer index, the name up to its
    last dotted component (``embeddings.word_embeddings.weight`` -> ``embeddings.word_embeddings``)."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[:i + 1])
    return ".".join(parts[:-1]) or name


# ---------------------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------------------


def diff_targets(a: Sequence[str] | str, b: Sequence[str] | str, tolerance: Tolerance | None = None,
                 options: LoadOptions | None = None, progress: Any = None) -> DiffReport:
    """Compare two targets (a path or a sequence of paths each). ``progress``: anything with ``phase(text)``,
    ``start(total_bytes)`` and ``advance(n_bytes)`` (the CLI's progress bar), told after each tensor."""
    side_a = load_target([a] if isinstance(a, str) else list(a), options)
    side_b = load_target([b] if isinstance(b, str) else list(b), options)
    return compare_loaded(side_a, side_b, tolerance or Tolerance(), progress)


def compare_loaded(a: LoadedTarget, b: LoadedTarget, tolerance: Tolerance, progress: Any = None) -> DiffReport:
    common = sorted(set(a.by_name) & set(b.by_name))
    if progress is not None:
        total = sum((a.by_name[n].tensor.nbytes or 0) + (b.by_name[n].tensor.nbytes or 0) for n in common)
        progress.phase(f"comparing {len(common)} tensor(s) found on both sides")
        progress.start(total)
    out: list[TensorDiff] = []
    for name in common:
        out.append(_compare_pair(name, a.by_name[name], b.by_name[name], tolerance))
        if progress is not None:
            progress.advance((a.by_name[name].tensor.nbytes or 0) + (b.by_name[name].tensor.nbytes or 0))
    removed = [a.by_name[n] for n in sorted(set(a.by_name) - set(b.by_name))]
    added = [b.by_name[n] for n in sorted(set(b.by_name) - set(a.by_name))]
    out += _match_renames(removed, added)
    return DiffReport(a, b, tuple(sorted(out, key=lambda t: _natural_key(t.name))), tolerance)


def _compare_pair(name: str, a: TensorSource, b: TensorSource, tolerance: Tolerance) -> TensorDiff:
    ta, tb = a.tensor, b.tensor
    if tuple(ta.shape) != tuple(tb.shape):
        note = None if ta.parameter_count == tb.parameter_count else "element counts differ"
        return TensorDiff(name, Status.RESHAPED, ta, tb, note=note)
    try:
        if _canonical(ta.dtype) == _canonical(tb.dtype):
            if _same_bytes(a, b):
                return TensorDiff(name, Status.IDENTICAL, ta, tb, values=ValueDiff(0.0, 0.0, 1.0, 0, 0))
            values = compare_values(a, b)
            return TensorDiff(name, Status.CHANGED, ta, tb, values=values, within_tolerance=tolerance.accepts(values),
                              note=None if values is not None else f"values of dtype {ta.dtype} are not decoded")
        values = compare_values(a, b)
        return TensorDiff(name, Status.RETYPED, ta, tb, values=values, within_tolerance=tolerance.accepts(values))
    except (OSError, ValueError, KeyError, MemoryError) as exc:
        return TensorDiff(name, Status.UNCHECKED, ta, tb, note=f"could not be compared: {exc}")


def _match_renames(removed: list[TensorSource], added: list[TensorSource]) -> list[TensorDiff]:
    """A tensor only in B with the content hash of one only in A is that tensor renamed. Only candidates with the
    same dtype and shape are hashed, each at most once."""
    from weightaudit.tensor_hash import tensor_digest

    by_signature: dict[tuple[str, tuple[int, ...]], list[TensorSource]] = {}
    for source in added:
        by_signature.setdefault(_signature(source.tensor), []).append(source)
    digests: dict[int, str | None] = {}

    def digest(source: TensorSource) -> str | None:
        if id(source) not in digests:
            digests[id(source)] = tensor_digest(source.path, source.fmt, source.tensor)
        return digests[id(source)]

    renamed_to: dict[str, str] = {}
    for old in removed:
        candidates = [c for c in by_signature.get(_signature(old.tensor), ()) if c.name not in renamed_to]
        if not candidates or digest(old) is None:
            continue
        match = next((c for c in candidates if digest(c) == digest(old)), None)
        if match is not None:
            renamed_to[match.name] = old.name
    gone = set(renamed_to.values())
    out = [TensorDiff(s.name, Status.REMOVED, a=s.tensor) for s in removed if s.name not in gone]
    for source in added:
        if source.name in renamed_to:
            old_name = renamed_to[source.name]
            old = next(s for s in removed if s.name == old_name)
            out.append(TensorDiff(source.name, Status.RENAMED, a=old.tensor, b=source.tensor, renamed_from=old_name,
                                  values=ValueDiff(0.0, 0.0, 1.0, 0, 0)))
        else:
            out.append(TensorDiff(source.name, Status.ADDED, b=source.tensor))
    return out


def _signature(tensor: TensorInfo) -> tuple[str, tuple[int, ...]]:
    return (_canonical(tensor.dtype), tuple(tensor.shape))


def _canonical(dtype: str) -> str:
    from weightaudit.tensor_hash import canonical_dtype

    return canonical_dtype(dtype)


# ---------------------------------------------------------------------------------------------------------
# Streaming both sides in step
# ---------------------------------------------------------------------------------------------------------


def _itemsize(dtype: str) -> int:
    bits = DTYPE_BITS.get(_canonical(dtype))
    if not bits or bits % 8:
        raise ValueError(f"dtype {dtype} has no whole number of bytes per element")
    return bits // 8


def _blocks(source: TensorSource, elements: int = BLOCK_ELEMENTS) -> Iterator[memoryview]:
    """The tensor's C-order little-endian bytes in blocks of ``elements`` elements (the last may be shorter).
    Raises ValueError when the stream is not exactly the tensor's size."""
    from weightaudit.formats import iter_tensor_chunks
    from weightaudit.stats import _reblock
    from weightaudit.tensor_hash import _little_endian, _streams_c_order, _swap_unit

    tensor = source.tensor
    itemsize = _itemsize(tensor.dtype)
    if not _streams_c_order(source.path, tensor):
        raise ValueError("a strided view whose loader streams raw storage")
    chunks: Iterator[memoryview] = iter_tensor_chunks(source.path, source.fmt, tensor)
    unit = _swap_unit(tensor.dtype, itemsize)
    if tensor.byte_order == "big" and unit > 1:
        chunks = _little_endian(chunks, unit)
    expected, seen = element_count(tensor.shape) * itemsize, 0
    for block in _reblock(chunks, elements * itemsize):
        seen += len(block)
        if seen > expected:
            break
        yield block
    if seen != expected:
        raise ValueError(f"{tensor.file}: tensor {tensor.name!r} streamed {seen} bytes, expected {expected}")


def _paired(a: TensorSource, b: TensorSource) -> Iterator[tuple[memoryview, memoryview]]:
    """Blocks of both sides covering the same elements."""
    left, right = _blocks(a), _blocks(b)
    for block_a in left:
        block_b = next(right, None)
        if block_b is None:
            raise ValueError(f"{b.tensor.file}: tensor {b.name!r} ended early")
        yield block_a, block_b
    if next(right, None) is not None:
        raise ValueError(f"{b.tensor.file}: tensor {b.name!r} is longer than {a.name!r}")


def _same_bytes(a: TensorSource, b: TensorSource) -> bool:
    return all(_equal(x, y) for x, y in _paired(a, b))


def _equal(x: memoryview, y: memoryview) -> bool:
    """Byte equality without copies (memoryview ``==`` compares element by element in Python: 40x slower)."""
    import numpy as np

    if len(x) != len(y):
        return False
    if len(x) % 8:
        return bytes(x) == bytes(y)
    return bool(np.array_equal(np.frombuffer(x, np.uint64), np.frombuffer(y, np.uint64)))


def compare_values(a: TensorSource, b: TensorSource) -> ValueDiff | None:
    """max |a-b|, ||a-b|| / ||a|| and cosine over float64 decodings; None when a dtype is not decodable."""
    from weightaudit.compare_values import Accumulator, decodable, decode_block, work_dtype

    dtype_a, dtype_b = a.tensor.dtype, b.tensor.dtype
    if not (decodable(dtype_a) and decodable(dtype_b)):
        return None
    work = work_dtype(dtype_a, dtype_b)
    in_order = dtype_a != dtype_b       # the same decoder on both sides: its lane order lines up already
    acc = Accumulator()
    for x, y in _paired(a, b):
        acc.add(decode_block(x, dtype_a, work, in_order), decode_block(y, dtype_b, work, in_order))
    return acc.result()
