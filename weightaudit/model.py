"""The data model shared by every layer: frozen dataclasses, named as huggingface_hub/safetensors name them.

Nothing here does I/O. Loaders build these records, rules read them, renderers print them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping


class Severity(enum.IntEnum):
    """Ordered severities: ``info < low < medium < high < critical``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None


class Role(str, enum.Enum):
    """What a tensor is for: model parameters (and buffers) or optimizer state."""

    PARAMETER = "parameter"
    OPTIMIZER = "optimizer"


# dtype code -> size of one element in bits. Codes follow safetensors' Rust `Dtype` enum.
DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
    # Not in safetensors but produced by other formats (torch complex128, TF strings/variants, quantized).
    "C128": 128, "C32": 32, "QI8": 8, "QU8": 8, "QI32": 32, "STRING": 0, "OBJECT": 0,
}


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements of a tensor with this shape (1 for a scalar)."""
    return math.prod(shape) if shape else 1


def dtype_nbytes(dtype: str, count: int) -> int | None:
    """Bytes taken by ``count`` elements of ``dtype``; None when unknown or not a whole number of bytes."""
    bits = DTYPE_BITS.get(dtype)
    if bits is None or bits == 0:
        return None
    total = bits * count
    return total // 8 if total % 8 == 0 else None


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a loader found it.

    ``data_offsets`` is the absolute byte range ``[begin, end)`` of the tensor's raw bytes in ``file`` when
    they lie there contiguously and uncompressed (safetensors, torch zip records, contiguous HDF5 datasets,
    TF bundle entries); None when they do not (compressed chunks, strided views, string tensors).
    ``storage`` names the storage a tensor shares with others (torch tied weights); None otherwise.
    ``byte_order`` is "little" or "big".
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    data_offsets: tuple[int, int] | None = None
    role: Role = Role.PARAMETER
    storage: str | None = None
    strides: tuple[int, ...] | None = None
    byte_order: str = "little"

    @property
    def parameter_count(self) -> int:
        return element_count(self.shape)

    @property
    def nbytes(self) -> int | None:
        if self.data_offsets is not None:
            return self.data_offsets[1] - self.data_offsets[0]
        return dtype_nbytes(self.dtype, self.parameter_count)

    @property
    def key(self) -> tuple[str, str]:
        """Identifies a tensor within a release: (relative file path, tensor name)."""
        return (self.file, self.name)


@dataclass(frozen=True)
class Finding:
    """One thing a rule found. ``path`` is relative to the audited target; ``tensor`` may be None.

    ``where`` locates the finding inside the file when that helps (e.g. ``"data.pkl byte 120 (REDUCE)"``).
    """

    rule_id: str
    severity: Severity
    path: str
    message: str
    tensor: str | None = None
    where: str | None = None

    @property
    def fingerprint(self) -> str:
        """Stable identity for baselines: rule + relative path + tensor name (never offsets or values)."""
        import hashlib   # OpenSSL is initialised when a report has findings, not at every start-up

        raw = "\x00".join((self.rule_id, self.path, self.tensor or ""))
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]

    def sort_key(self) -> tuple[Any, ...]:
        return (self.path, self.rule_id, self.tensor or "", -self.severity, self.message)


class FileStatus(str, enum.Enum):
    OK = "ok"          # read and fully checked
    SKIPPED = "skipped"  # deliberately not read (LFS pointer, unsupported format) — not verified
    ERROR = "error"      # could not be read or checked — not verified


@dataclass(frozen=True)
class LoadedFile:
    """What a loader made of one weight file.

    ``facts`` carries format-specific observations that rules read (safetensors ``__metadata__``, pickle
    globals and calls, Keras layers, SavedModel ops...). Keys are documented by each loader.
    ``findings`` are the problems the loader itself saw while parsing (WA1xx integrity, WA4xx code).
    ``verified`` is False when part of the file could not be checked: the audit is then incomplete.
    """

    path: str
    format: str
    size_bytes: int
    tensors: tuple[TensorInfo, ...] = ()
    findings: tuple[Finding, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    status: FileStatus = FileStatus.OK
    reason: str | None = None
    verified: bool = True

    @property
    def parameter_count(self) -> int:
        return sum(t.parameter_count for t in self.tensors)


@dataclass(frozen=True)
class TensorStats:
    """Streaming statistics of one tensor (see stats.py). Float fields are None when not defined."""

    count: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    zeros: int
    nan: int
    pos_inf: int
    neg_inf: int
    fp16_overflow: int
    max_abs: float | None
    max_abs_index: int | None
    fingerprint: str
    histogram: tuple[int, ...] = ()
    histogram_range: tuple[float, float] | None = None

    @property
    def inf(self) -> int:
        return self.pos_inf + self.neg_inf


@dataclass(frozen=True)
class WeightFileRef:
    """A weight file (or SavedModel folder) that discovery found, with the loader that claimed it."""

    path: str          # absolute path on disk
    rel: str           # path relative to the release root, with forward slashes
    format: str        # the registered loader name (see formats/__init__.py)
    size_bytes: int


@dataclass(frozen=True)
class ShardIndex:
    """A ``*.index.json`` shard map: ``weight_map`` tensor name -> shard file (relative to the index)."""

    rel: str
    weight_map: Mapping[str, str]
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class HubRevision:
    """Where a release read from a Hugging Face cache comes from: ``org/name``, the commit of the snapshot, and
    the ref (branch) that named it when one did (None for a snapshot chosen by its commit)."""

    repository: str
    revision: str
    ref: str | None = None
    kind: str = "model"   # model | dataset | space

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "revision": self.revision, "ref": self.ref, "kind": self.kind}


@dataclass(frozen=True)
class Release:
    """What discovery made of the paths given: weight files, shard maps and side files.

    ``side_files`` maps a kind (``config``, ``model_card``, ``license``, ``notice``, ``code``, ``data_card``,
    ``policy``, ``other``) to relative paths. ``problems`` are files discovery could not take further
    (LFS pointers, symlinks leaving the release, unreadable files, unknown content with a weight extension).
    """

    target: str
    root: str
    weight_files: tuple[WeightFileRef, ...]
    shard_indexes: tuple[ShardIndex, ...] = ()
    side_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[LoadedFile, ...] = ()
    findings: tuple[Finding, ...] = ()
    hub: HubRevision | None = None   # set when the release is a Hugging Face cache snapshot

    def side(self, kind: str) -> tuple[str, ...]:
        return tuple(self.side_files.get(kind, ()))

    def all_side_files(self) -> list[str]:
        """Every side file of every kind, sorted."""
        return sorted({rel for paths in self.side_files.values() for rel in paths})
