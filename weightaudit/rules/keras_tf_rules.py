"""Keras / TensorFlow rules: integrity (WA160–WA179) and code-execution risk (WA430–WA459).

Integrity rules and the HDF5 reference/filter rules are raised by the loaders while they parse (``check`` is
None). The code-execution rules are release-level checks over the facts the loaders recorded:

- ``keras_config`` / ``keras_metadata`` are judged by weightaudit/rules/keras_rules.py (WA430–WA434,
  WA437–WA439) against Keras' own built-in objects.
- SavedModel ``ops`` are judged by weightaudit/rules/tf_rules.py against the op allowlist and dangerous
  categories in weightaudit/data/tf_op_*.yaml.
"""

from __future__ import annotations

from weightaudit.model import Severity
from weightaudit.rules import register
from weightaudit.rules.base import Rule

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
     "The graph protobuf (binary or text format) is malformed, empty or over 2 GiB; its ops could not be "
     "listed, so the SavedModel's code-execution risk is unknown.", 20),
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


# SavedModel op rules (WA440-WA447) and the chunked-graph rule (WA177) live in weightaudit/rules/tf_rules.py.
