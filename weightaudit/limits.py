"""One budget model: every cap weightaudit puts on what an audited file may cost, named, with its default.

A release is written by someone else, possibly an attacker; each limit below bounds the time or memory one
input can cost. Hitting a limit is never silent and never an internal error: the reader stops, raises a
``limit-reached`` finding (WA132, high: the audit fails at the default ``--fail-on high``) naming the limit and
its value, and marks the file unverified (exit 3 when nothing fails, e.g. with ``--fail-on critical``). Only the
*user's* policy can change a limit (``limits:`` in ``weightaudit.yaml`` / ``[tool.weightaudit.limits]`` /
``--policy FILE``), never a file inside the release.

```yaml
version: 1
limits:
  side_file_bytes: 200_000_000    # read bigger config/index/card files
  findings_per_rule_per_file: 1000
```

Loaders get the limits in ``LoadOptions.limits``; release-level rules (which read the whole release: hidden
pickles in side files, chat templates) get them in ``AuditContext.limits``. A limit a release-level rule hits is
WA132 on the side file, which the pipeline then lists as an unverified file; the ``template_*`` limits make a
chat template ``WA463 chat-template-unanalysed`` (medium), its file unverified likewise. Every field is listed,
with its default, in README "Reliability" (a test checks the table against this class).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class Limits:
    """Named caps with their defaults. Every field is a positive integer; the doc line says what it bounds."""

    # Side files (config.json, *.index.json, tokenizer_config.json, README front matter, policy files)
    side_file_bytes: int = 100_000_000        # bytes of one JSON/YAML/text side file that are read and parsed
    nesting_depth: int = 200                  # nesting of arrays/objects in one JSON or YAML document
    yaml_aliases: int = 1_000                 # alias (*name) uses in one YAML document
    document_nodes: int = 5_000_000           # values in one JSON/YAML document, aliases expanded
    # Weight files
    header_bytes: int = 100_000_000           # one metadata header (safetensors JSON header, GGUF key-value area)
    tensors_per_file: int = 10_000_000        # tensors inventoried in one file
    gguf_kv_pairs: int = 1_000_000            # key-value pairs in one GGUF header (formats/gguf.py MAX_KV_COUNT)
    gguf_tensors: int = 1_000_000             # tensor infos in one GGUF header (formats/gguf.py MAX_TENSOR_COUNT)
    pickle_opcodes: int = 10_000_000          # opcodes run symbolically in one pickle stream (pickle_vm.Limits)
    pickle_memo: int = 5_000_000              # memo entries of one pickle (pickle_vm.Limits.max_memo)
    pickle_stack: int = 5_000_000             # values on one pickle's stack (pickle_vm.Limits.max_stack)
    pickle_marks: int = 100_000               # MARKs open at once in one pickle (pickle_vm.Limits.max_marks)
    pickle_tuple_depth: int = 1_000           # tuples nested in tuples in one pickle (pickle_vm.Limits.max_tuple_depth)
    pickle_scan_steps: int = 4_000_000        # steps of the linear scan after a pickle stopped early (max_scan_steps)
    stacked_pickles: int = 1_000_000          # pickles read one after another from one file (formats/raw_pickle.py)
    nested_pickle_opcodes: int = 100_000      # opcodes run in one pickle found inside a pickle's constant (WA411)
    objects_visited: int = 5_000_000          # values one walk over a decoded object graph may visit
    zip_members: int = 1_000_000              # members of one zip archive (formats/zipread.py MAX_ZIP_ENTRIES)
    zip_member_bytes: int = 256 * 1024 * 1024   # one deflated zip member inflated in memory to be scanned
    tar_members: int = 100_000                # members of one tar archive (formats/tar_legacy.py MAX_TAR_MEMBERS)
    bytes_inflated: int = 1 << 32             # bytes decompressed from one compressed member (zip, .keras)
    hdf5_attribute_bytes: int = 64 * 1024 * 1024   # one HDF5 attribute (formats/hdf5_read.py MAX_ATTRIBUTE_BYTES)
    graph_nodes: int = 1_000_000              # NodeDefs walked in one SavedModel, all graphs and functions (~6 s)
    graph_meta_graphs: int = 64               # MetaGraphDefs of one SavedModel (real ones have 1-3)
    graph_functions: int = 100_000            # library functions of one SavedModel
    graph_protobuf_fields: int = 50_000_000   # protobuf fields visited in one saved_model.pb, known or not
    graph_text_bytes: int = 16 * 1024 * 1024  # one saved_model.pbtxt, parsed in memory (~1 s per MB)
    onnx_graph_depth: int = 32                # ONNX subgraphs nested in each other (If/Loop/Scan bodies)
    graph_text_depth: int = 100               # messages nested in one saved_model.pbtxt (protobuf's default limit)
    graph_attr_depth: int = 16                # function-valued attributes nested in each other (NameAttrList)
    graph_op_sites: int = 100_000             # distinct (op, meta-graph, function) places recorded in one SavedModel
    graph_attr_values: int = 1_000            # file-naming attribute values recorded in one SavedModel
    keras_metadata_fields: int = 1_000_000    # protobuf fields visited in one SavedModel keras_metadata.pb
    keras_json_bytes: int = 64 * 1024 * 1024  # one config.json / metadata.json member of a .keras archive
    bundle_index_bytes: int = 1 << 31         # one TensorBundle index (variables.index)
    bundle_block_bytes: int = 64 * 1024 * 1024   # one SSTable block of a TensorBundle index (TF writes 256 KiB)
    bundle_entry_bytes: int = 1 << 20         # one BundleEntryProto record (TF writes a few hundred bytes)
    bundle_key_bytes: int = 1 << 16           # one key (variable name) of a TensorBundle index
    bundle_keys_total_bytes: int = 1 << 30    # all keys of one TensorBundle index, rebuilt from shared prefixes
    tar_pax_bytes: int = 1 << 20              # one PAX header or GNU long-name member of a tar archive
    sevenzip_scan_bytes: int = 64 * 1024 * 1024   # bytes of a 7z archive searched for stored pickles
    # Release-level searches (rules that read the whole release)
    json_side_files: int = 2_000              # JSON side files of one release searched for hidden pickles (WA426)
    metadata_strings: int = 100_000           # strings of one safetensors __metadata__ / shard index searched (WA426)
    hidden_pickle_bytes: int = 1 << 20        # one hidden pickle decoded/inflated to be scanned (and <= 16x compressed)
    hidden_pickles_per_file: int = 10_000     # pickles found in one pickle's constants and scanned (WA411)
    template_json_bytes: int = 64 * 1024 * 1024   # one JSON side file searched for chat templates
    template_yaml_bytes: int = 4 * 1024 * 1024    # one YAML side file searched for chat templates
    template_file_bytes: int = 64 * 1024 * 1024   # one raw template file (chat_template.jinja, *.j2 ...)
    template_parse_chars: int = 64 * 1024     # characters of one chat template given to Jinja2's parser
    template_walk_steps: int = 100_000        # syntax-tree steps analysing one chat template
    secret_scan_bytes: int = 16 * 1024 * 1024   # one text side file searched for credentials (WA601/WA602)
    secret_scan_files: int = 2_000            # text side files of one release searched for credentials
    # Reports
    findings_per_rule_per_file: int = 100     # then the rest of that rule in that file become one summary finding

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


DEFAULT_LIMITS = Limits()


def parse_limits(data: Any, where: str = "limits") -> Limits:
    """Validate a ``limits:`` mapping from a policy; raises ValueError with a one-line message."""
    if data is None:
        return DEFAULT_LIMITS
    if not isinstance(data, Mapping):
        raise ValueError(f"'{where}' must be a mapping of limit name -> positive integer")
    known = Limits.names()
    changes: dict[str, int] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"{where}: unknown limit {key!r} (known: {', '.join(known)})")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{where}.{key}: expected a positive integer, not {value!r}")
        changes[key] = value
    return replace(DEFAULT_LIMITS, **changes)


def describe(name: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """``limits.name = value`` as shown in findings, so a user knows which key to raise."""
    return f"limits.{name} = {getattr(limits, name):,}"
