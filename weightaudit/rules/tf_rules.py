"""TensorFlow SavedModel rules: ops judged against an allowlist (WA440–WA447) and the chunked-graph integrity
rule (WA177). A walk that hits a limit is WA132 (limit-reached, rules/integrity.py).

The SavedModel loader records op *sites* (one per op and function, with a count), string attributes that
can name files, and who calls the standard saver functions (``formats/savedmodel_graph.py``). The op tables
are data (``rules/tf_op_tables.py``): every op is either allowlisted (silent), in a dangerous category
(high, critical for Python), a registered op off the allowlist (medium, WA447) or not a TensorFlow op at all
(medium, WA443: a custom native op). Findings are aggregated per op and file: a graph of a million nodes
gives one finding per distinct op, naming up to three places.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from weightaudit.model import Finding, LoadedFile, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

if TYPE_CHECKING:   # the graph reader and the op tables load with a SavedModel graph, not at every start-up
    from weightaudit.formats.savedmodel_graph import OpSite

SHOWN_SITES = 3
# Facts only the SavedModel loader writes: without them no check below has anything to read, and the op tables
# (YAML data) are not loaded.
_GRAPH_FACTS = ("ops", "tf_attr_values", "tf_untrusted_checkpoint_nodes")

# ---------------------------------------------------------------- integrity rules raised by the loader

for _id, _name, _summary, _severity, _help in (
    ("WA177", "savedmodel-chunked-graph", "A SavedModel ships a chunked saved_model.cpb graph that is not read.",
     Severity.HIGH,
     "Graphs over 2 GiB are split by TensorFlow's proto splitter into saved_model.cpb, a format weightaudit does "
     "not read: its ops could not be checked. The folder is reported unverified."),
):
    register(Rule(_id, _name, _summary, _severity, _help, cwe=20, tags=("integrity", "tensorflow")))


# ---------------------------------------------------------------- helpers

def _has_graph(ctx: AuditContext) -> bool:
    return any(loaded.facts.get(key) for loaded in ctx.files for key in _GRAPH_FACTS)


def _sites(loaded: LoadedFile) -> tuple[OpSite, ...]:
    ops = loaded.facts.get("ops", ()) or ()
    if not ops:
        return ()
    from weightaudit.formats.savedmodel_graph import OpSite

    return tuple(site for site in ops if isinstance(site, OpSite))


def _by_op(sites: Iterable[OpSite]) -> dict[str, list[OpSite]]:
    grouped: dict[str, list[OpSite]] = {}
    for site in sites:
        grouped.setdefault(site.op, []).append(site)
    return grouped


def _places(sites: list[OpSite]) -> tuple[str, str]:
    """(first place, readable list of up to SHOWN_SITES places plus how many nodes in total)."""
    total = sum(site.count for site in sites)
    shown = "; ".join(site.where for site in sites[:SHOWN_SITES])
    extra = f"; {len(sites) - SHOWN_SITES} more functions" if len(sites) > SHOWN_SITES else ""
    return sites[0].where, f"{total} node{'s' if total != 1 else ''}: {shown}{extra}"


def _category_findings(ctx: AuditContext, rule: Rule) -> Iterator[Finding]:
    if not _has_graph(ctx):
        return
    from weightaudit.rules.tf_op_tables import op_tables

    tables = op_tables()
    for loaded in ctx.files:
        grouped = _by_op(s for s in _sites(loaded) if getattr(tables.category.get(s.op), "rule", None) == rule.id)
        for op, sites in grouped.items():
            category = tables.category[op]
            where, places = _places(sites)
            yield rule.finding(loaded.path, f"op {op} ({category.name}) at {places}. {category.reason}",
                               where=where, severity=category.severity)


def check_python_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    return _category_findings(ctx, _rule("WA440"))


def check_file_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    return _category_findings(ctx, _rule("WA441"))


def check_summary_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    return _category_findings(ctx, _rule("WA444"))


def check_network_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    return _category_findings(ctx, _rule("WA445"))


# ---------------------------------------------------------------- checkpoint ops outside the saver

def _untrusted_callers(loaded: LoadedFile, function: str) -> list[str]:
    callers = (loaded.facts.get("tf_saver_callers") or {}).get(function, ())
    return [caller for caller, trusted in callers if not trusted]


def _saver_problem(loaded: LoadedFile, site: OpSite) -> str | None:
    """Why this checkpoint-op site inside a function is not TensorFlow's own saver; None when it is."""
    from weightaudit.formats.savedmodel_graph import SAVER_FUNCTION

    if not SAVER_FUNCTION.fullmatch(site.function or ""):
        return "outside the __inference__traced_save/_restore functions"
    untrusted = _untrusted_callers(loaded, site.function)
    if untrusted:
        return f"in a saver function that is also called from {', '.join(untrusted[:SHOWN_SITES])}"
    return None


def check_checkpoint_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA442")
    if not _has_graph(ctx):
        return
    from weightaudit.rules.tf_op_tables import op_tables

    tables = op_tables()
    for loaded in ctx.files:
        for site in _sites(loaded):
            category = tables.category.get(site.op)
            if category is None or category.rule != rule.id or site.function is None:
                continue
            problem = _saver_problem(loaded, site)
            if problem is not None:
                yield rule.finding(loaded.path, f"checkpoint op {site.op} {problem} can read or write arbitrary "
                                   f"paths when the model runs ({site.where})", where=site.where)
        for op, meta_graph, node, why in loaded.facts.get("tf_untrusted_checkpoint_nodes", ()) or ():
            where = f"meta-graph {meta_graph}, the top-level graph, node {node!r}"
            yield rule.finding(loaded.path, f"checkpoint op {op} {why} can read or write arbitrary paths when the "
                               f"model runs ({where})", where=where)


# ---------------------------------------------------------------- attributes naming files

def check_file_attributes(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA446")
    if not _has_graph(ctx):
        return
    from weightaudit.rules.tf_op_tables import op_tables

    tables = op_tables()
    for loaded in ctx.files:
        for site in loaded.facts.get("tf_attr_values", ()) or ():
            entry = tables.file_attribute(site.op, site.attr)
            if entry is None or site.value in entry.safe:
                continue
            yield rule.finding(loaded.path, f"op {site.op} attribute {site.attr}={site.value[:200]!r}: "
                               f"{entry.reason} ({site.where})", where=site.where)


# ---------------------------------------------------------------- ops off the allowlist

def _off_list(loaded: LoadedFile, known: bool) -> Iterator[tuple[str, list[OpSite]]]:
    if not loaded.facts.get("ops"):
        return
    from weightaudit.rules.tf_op_tables import op_tables

    tables = op_tables()
    functions = set(loaded.facts.get("functions", ()) or ())
    for op, sites in _by_op(_sites(loaded)).items():
        if op in tables.allowed or op in tables.category or op in functions:
            continue
        if (op in tables.known) == known:
            yield op, sites


def check_unlisted_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA447")
    for loaded in ctx.files:
        for op, sites in _off_list(loaded, known=True):
            where, places = _places(sites)
            yield rule.finding(loaded.path, f"op {op} is a TensorFlow op outside the inference allowlist "
                               f"(input pipelines, queues, devices, sessions, debugging...) at {places}", where=where)


def check_unknown_ops(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    rule = _rule("WA443")
    for loaded in ctx.files:
        for op, sites in _off_list(loaded, known=False):
            where, places = _places(sites)
            yield rule.finding(loaded.path, f"op {op!r} is not a TensorFlow op: a custom op whose native library "
                               f"must be loaded to run the model, at {places}", where=where)


def _rule(rule_id: str) -> Rule:
    return _RULES_BY_ID[rule_id]


_TAGS = ("code-execution", "tensorflow")
_CODE_RULES = (
    Rule("WA440", "tf-python-op", "A SavedModel graph runs Python (PyFunc / EagerPyFunc).", Severity.CRITICAL,
         "PyFunc-family ops call back into the Python process that runs the graph: a model that carries them "
         "executes arbitrary host code. Legitimate releases do not need them. Ops are judged against "
         "weightaudit/data/tf_op_dangerous.yaml.", cwe=94, tags=_TAGS, check=check_python_ops),
    Rule("WA441", "tf-file-op", "A SavedModel graph reads, lists, maps or writes files.", Severity.HIGH,
         "Ops such as ReadFile, WriteFile, MatchingFiles, ImmutableConst, text-file table initialisers and "
         "dataset readers/writers touch the file system (or remote file systems) when the model runs: data "
         "exfiltration or tampering. TensorFlow's SECURITY.md: models are programs. The categories live in "
         "weightaudit/data/tf_op_dangerous.yaml.", cwe=73, tags=_TAGS, check=check_file_ops),
    Rule("WA442", "tf-checkpoint-op-outside-saver", "A SavedModel uses save/restore ops outside its saver "
         "functions.", Severity.HIGH,
         "SaveV2/RestoreV2/MergeV2Checkpoints are normal inside the __inference__traced_save/_restore functions "
         "(called only from top-level nodes no signature names) or the save/ scope of TF1 graphs. Anywhere else "
         "- a serving function, or a saver function reachable from a signature or another function - they read "
         "or overwrite arbitrary files when the model runs.", cwe=73, tags=_TAGS, check=check_checkpoint_ops),
    Rule("WA443", "tf-unknown-op", "A SavedModel uses an op TensorFlow does not define (custom op).",
         Severity.MEDIUM,
         "Ops outside TensorFlow's registry (weightaudit/data/tf_ops.txt) come from custom native libraries "
         "(tf.load_op_library) that must be loaded to run the model: native code outside TensorFlow's review. "
         "Identify the library.", cwe=829, tags=_TAGS, check=check_unknown_ops),
    Rule("WA444", "tf-summary-database-op", "A SavedModel graph writes summaries or talks to a database.",
         Severity.HIGH,
         "Summary writers (CreateSummaryFileWriter, WriteSummary, ImportEvent...) create event files in a log "
         "directory the graph chooses; CreateSummaryDbWriter and SqlDataset open SQLite databases. A served "
         "model has no reason to write logs or query databases.", cwe=73, tags=_TAGS, check=check_summary_ops),
    Rule("WA445", "tf-network-op", "A SavedModel graph talks to remote services.", Severity.HIGH,
         "gRPC client/server ops, the tf.data service, tfdbg debug ops (grpc:// or file:// debug URLs), cloud "
         "storage / BigQuery / Bigtable clients and FileSystemSetConfiguration let a model send data out or "
         "receive instructions.", cwe=918, tags=_TAGS, check=check_network_ops),
    Rule("WA446", "tf-file-attribute", "A SavedModel op attribute names a file or URL.", Severity.HIGH,
         "Some otherwise harmless ops read or write a file named by an attribute: tf.print's output_stream "
         "'file://...', DecodeProtoV2/EncodeProto descriptor_source, FixedUnigramCandidateSampler vocab_file, "
         "ImmutableConst memory_region_name, tfdbg debug_urls / dump_root (weightaudit/data/tf_op_dangerous.yaml "
         "file_attributes).", cwe=73, tags=_TAGS, check=check_file_attributes),
    Rule("WA447", "tf-op-not-allowlisted", "A SavedModel uses a TensorFlow op outside the inference allowlist.",
         Severity.MEDIUM,
         "The op is registered by TensorFlow but is not one a served model needs (input pipelines, queues and "
         "readers, TPU/XLA/collective device traffic, sessions, debugging; weightaudit/data/"
         "tf_op_allowlist.yaml lists what is, one group per job with the reason it only computes on the graph's own "
         "tensors; generated from TensorFlow's op registry by fixtures/make_tf_op_tables.py). Review what it does "
         "before serving the model. Extending it: the allowlist itself is not changed by a policy; once reviewed, "
         "accept the op for that model in YOUR policy (never one inside the release) with "
         "`ignore: [{rule: WA447, path: \"my_model\", reason: \"...\"}]` (path: the SavedModel folder, relative "
         "to the target; the finding stays in the report under suppressed). Ops that touch files, services or Python (WA440-WA446) are judged separately.",
         cwe=829,
         tags=_TAGS, check=check_unlisted_ops),
)
_RULES_BY_ID = {rule.id: register(rule) for rule in _CODE_RULES}
