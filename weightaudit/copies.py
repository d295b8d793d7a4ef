"""One model in several containers: grouping a release's weight files into *copies*, and comparing them.

A *unit* is one saved model: a shard index and its shards, a set of ``NAME-0000k-of-0000n.EXT`` shards, or one
file. Units in the same folder, of different container families (safetensors, PyTorch ``torch.save``, Keras/HDF5),
whose tensor names agree (after the naming conventions below) on at least ``MIN_OVERLAP`` of the larger set are
copies of one model. The *primary* copy is the one the Hub would load first: safetensors, then PyTorch, then
Keras (``release_tensors.FORMAT_PREFERENCE``). GGUF, ONNX and the rest are not grouped: they are usually
quantized or converted graphs, not the same tensors.

Name conventions (``tensor_key``): TensorFlow's ``:0`` suffix is dropped and ``/`` read as ``.`` (a Keras/HDF5
copy is read with transformers' TF naming instead, ``copies_tf``: ``kernel`` is PyTorch's transposed ``weight``);
a wrapper every name of a unit starts with (``module.`` from DataParallel, ``state_dict.`` of a training
checkpoint, or any one first component all names share) is dropped when that makes the units agree better.

Comparison (``compare``): every tensor of the primary against the same key in each other copy — *missing* on
either side, *reshaped*, *retyped*, and, when tensor bytes are streamed (statistics on: ``audit``, ``inspect
--stats``), *different* in value. Values are compared by the streamed statistics' fingerprints first (equal
fingerprints of contiguous same-dtype tensors are equal bytes) and by the container-independent content hash
(``tensor_hash``) otherwise; a tensor whose bytes cannot be hashed is *unchecked*, never equal.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

from weightaudit.model import Finding, LoadedFile, Release, Role, TensorInfo, TensorStats

__all__ = ["CopyMember", "CopyGroup", "Difference", "find_copies", "compare", "secondary_files", "without_echoes",
           "FAMILIES"]

FAMILIES: Mapping[str, str] = {"safetensors": "safetensors", "pytorch-zip": "pytorch", "pytorch-legacy": "pytorch",
                               "keras-zip": "keras", "hdf5": "keras"}
FAMILY_RANK = {"safetensors": 0, "pytorch": 1, "keras": 2}
MIN_OVERLAP = 0.5
MAX_FUZZY_CHECKS = 256   # name-set comparisons beyond exact matches, per release (a folder of 500 files stays linear)
WRAPPERS = ("module.", "state_dict.", "model_state_dict.", "model_state.")
SHARD_NAME = re.compile(r"^(?P<stem>.+)-\d{5}-of-\d{5}(?P<ext>\.[^.]+)$")


@dataclass(frozen=True)
class CopyMember:
    """One copy: its container family, files, and whether the summary counts it."""

    format: str
    files: tuple[str, ...]
    primary: bool
    tensor_count: int
    parameter_count: int
    strip: str = ""   # the wrapper prefix dropped from this copy's names ("" when none)

    def key(self, name: str) -> str:
        """The name this copy's tensor is matched by across copies."""
        return member_key(self.format, name, self.strip)

    def to_dict(self, group: int) -> dict:
        return {"group": group, "format": self.format, "files": list(self.files), "primary": self.primary,
                "tensor_count": self.tensor_count, "parameter_count": self.parameter_count}


@dataclass(frozen=True)
class CopyGroup:
    members: tuple[CopyMember, ...]   # the primary first

    @property
    def primary(self) -> CopyMember:
        return self.members[0]


@dataclass(frozen=True)
class Difference:
    """One tensor on which a copy disagrees with the primary. ``kind``: missing | extra | reshaped | retyped |
    different | unchecked. ``path`` is the copy file the finding points at."""

    kind: str
    tensor: str
    path: str
    detail: str


@dataclass
class _Unit:
    family: str
    files: list[LoadedFile]
    folder: str
    key_set: frozenset[str] = field(init=False)
    key_hash: int = field(init=False)

    def __post_init__(self) -> None:
        self.key_set = frozenset(member_key(self.family, t.name) for t in self.tensors())
        self.key_hash = hash(self.key_set)

    def tensors(self) -> list[TensorInfo]:
        return [t for f in self.files for t in f.tensors if t.role is Role.PARAMETER]

    def same_names(self, other: "_Unit") -> bool:
        return self.key_hash == other.key_hash and self.key_set == other.key_set


def _folder(path: str) -> str:
    return str(PurePosixPath(path).parent)


def _units(files: Sequence[LoadedFile], release: Release) -> list[_Unit]:
    by_path = {f.path: f for f in files if f.format in FAMILIES and f.tensors}
    units: list[_Unit] = []
    claimed: set[str] = set()
    for index in release.shard_indexes:
        folder = _folder(index.rel)
        prefix = "" if folder == "." else folder + "/"
        shards = sorted({prefix + s for s in index.weight_map.values()} & set(by_path) - claimed)
        families = {FAMILIES[by_path[s].format] for s in shards}
        if shards and len(families) == 1:
            units.append(_Unit(families.pop(), [by_path[s] for s in shards], folder))
            claimed.update(shards)
    sharded: dict[tuple[str, str, str], list[LoadedFile]] = defaultdict(list)
    for path, loaded in sorted(by_path.items()):
        if path in claimed:
            continue
        match = SHARD_NAME.match(PurePosixPath(path).name)
        key = (_folder(path), match.group("stem") + match.group("ext")) if match else (_folder(path), path)
        sharded[(*key, FAMILIES[loaded.format])].append(loaded)
    units += [_Unit(family, members, folder) for (folder, _, family), members in sorted(sharded.items())]
    return units


def tensor_key(name: str, strip: str = "") -> str:
    key = name[:-2] if name.endswith(":0") else name
    key = key.replace("/", ".")
    return key[len(strip):] if strip and key.startswith(strip) else key


def member_key(family: str, name: str, strip: str = "") -> str:
    """tensor_key, with the Hugging Face TF naming read for a Keras/HDF5 copy (``copies_tf.tf_key``)."""
    if family != "keras":
        return tensor_key(name, strip)
    from weightaudit.copies_tf import tf_key

    key = tf_key(name)
    return key[len(strip):] if strip and key.startswith(strip) else key


def _strip_choices(keys: list[str]) -> list[str]:
    """Wrappers every key starts with, "" first."""
    choices = [""]
    if keys:
        first = keys[0].split(".", 1)[0] + "."
        for prefix in (*WRAPPERS, first):
            if prefix not in choices and all(k.startswith(prefix) and len(k) > len(prefix) for k in keys):
                choices.append(prefix)
    return choices


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if prefix and key.startswith(prefix) else key


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(len(a), len(b), 1)


def _best_match(a: _Unit, b: _Unit) -> tuple[float, str, str]:
    """(overlap, strip for a, strip for b) of the best agreement between two units' names."""
    base_a, base_b = sorted(a.key_set), sorted(b.key_set)
    best = (0.0, "", "")
    for strip_a in _strip_choices(base_a):
        keys_a = {_strip(k, strip_a) for k in base_a}
        for strip_b in _strip_choices(base_b):
            score = _overlap(keys_a, {_strip(k, strip_b) for k in base_b})
            if score > best[0]:
                best = (score, strip_a, strip_b)
    return best


_Candidates = list[tuple[_Unit, list[tuple[_Unit, str, str]]]]


def _exact(unit: _Unit, candidates: _Candidates) -> tuple[list, str, str] | None:
    """The first group whose primary has exactly this unit's names (hash first: cheap for many units)."""
    for primary, others in candidates:
        if primary.same_names(unit):
            return others, "", ""
    return None


def _fuzzy(unit: _Unit, candidates: _Candidates, budget: list[int]) -> tuple[list, str, str] | None:
    """Name sets that agree on MIN_OVERLAP after dropping wrappers; at most MAX_FUZZY_CHECKS comparisons."""
    size = len(unit.key_set)
    for primary, others in candidates:
        other = len(primary.key_set)
        if min(size, other) < MIN_OVERLAP * max(size, other) or budget[0] <= 0:
            continue
        budget[0] -= 1
        score, strip_primary, strip_unit = _best_match(primary, unit)
        if score >= MIN_OVERLAP:
            return others, strip_primary, strip_unit
    return None


def _member(unit: _Unit, primary: bool, strip: str) -> CopyMember:
    tensors = unit.tensors()
    return CopyMember(unit.family, tuple(sorted(f.path for f in unit.files)), primary, len(tensors),
                      sum(t.parameter_count for t in tensors), strip)


def find_copies(files: Sequence[LoadedFile], release: Release) -> tuple[CopyGroup, ...]:
    """Groups of two or more units holding the same model in different containers (header data only)."""
    if sum(1 for f in files if f.format in FAMILIES and f.tensors) < 2:
        return ()   # one weight file cannot hold two copies (and its units' name sets cost ~1 µs per tensor)
    units = sorted(_units(files, release), key=lambda u: (FAMILY_RANK[u.family], u.folder, u.files[0].path))
    groups: list[tuple[_Unit, list[tuple[_Unit, str, str]]]] = []
    budget = [MAX_FUZZY_CHECKS]
    for unit in units:
        candidates = [(p, o) for p, o in groups
                      if p.folder == unit.folder and unit.family not in {p.family, *(x[0].family for x in o)}]
        match = _exact(unit, candidates) or _fuzzy(unit, candidates, budget)
        if match is None:
            groups.append((unit, []))
        else:
            match[0].append((unit, match[1], match[2]))
    out = []
    for primary, others in groups:
        if others:
            members = [_member(primary, True, others[0][1])] + [_member(u, False, s) for u, _, s in others]
            out.append(CopyGroup(tuple(members)))
    return tuple(out)


def secondary_files(groups: Iterable[CopyGroup]) -> frozenset[str]:
    """Files of copies the summary does not count (every member but the primary)."""
    return frozenset(path for g in groups for m in g.members[1:] for path in m.files)


# ------------------------------------------------------------------------------------------------ comparison

class Hasher:
    """Content hashes of a release's tensors (``tensor_hash``), as stored or with their axes moved."""

    def __init__(self, release: Release) -> None:
        self._where = {ref.rel: (Path(ref.path), ref.format) for ref in release.weight_files}

    def __call__(self, tensor: TensorInfo) -> str | None:
        from weightaudit.tensor_hash import tensor_digest

        if tensor.file not in self._where:
            return None
        return tensor_digest(*self._where[tensor.file], tensor)

    def moved(self, tensor: TensorInfo, axes: tuple[int, ...]) -> str | None:
        from weightaudit.copies_tf import transposed_digest

        if tensor.file not in self._where:
            return None
        return transposed_digest(*self._where[tensor.file], tensor, axes)


def digest_for(release: Release) -> Hasher:
    return Hasher(release)


def _keyed(files: Sequence[LoadedFile], member: CopyMember) -> dict[str, TensorInfo]:
    wanted = set(member.files)
    return {member.key(t.name): t for f in files if f.path in wanted for t in f.tensors
            if t.role is Role.PARAMETER}


def _contiguous(tensor: TensorInfo) -> bool:
    if tensor.strides is None:
        return True
    step = 1
    for dim, stride in zip(reversed(tensor.shape), reversed(tensor.strides)):
        if dim > 1 and stride != step:
            return False
        step *= max(dim, 1)
    return True


def _same_by_fingerprint(a: TensorInfo, b: TensorInfo, stats: Mapping[tuple[str, str], TensorStats]) -> bool:
    sa, sb = stats.get(a.key), stats.get(b.key)
    return (sa is not None and sb is not None and sa.fingerprint == sb.fingerprint and a.byte_order == b.byte_order
            and _contiguous(a) and _contiguous(b))


def _tied_to_present(tensor: TensorInfo, keyed: Mapping[str, TensorInfo], primary: Mapping[str, TensorInfo]) -> bool:
    if tensor.storage is None:
        return False
    return any(key in primary for key, t in keyed.items()
               if t is not tensor and t.storage == tensor.storage and t.file == tensor.file)


def _axes(member: CopyMember, tensor: TensorInfo, ref: TensorInfo) -> tuple[int, ...] | None:
    """How a TF kernel's axes map onto the primary's (None: stored the same way)."""
    if member.format != "keras":
        return None
    from weightaudit.copies_tf import permutation

    axes = permutation(tensor.name, len(tensor.shape))
    if axes is None or tuple(tensor.shape[i] for i in axes) != ref.shape:
        return None
    return axes


def _header_difference(ref: TensorInfo, other: TensorInfo, path: str, axes: tuple[int, ...] | None = None
                       ) -> Difference | None:
    if axes is None and ref.shape != other.shape:
        return Difference("reshaped", other.name, path, f"shape {list(other.shape)} here, {list(ref.shape)} in "
                          f"{ref.file}")
    if ref.dtype != other.dtype:
        return Difference("retyped", other.name, path, f"dtype {other.dtype} here, {ref.dtype} in {ref.file}")
    return None


def _value_difference(ref: TensorInfo, other: TensorInfo, path: str, digest: Hasher,
                      stats: Mapping[tuple[str, str], TensorStats], axes: tuple[int, ...] | None = None
                      ) -> Difference | None:
    if axes is None and _same_by_fingerprint(ref, other, stats):
        return None
    mine = digest(other) if axes is None else digest.moved(other, axes)
    theirs = digest(ref)
    if mine is None or theirs is None:
        return Difference("unchecked", other.name, path, f"its bytes could not be streamed for comparison with "
                          f"{ref.file}; values not compared")
    if mine != theirs:
        return Difference("different", other.name, path, f"values differ from {ref.name} in {ref.file}")
    return None


def compare(group: CopyGroup, files: Sequence[LoadedFile], digest: Hasher | None,
            stats: Mapping[tuple[str, str], TensorStats] | None = None) -> list[Difference]:
    """Every tensor on which a copy disagrees with the primary. ``digest`` None: header checks only."""
    primary = _keyed(files, group.primary)
    out: list[Difference] = []
    for member in group.members[1:]:
        other = _keyed(files, member)
        anchor = member.files[0]
        for key in sorted(primary.keys() - other.keys()):
            ref = primary[key]
            out.append(Difference("missing", ref.name, anchor, f"{ref.name} of {ref.file} is missing from this "
                                  f"{member.format} copy"))
        for key in sorted(other.keys() - primary.keys()):
            tensor = other[key]
            if _tied_to_present(tensor, other, primary):
                continue   # a declared tie (shared storage) that the safetensors copy stores once
            out.append(Difference("extra", tensor.name, tensor.file, f"{tensor.name} is not in the "
                                  f"{group.primary.format} copy ({', '.join(group.primary.files[:2])})"))
        for key in sorted(primary.keys() & other.keys()):
            ref, tensor = primary[key], other[key]
            axes = _axes(member, tensor, ref)
            found = _header_difference(ref, tensor, tensor.file, axes)
            if found is None and digest is not None:
                found = _value_difference(ref, tensor, tensor.file, digest, stats or {}, axes)
            if found is not None:
                out.append(found)
    return out


def without_echoes(findings: Sequence[Finding], groups: Sequence[CopyGroup]) -> list[Finding]:
    """Drop a numeric finding (WA3xx) on a secondary copy's tensor when the primary copy has a finding of the same
    rule on the same tensor: said once, on the counted copy. A finding only one copy has is always kept (so a NaN
    only in pytorch_model.bin stays, whatever rules are selected)."""
    member_of = {path: (index, member) for index, group in enumerate(groups) for member in group.members
                 for path in member.files}
    if not member_of:
        return list(findings)

    def echo_key(finding: Finding) -> tuple | None:
        if not finding.rule_id.startswith("WA3") or finding.rule_id == "WA306" or not finding.tensor:
            return None
        if finding.path not in member_of:
            return None
        index, member = member_of[finding.path]
        return (index, finding.rule_id, member.key(finding.tensor))

    def on_secondary(finding: Finding) -> bool:
        return finding.path in member_of and not member_of[finding.path][1].primary

    said = {echo_key(f) for f in findings if f.path in member_of and not on_secondary(f)}
    return [f for f in findings if not on_secondary(f) or echo_key(f) is None or echo_key(f) not in said]
