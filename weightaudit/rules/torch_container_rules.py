"""WA140–WA159: integrity of PyTorch containers (zip archives, legacy streams, storages and tensor views).

Raised by the pickle-family loaders while they parse (``check`` is None); re-exported by
:mod:`weightaudit.rules.pickle_rules`, which the loaders import as ``R``.
"""

from __future__ import annotations

from weightaudit.model import Severity
from weightaudit.rules import rule_family

__all__ = [
    "ZIP_MALFORMED", "ZIP_DUPLICATE", "ZIP_NAME_MISMATCH", "ZIP_FLAGS", "ZIP_CRC", "STORAGE_SIZE",
    "TENSOR_OUT_OF_BOUNDS", "MISSING_RECORD", "ORPHAN_RECORD", "PATH_TRAVERSAL", "HIDDEN_PICKLE",
    "COMPRESSED_RECORD", "TORCH_LAYOUT", "ENCRYPTED_MEMBER", "LEGACY_LAYOUT", "UNSUPPORTED_TENSOR",
]


_integrity_rule = rule_family(
    ("integrity", "pytorch"),
    "\n\nWhat to do: re-save the checkpoint with torch.save from a trusted copy (or convert it to safetensors); "
    "do not load a tampered archive.")


ZIP_MALFORMED = _integrity_rule(
    "WA140", "zip-malformed", "The zip archive cannot be read (central directory or local headers broken).",
    Severity.HIGH, "torch reads checkpoints with miniz; a broken archive is refused or read differently.")
ZIP_DUPLICATE = _integrity_rule(
    "WA141", "zip-duplicate-member", "A member name appears twice in the zip archive.", Severity.MEDIUM,
    "torch and zipfile read the last copy; other tools may read the first. Both copies were scanned.", cwe=436)
ZIP_NAME_MISMATCH = _integrity_rule(
    "WA142", "zip-name-mismatch", "A member's local-header name differs from its central-directory name.",
    Severity.HIGH, "Python's zipfile refuses such members while torch (miniz) loads them: scanners built on "
    "zipfile gave up on them (CVE-2025-1944).", cwe=436)
ZIP_FLAGS = _integrity_rule(
    "WA143", "zip-flag-tampering", "A member sets zip flags (encryption, patched data) that torch ignores.",
    Severity.HIGH, "zipfile refuses members with the encryption (0x1), patch (0x20) or strong-encryption "
    "(0x40) bits while torch reads the bytes as stored (CVE-2025-1945).", cwe=436)
ZIP_CRC = _integrity_rule(
    "WA144", "zip-crc-mismatch", "A member's bytes do not match its CRC-32.", Severity.HIGH,
    "torch disables miniz's CRC check and loads the member; zipfile raises (CVE-2025-10156). A wrong CRC means the "
    "member was edited after the archive was written.", cwe=354)
STORAGE_SIZE = _integrity_rule(
    "WA145", "storage-size-mismatch", "A storage record's size differs from its declared element count.",
    Severity.HIGH, "torch computes nbytes = numel * element_size from the pickle and reads that many bytes; a "
    "mismatch was behind CVE-2026-24747 (memory corruption in torch < 2.10).", cwe=787)
TENSOR_OUT_OF_BOUNDS = _integrity_rule(
    "WA146", "tensor-out-of-bounds", "A tensor's offset, size and stride reach outside its storage.",
    Severity.HIGH, "A view that extends past its storage reads or writes out of bounds in loaders that trust it.",
    cwe=125)
MISSING_RECORD = _integrity_rule(
    "WA147", "missing-storage", "A tensor refers to a storage record that is not in the file.", Severity.HIGH,
    "torch.load fails on this file; the tensor's bytes cannot be checked.")
ORPHAN_RECORD = _integrity_rule(
    "WA148", "orphan-record", "A data record is not referenced by any tensor.", Severity.LOW,
    "torch.save never writes unreferenced records; extra data can smuggle content past reviewers.")
PATH_TRAVERSAL = _integrity_rule(
    "WA149", "zip-path-traversal", "A member name is absolute or climbs out of the archive with '..'.",
    Severity.HIGH, "Extracting the archive writes outside the target folder.", cwe=22)
HIDDEN_PICKLE = _integrity_rule(
    "WA150", "hidden-pickle", "A member that torch does not read holds a pickle.", Severity.MEDIUM,
    "A pickle stored under another name (data.txt, config.json, a second data.pkl) is invisible to tools that "
    "select members by name (CVE-2025-1889); it was scanned here.")
COMPRESSED_RECORD = _integrity_rule(
    "WA151", "compressed-record", "A tensor record is compressed, so it cannot be memory-mapped.", Severity.LOW,
    "torch.save stores records uncompressed and 64-byte aligned; a re-zipped checkpoint loads slower and needs "
    "the whole record in memory.", cwe=None)
TORCH_LAYOUT = _integrity_rule(
    "WA152", "torch-layout", "The archive does not follow torch's layout, so torch.load would refuse it.",
    Severity.MEDIUM, "torch requires every member under one top-level folder, a data.pkl, a known byteorder "
    "('little'/'big') and a supported version record.")
ENCRYPTED_MEMBER = _integrity_rule(
    "WA153", "encrypted-member", "An archive member is encrypted and could not be checked.", Severity.MEDIUM,
    "Encrypted content cannot be scanned; the file is reported as not verified.")
LEGACY_LAYOUT = _integrity_rule(
    "WA154", "legacy-layout", "A legacy (pre-1.6) torch file deviates from the stream layout torch expects.",
    Severity.HIGH, "The legacy format is magic number, protocol 1001, sys_info, the object, the sorted storage "
    "keys, then each storage as int64 count plus bytes. Extra or missing parts are read differently by "
    "different loaders.")
UNSUPPORTED_TENSOR = _integrity_rule(
    "WA155", "unsupported-tensor", "A tensor kind could not be inventoried (nested, meta, wrapper subclass).",
    Severity.LOW, "The tensor is rebuilt by a torch function weightaudit does not model yet; its bytes were not "
    "checked. Plain, parameter, quantized (codes plus per-channel scale/zero-point tensors) and sparse "
    "(COO/CSR/CSC/BSR/BSC component tensors) tensors are inventoried.", cwe=None)
