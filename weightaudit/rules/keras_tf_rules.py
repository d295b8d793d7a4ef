"""Keras / TensorFlow rules: integrity (WA160–WA179) and code-execution risk (WA430–WA459).

Integrity rules and the HDF5 reference/filter rules are raised by the loaders while they parse (``check`` is
None). The code-execution rules are release-level checks over the facts the loaders recorded:

- ``keras_config`` / ``keras_metadata`` are judged by weightaudit/rules/keras_rules.py (WA430–WA434,
  WA437–WA439) against Keras' own built-in objects.
- ``ops`` (``(op, node, function)`` triples of a SavedModel) are matched against ops that run Python or touch
  the file system / network. Checkpoint ops (``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints``...) are only
  flagged outside the standard save/restore functions every SavedModel carries; ``Assert`` never is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Iterator, Mapping

from weightaudit.model import Finding, LoadedFile, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

# ---------------------------------------------------------------- integrity rules (raised by loaders)

_INTEGRITY = (
    ("WA160", "tf-bundle-bad-table", "A TensorBundle index is not a valid SSTable / protobuf.", Severity.HIGH,
     "The variables index (a LevelDB-style table of BundleEntryProto records) failed a structural check: footer "
     "magic, block bounds, block CRC32C, key order or protobuf decoding. TensorFlow would refuse it; a scanner "
     "cannot list its variables. Re-export the checkpoint, or obtain the release from its original source.", 20),
    ("WA161", "tf-bundle-missing-shard", "A data shard named by a TensorBundle index is missing.", Severity.HIGH,
     "The index declares N data shards (prefix.data-0000k-of-0000N) and one is absent, so its variables cannot be "
     "read or checked. The release is incomplete: fetch the missing shard.", None),
    ("WA162", "tf-bundle-entry-out-of-range", "A TensorBundle entry points outside its data shard.", Severity.HIGH,
     "An entry's [offset, offset+size) runs past the end of its data shard (truncated download) or names a shard "
     "that does not exist. The tensor cannot be read as declared.", 20),
    ("WA163", "tf-bundle-crc-mismatch", "A variable's bytes do not match the CRC32C stored in the index.",
     Severity.HIGH,
     "TensorFlow stores a masked CRC32C of each variable's bytes; with --verify-checksums the bytes were re-hashed "
     "and differ. The data shard was corrupted or modified after saving.", 354),
    ("WA164", "tf-bundle-size-mismatch", "A TensorBundle entry's byte size disagrees with its dtype and shape.",
     Severity.HIGH,
     "For fixed-size dtypes an entry must hold exactly prod(shape) x itemsize bytes; TensorFlow rejects others. "
     "The index was edited or corrupted.", 20),
    ("WA165", "tf-bundle-unsupported", "Part of a TensorBundle uses a feature weightaudit does not check.",
     Severity.MEDIUM,
     "Snappy-compressed index blocks, big-endian bundles, partitioned variables, unknown dtypes or unknown ranks "
     "are not checked; the file is reported as not verified.", None),
    ("WA166", "savedmodel-bad-graph", "saved_model.pb cannot be parsed as a SavedModel.", Severity.HIGH,
     "The graph protobuf is malformed, empty, text-format or over 2 GiB; its ops could not be listed, so the "
     "SavedModel's code-execution risk is unknown.", 20),
    ("WA167", "savedmodel-missing-variables", "A SavedModel declares variables but has no variables index.",
     Severity.HIGH,
     "The object graph lists variables yet variables/variables.index is absent: the weights were not shipped.",
     None),
    ("WA168", "hdf5-shape-bomb", "An HDF5 dataset declares far more bytes than the file stores.", Severity.HIGH,
     "A dataset declares over 4 GiB and more than 1000x the bytes actually stored (Keras's own guard). Reading it "
     "would allocate huge memory: a denial-of-service file.", 400),
    ("WA169", "keras-bad-archive", "A .keras archive is malformed.", Severity.HIGH,
     "The zip lacks config.json or model.weights.h5, a JSON member does not parse, a member is encrypted, or its "
     "compression ratio looks like a zip bomb. Keras would refuse or misread it.", 20),
    ("WA170", "keras-missing-weight", "A Keras HDF5 file names a weight that is not stored.", Severity.MEDIUM,
     "A layer's weight_names attribute lists a dataset that is absent (or not a dataset): Keras fails to load the "
     "file, and the inventory is incomplete.", None),
    ("WA171", "hdf5-unreadable", "An HDF5 file or dataset cannot be read.", Severity.HIGH,
     "libhdf5 (via h5py) rejected the file or one of its objects; its contents were not checked.", 20),
)

for _id, _name, _summary, _severity, _help, _cwe in _INTEGRITY:
    register(Rule(_id, _name, _summary, _severity, _help, cwe=_cwe, tags=("integrity", "keras", "tensorflow")))

register(Rule(
    "WA435", "hdf5-external-reference", "An HDF5 file links to or stores data in other files.", Severity.HIGH,
    "External links, soft links leaving the file, external raw storage and virtual datasets make libhdf5 open "
    "other paths when the file is read (Keras refuses them). A weight file has no reason to do so.",
    cwe=73, tags=("code-execution", "keras", "hdf5")))
register(Rule(
    "WA436", "hdf5-filter-plugin", "An HDF5 dataset needs a filter plugin that libhdf5 loads dynamically.",
    Severity.HIGH,
    "Filters other than deflate, shuffle, fletcher32, szip, lzf, nbit and scaleoffset are loaded as shared "
    "libraries from HDF5_PLUGIN_PATH when the dataset is read: native code chosen by the file.",
    cwe=829, tags=("code-execution", "hdf5")))


# Keras config rules (WA430-WA434, WA437-WA439) live in weightaudit/rules/keras_rules.py.


# ---------------------------------------------------------------- SavedModel ops

PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
FILE_NETWORK_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "WholeFileReader", "WholeFileReaderV2", "ImmutableConst",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "TextLineDataset", "TFRecordDataset",
    "TFRecordDatasetV2", "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "LoadDataset", "SaveDataset",
    "SaveDatasetV2", "TextLineReader", "TextLineReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "CreateSummaryFileWriter", "WriteSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
    "WriteGraphSummary", "WriteRawProtoSummary", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3",
    "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2", "CSVDataset", "CSVDatasetV2",
    "ExperimentalCSVDataset", "SqlDataset", "ExperimentalSqlDataset", "SnapshotDataset", "SnapshotDatasetV2",
    "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
})
CHECKPOINT_OPS = frozenset({
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
})
_SAVER_FUNCTION = re.compile(r"^__inference__traced_(save|restore)_\d+$")
_SAVER_SCOPE = re.compile(r"^save(_\d+)?/")


def _in_standard_saver(node: str, function: str | None) -> bool:
    if function is None:
        return bool(_SAVER_SCOPE.match(node))
    return bool(_SAVER_FUNCTION.match(function))


def _ops(ctx: AuditContext) -> Iterator[tuple[LoadedFile, str, str, str | None]]:
    for loaded in ctx.files:
        for op, node, function in loaded.facts.get("ops", ()) or ():
            yield loaded, op, node, function


def _op_where(node: str, function: str | None) -> str:
    return f"node {node!r} in function {function}" if function else f"node {node!r} in the top-level graph"


def check_python_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA440")
    for loaded, op, node, function in _ops(ctx):
        if op in PYTHON_OPS:
            where = _op_where(node, function)
            yield rule.finding(loaded.path, f"op {op} runs Python code from the host process ({where})", where=where)


def check_file_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA441")
    for loaded, op, node, function in _ops(ctx):
        if op in FILE_NETWORK_OPS:
            where = _op_where(node, function)
            yield rule.finding(loaded.path, f"op {op} reads or writes files or remote URLs ({where})", where=where)


def check_checkpoint_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA442")
    for loaded, op, node, function in _ops(ctx):
        if op in CHECKPOINT_OPS and not _in_standard_saver(node, function):
            where = _op_where(node, function)
            yield rule.finding(loaded.path, f"checkpoint op {op} outside the standard save/restore functions can "
                               f"read or write arbitrary paths ({where})", where=where)


@lru_cache(maxsize=1)
def known_tf_ops() -> frozenset[str]:
    """Op names TensorFlow registers (weightaudit/data/tf_ops.txt, generated by fixtures/make_keras_tf.py)."""
    text = resources.files("weightaudit").joinpath("data/tf_ops.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_unknown_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA443")
    known = known_tf_ops()
    for loaded in ctx.files:
        functions = set(loaded.facts.get("functions", ()) or ())
        seen: set[str] = set()
        for op, node, function in loaded.facts.get("ops", ()) or ():
            if op in known or op in functions or op in seen:
                continue
            seen.add(op)
            where = _op_where(node, function)
            yield rule.finding(loaded.path, f"op {op!r} is not a TensorFlow op: a custom op whose native library "
                               f"must be loaded to run the model ({where})", where=where)


def _rule(rule_id: str) -> Rule:
    return _RULES_BY_ID[rule_id]


_CODE_RULES = (
    Rule("WA440", "tf-python-op", "A SavedModel graph runs Python (PyFunc / EagerPyFunc).", Severity.CRITICAL,
         "PyFunc-family ops call back into the Python process that runs the graph: a model that carries them "
         "executes arbitrary host code. Legitimate releases do not need them.", cwe=94,
         tags=("code-execution", "tensorflow"), check=check_python_ops),
    Rule("WA441", "tf-file-network-op", "A SavedModel graph reads or writes files or URLs.", Severity.HIGH,
         "Ops such as ReadFile, WriteFile, MatchingFiles, dataset readers, summary writers and Debug* ops touch the "
         "file system (or remote file systems/URLs) when the model runs: data exfiltration or tampering. TF's "
         "SECURITY.md: models are programs. Check why the model needs file access.", cwe=73,
         tags=("code-execution", "tensorflow"), check=check_file_ops),
    Rule("WA442", "tf-checkpoint-op-outside-saver", "A SavedModel uses save/restore ops outside its saver "
         "functions.", Severity.HIGH,
         "SaveV2/RestoreV2/MergeV2Checkpoints are normal inside the __inference__traced_save/_restore functions "
         "(or the save/ scope of TF1 graphs) that every SavedModel carries; anywhere else they can read or "
         "overwrite arbitrary files when the model runs.", cwe=73,
         tags=("code-execution", "tensorflow"), check=check_checkpoint_ops),
    Rule("WA443", "tf-unknown-op", "A SavedModel uses an op TensorFlow does not define (custom op).",
         Severity.MEDIUM,
         "Ops outside TensorFlow's registry come from custom native libraries (tf.load_op_library) that must be "
         "loaded to run the model: native code outside TensorFlow's review. Identify the library.", cwe=829,
         tags=("code-execution", "tensorflow"), check=check_unknown_ops),
)
_RULES_BY_ID = {rule.id: register(rule) for rule in _CODE_RULES}
