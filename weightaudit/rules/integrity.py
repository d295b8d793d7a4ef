"""WA101–WA139: integrity of safetensors headers, discovery and shard maps.

Header rules are raised by the safetensors loader while it parses; shard-map rules run over the release.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

from weightaudit.model import Finding, Severity
from weightaudit.rules import register, rule_family
from weightaudit.rules.base import AuditContext, Rule

_FORMAT_HELP = (
    "The safetensors format (huggingface/safetensors README and tensor.rs) requires: an 8-byte little-endian "
    "header length N <= 100,000,000; N+8 within the file; a UTF-8 JSON object header; each tensor with a known "
    "dtype, a shape of non-negative integers and data_offsets [begin, end] with end-begin == prod(shape)*itemsize; "
    "offsets that, sorted, start at 0 and follow each other with no hole or overlap; and a data section that ends "
    "exactly at the end of the file. A file that breaks these is refused by the reference loader or, worse, read "
    "differently by different loaders."
)


_header_rule = rule_family(
    ("integrity", "safetensors"),
    f"\n\n{_FORMAT_HELP}\n\nWhat to do: re-export the file with the reference writer "
    "(safetensors.torch.save_file) from a trusted copy of the weights.")


FILE_TOO_SMALL = _header_rule(
    "WA101", "header-too-small", "The file is shorter than the 8-byte header length.", Severity.HIGH,
    "An empty or tiny file cannot hold a safetensors header; it is usually an interrupted download.")
HEADER_TOO_LARGE = _header_rule(
    "WA102", "header-too-large", "The declared header length exceeds 100 MB.", Severity.HIGH,
    "The reference loader refuses headers over 100,000,000 bytes (MAX_HEADER_SIZE); a huge declared length "
    "is a way to make a naive reader allocate unbounded memory.", cwe=770)
HEADER_OUT_OF_BOUNDS = _header_rule(
    "WA103", "header-out-of-bounds", "The header extends past the end of the file.", Severity.HIGH,
    "8 + N is larger than the file: the file is truncated or the length field is corrupt.")
HEADER_NOT_UTF8 = _header_rule(
    "WA104", "header-not-utf8", "The header is not valid UTF-8.", Severity.HIGH,
    "The JSON header must be UTF-8.")
HEADER_INVALID_JSON = _header_rule(
    "WA105", "header-invalid-json", "The header is not a valid JSON object of tensor entries.", Severity.HIGH,
    "The header must be a JSON object mapping tensor names to {dtype, shape, data_offsets} objects "
    "(plus an optional __metadata__ object).")
DUPLICATE_KEY = _header_rule(
    "WA106", "duplicate-key", "A key appears twice in the header JSON.", Severity.HIGH,
    "The format disallows duplicate keys, but common JSON parsers (serde, Python's json) silently keep the "
    "last value. Two readers can therefore see different tensors in the same file: a parser differential an "
    "attacker can use to show a reviewer one model and a loader another.", cwe=436)
UNKNOWN_DTYPE = _header_rule(
    "WA107", "unknown-dtype", "A tensor has a dtype the format does not define.", Severity.HIGH,
    "Known dtypes: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, "
    "I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64.")
INVALID_SHAPE = _header_rule(
    "WA108", "invalid-shape", "A tensor's shape is not a list of non-negative integers.", Severity.HIGH,
    "Shapes are lists of non-negative integers; a negative or non-integer dimension has no meaning.")
SIZE_MISMATCH = _header_rule(
    "WA109", "size-mismatch", "A tensor's byte range does not match its dtype and shape.", Severity.HIGH,
    "end - begin must equal prod(shape) * itemsize exactly (computed without overflow; sub-byte dtypes must "
    "fill whole bytes). A mismatch means the loader reads the wrong bytes or refuses the file.")
INVALID_OFFSETS = _header_rule(
    "WA110", "invalid-offsets", "A tensor's data_offsets are not two integers with begin <= end.", Severity.HIGH,
    "data_offsets must be [begin, end] with 0 <= begin <= end, relative to the start of the data section.")
OFFSET_HOLE = _header_rule(
    "WA111", "offset-hole", "Unused bytes lie between tensors in the data section.", Severity.HIGH,
    "Sorted by offset, each tensor must start where the previous one ends (the first at 0). Hidden bytes in a "
    "hole can smuggle data past reviewers; the reference loader refuses the file.")
OFFSET_OVERLAP = _header_rule(
    "WA112", "offset-overlap", "Two tensors share bytes in the data section.", Severity.HIGH,
    "Overlapping tensors alias each other's bytes; the reference loader refuses the file.")
TRAILING_BYTES = _header_rule(
    "WA113", "trailing-bytes", "Bytes follow the last tensor's data.", Severity.HIGH,
    "8 + N + last end must equal the file size. Trailing data is how polyglot files (a valid safetensors that "
    "is also a zip or pickle) are built.")
DATA_TRUNCATED = _header_rule(
    "WA114", "data-truncated", "The data section is shorter than the tensors declare.", Severity.HIGH,
    "The header declares tensor bytes past the end of the file: the file is truncated.")
METADATA_NOT_STRINGS = _header_rule(
    "WA115", "metadata-not-strings", "__metadata__ is not a map of strings to strings.", Severity.HIGH,
    "The format allows only string values in __metadata__; the reference loader refuses anything else.")
UNKNOWN_FIELD = _header_rule(
    "WA116", "unknown-tensor-field", "A tensor entry has a field the format does not define.", Severity.LOW,
    "The format's JSON schema allows only dtype, shape and data_offsets (additionalProperties: false). The "
    "reference loader ignores extra fields, so they can carry data nobody reviews.")
NON_CANONICAL = _header_rule(
    "WA117", "non-canonical-header", "The header starts with whitespace.", Severity.INFO,
    "Leading whitespace is accepted by recent loaders (to let writers page-align the data) but older ones "
    "reject it.", cwe=None)
MISALIGNED = _header_rule(
    "WA118", "misaligned-tensor", "A tensor's data is not aligned to its element size.", Severity.INFO,
    "The reference writer aligns every tensor; misaligned data forces copies for zero-copy loaders.", cwe=None)
METADATA_FORMAT = _header_rule(
    "WA119", "metadata-format", "__metadata__ lacks a known 'format' value (pt, tf, flax, mlx).", Severity.INFO,
    "Older transformers loaders refuse a safetensors file whose __metadata__['format'] is missing or unknown.",
    cwe=None)

LFS_POINTER = register(Rule(
    id="WA120", name="lfs-pointer", summary="The file is a Git LFS pointer: the weights were not downloaded.",
    severity=Severity.MEDIUM, cwe=None, tags=("integrity", "discovery"),
    help="The file holds a few lines starting 'version https://git-lfs.github.com/spec/v1' instead of weights: "
         "the repository was cloned without LFS. Nothing in it can be checked, so the audit is incomplete.\n\n"
         "What to do: run `git lfs pull` (or download the file) and audit again.",
))
SYMLINK_OUTSIDE = register(Rule(
    id="WA121", name="symlink-outside-release", summary="A symbolic link points outside the release; not followed.",
    severity=Severity.MEDIUM, cwe=59, tags=("integrity", "discovery"),
    help="A link that leaves the release folder can make a loader read any file on the machine (for example "
         "~/.ssh keys presented as a tokenizer). weightaudit does not follow it.\n\n"
         "What to do: replace the link with the file it should contain.",
))
NOT_A_MODEL = register(Rule(
    id="WA122", name="unrecognised-weight-file",
    summary="A file with a weight-file name has content of no format weightaudit knows.",
    severity=Severity.HIGH, cwe=434, tags=("integrity", "discovery"),
    help="The file's extension says it holds weights but its bytes match no supported format (checked by magic "
         "bytes, not by name). It may be corrupt, mislabelled, or a different kind of file in disguise; it was "
         "not verified.\n\nWhat to do: check where the file came from and what it really is.",
))
UNREADABLE = register(Rule(
    id="WA123", name="unreadable-file", summary="A file could not be read or parsed.",
    severity=Severity.HIGH, cwe=None, tags=("integrity",),
    help="An I/O error or an unexpected structure stopped the reader. The file was not verified, so the audit "
         "is incomplete.\n\nWhat to do: check the file's permissions and integrity (size, checksum).",
))
UNSUPPORTED = register(Rule(
    id="WA124", name="unsupported-format", summary="The file is a weight format weightaudit does not read yet.",
    severity=Severity.MEDIUM, cwe=None, tags=("integrity", "discovery"),
    help="The file was recognised (e.g. GGUF, ONNX) but no loader for it exists yet, so it was not verified.",
))


# ---------------------------------------------------------------------------------------------------------
# Shard maps (model.safetensors.index.json, pytorch_model.bin.index.json)

def _shard_check(ctx: AuditContext, cfg: Mapping[str, object]) -> Iterable[Finding]:
    by_file: dict[str, set[str]] = {}
    for loaded in ctx.files:
        by_file[loaded.path] = {t.name for t in loaded.tensors}
    loaded_paths = {loaded.path for loaded in ctx.files} | {p.path for p in ctx.release.problems}
    for index in ctx.release.shard_indexes:
        yield from _check_one_index(index.rel, index.weight_map, by_file, loaded_paths)


def _resolve(index_rel: str, shard: str) -> str:
    folder = index_rel.rsplit("/", 1)[0] + "/" if "/" in index_rel else ""
    return folder + shard


def _check_one_index(index_rel: str, weight_map: Mapping[str, str], by_file: dict[str, set[str]],
                     known_paths: set[str]) -> Iterable[Finding]:
    shards = sorted({_resolve(index_rel, shard) for shard in weight_map.values()})
    for shard in shards:
        if shard not in known_paths:
            yield SHARD_MISSING.finding(index_rel, f"shard {shard} named by the index does not exist")
    for name, shard in sorted(weight_map.items()):
        shard_path = _resolve(index_rel, shard)
        if shard_path in by_file and name not in by_file[shard_path]:
            yield SHARD_TENSOR_MISSING.finding(
                shard_path, f"the index says tensor {name!r} is in {shard_path}, but that shard does not hold it",
                tensor=name)
    for shard_path in shards:
        for name in sorted(by_file.get(shard_path, set())):
            listed = weight_map.get(name)
            if listed is None:
                yield SHARD_UNLISTED.finding(
                    shard_path, f"tensor {name!r} is in {shard_path} but the index {index_rel} does not list it",
                    tensor=name)
            elif _resolve(index_rel, listed) != shard_path:
                yield SHARD_UNLISTED.finding(
                    shard_path, f"tensor {name!r} is in {shard_path} but the index {index_rel} places it in "
                    f"{_resolve(index_rel, listed)}", tensor=name)
    owners: dict[str, list[str]] = defaultdict(list)
    for shard_path in shards:
        for name in by_file.get(shard_path, set()):
            owners[name].append(shard_path)
    for name, paths in sorted(owners.items()):
        if len(paths) > 1:
            yield SHARD_DUPLICATE.finding(
                paths[1], f"tensor {name!r} is stored in {len(paths)} shards: {', '.join(paths)}", tensor=name)


SHARD_MISSING = register(Rule(
    id="WA125", name="shard-missing", summary="A shard named by the index file does not exist.",
    severity=Severity.HIGH, tags=("integrity", "shards"), check=_shard_check,
    help="The shard map (weight_map of *.index.json) names a file that is not in the release: loading fails or "
         "silently leaves weights uninitialised.\n\nWhat to do: download the missing shard.",
))
SHARD_TENSOR_MISSING = register(Rule(
    id="WA126", name="shard-tensor-missing", summary="A tensor listed in the index is not in the shard it names.",
    severity=Severity.HIGH, tags=("integrity", "shards"),
    help="The index maps a tensor to a shard that does not contain it; loaders will fail or leave it "
         "uninitialised.\n\nWhat to do: regenerate the index from the shards.",
))
SHARD_UNLISTED = register(Rule(
    id="WA127", name="shard-unlisted-tensor", summary="A shard holds a tensor the index does not list.",
    severity=Severity.MEDIUM, tags=("integrity", "shards"),
    help="Loaders that follow the index never read this tensor; reviewers that read the index never see it.\n\n"
         "What to do: regenerate the index, or remove the stray tensor.",
))
SHARD_DUPLICATE = register(Rule(
    id="WA128", name="shard-duplicate-tensor", summary="The same tensor name is stored in more than one shard.",
    severity=Severity.HIGH, cwe=436, tags=("integrity", "shards"),
    help="Which copy a loader uses depends on its order of reading: a parser differential.\n\n"
         "What to do: keep one copy and regenerate the index.",
))
INDEX_INVALID = register(Rule(
    id="WA129", name="index-invalid", summary="A shard index file is not valid JSON with a weight_map of strings.",
    severity=Severity.HIGH, tags=("integrity", "shards"),
    help="*.index.json must be a JSON object with 'weight_map': {tensor name: shard file name} and optional "
         "'metadata'. Loaders refuse a malformed index.\n\nWhat to do: regenerate the index.",
))
INTERNAL_ERROR = register(Rule(
    id="WA130", name="internal-error", summary="weightaudit failed unexpectedly while reading a file.",
    severity=Severity.HIGH, tags=("integrity",),
    help="A bug in weightaudit stopped it from checking this file, which is therefore not verified. Please "
         "report it with WEIGHTAUDIT_DEBUG=1 output.",
))
STATS_INCOMPLETE = register(Rule(
    id="WA131", name="statistics-incomplete", summary="Some tensors could not be streamed for statistics.",
    severity=Severity.MEDIUM, tags=("integrity",),
    help="The statistics pass could not read these tensors' bytes (a byte range outside the file, a broken "
         "stream), so NaN/Inf, zero and duplicate checks did not cover them. The file is not verified and the "
         "audit is incomplete (exit 3).\n\nWhat to do: check the file's integrity; the other findings say more.",
))


# ---------------------------------------------------------------------------------------------------------
# Reliability: named limits, side files parsed safely, links (WA132-WA139; README "Reliability")

LIMIT_REACHED = register(Rule(
    id="WA132", name="limit-reached", summary="A named resource limit was reached: the file was not fully checked.",
    severity=Severity.HIGH, cwe=400, tags=("integrity", "limits"), unverifies=True,
    help="weightaudit bounds what one input may cost (bytes inflated, opcodes, objects visited, tensors, members, "
         "graph nodes, nesting depth, side-file size ...; see weightaudit/limits.py). This file went past one of "
         "those limits, so the reader stopped and the rest of the file was not verified (the audit is incomplete). "
         "A file built to exhaust a scanner is itself suspicious.\n\n"
         "What to do: if the file is legitimately that large, raise the named limit in YOUR policy "
         "(`limits:` in weightaudit.yaml or --policy FILE; a policy inside the release is never read) and audit again.",
))
SIDE_FILE_REFUSED = register(Rule(
    id="WA133", name="side-file-refused",
    summary="A side file (config, shard index, tokenizer config, card front matter) could not be read safely.",
    severity=Severity.HIGH, cwe=400, tags=("integrity", "limits"),
    help="JSON and YAML side files are parsed with bounded nesting depth, a bounded number of YAML aliases and of "
         "values once aliases are expanded ('billion laughs'), bounded integers and a size cap; only regular files "
         "are opened. This file broke one of those bounds (or is a FIFO/device), so what it declares (architecture, "
         "shard map, chat template, licence) was not checked; the rest of the audit went on.\n\n"
         "What to do: real configs are small and shallow; inspect the file. If it is legitimate, raise the named "
         "limit in your own policy.",
))
SYMLINK_LOOP = register(Rule(
    id="WA134", name="symlink-loop", summary="A symbolic link loops or points back to a folder of the release.",
    severity=Severity.MEDIUM, cwe=59, tags=("integrity", "discovery"),
    help="A link such as `here -> .` or a chain of links that never ends would make a naive walker read the same "
         "files forever or fail with ELOOP. weightaudit reads every folder once and does not follow such links.\n\n"
         "What to do: remove the link.",
))
