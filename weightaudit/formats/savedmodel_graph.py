"""Walk a SavedModel's graphs (binary ``saved_model.pb`` or text ``saved_model.pbtxt``) with bounded work.

Both encodings are read through one small message interface (``items()`` yields ``(field name, value)``) so
one walker applies the same checks to both: ``WireMessage`` decodes the protobuf wire format lazily from a
memory-mapped buffer; ``pbtext.TextMessage`` wraps the text-format parse. Only the fields the audit needs
are described in ``SCHEMA``; everything else is skipped (but counted against the field budget).

What is recorded (``GraphRecorder``), never one Python object per node:

- op *sites*: one entry per (op, meta-graph, function) with the first node's name and a count;
- string values of the attributes that can name files (``tf_op_dangerous.yaml`` ``file_attributes``);
- who calls the standard saver functions (``__inference__traced_save_N`` / ``_restore_N``) and which top-level
  nodes the signatures name, so checkpoint ops are trusted only where TensorFlow's saver puts them.

Every dimension is capped by ``GraphLimits``; hitting a cap stops the walk with ``WalkLimit`` (the loader
turns it into finding WA132, limit-reached, and an unverified file). Work is linear in the bytes of the graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator, Mapping

from weightaudit.formats.tensorbundle import iter_fields
from weightaudit.limits import DEFAULT_LIMITS, Limits

# message type -> {field number: (field name, value type)}. Value types: "string" / "bytes" (UTF-8 or raw
# length-delimited), "present" (only presence matters), or another message type of this table.
SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "SavedModel": {2: ("meta_graphs", "MetaGraphDef")},
    "MetaGraphDef": {1: ("meta_info_def", "MetaInfoDef"), 2: ("graph_def", "GraphDef"), 3: ("saver_def", "SaverDef"),
                     5: ("signature_def", "SignatureEntry"), 7: ("object_graph_def", "SavedObjectGraph")},
    "SaverDef": {1: ("filename_tensor_name", "string"), 2: ("save_tensor_name", "string"),
                 3: ("restore_op_name", "string")},
    "MetaInfoDef": {4: ("tags", "string"), 5: ("tensorflow_version", "string")},
    "GraphDef": {1: ("node", "NodeDef"), 2: ("library", "FunctionDefLibrary")},
    "FunctionDefLibrary": {1: ("function", "FunctionDef")},
    "FunctionDef": {1: ("signature", "OpDef"), 3: ("node_def", "NodeDef")},
    "OpDef": {1: ("name", "string")},
    "NodeDef": {1: ("name", "string"), 2: ("op", "string"), 5: ("attr", "AttrEntry")},
    "AttrEntry": {1: ("key", "string"), 2: ("value", "AttrValue")},
    "AttrValue": {1: ("list", "ListValue"), 2: ("s", "bytes"), 10: ("func", "NameAttrList")},
    "ListValue": {2: ("s", "bytes"), 9: ("func", "NameAttrList")},
    "NameAttrList": {1: ("name", "string"), 2: ("attr", "AttrEntry")},
    "SignatureEntry": {1: ("key", "string"), 2: ("value", "SignatureDef")},
    "SignatureDef": {1: ("inputs", "TensorInfoEntry"), 2: ("outputs", "TensorInfoEntry")},
    "TensorInfoEntry": {1: ("key", "string"), 2: ("value", "TensorInfo")},
    "TensorInfo": {1: ("name", "string")},
    "SavedObjectGraph": {1: ("nodes", "SavedObject"), 2: ("concrete_functions", "ConcreteFunctionEntry")},
    "ConcreteFunctionEntry": {1: ("key", "string")},
    "SavedObject": {7: ("variable", "present")},
}
SAVER_FUNCTION = re.compile(r"__inference__traced_(save|restore)_\d+")
SAVER_PREFIX = "__inference__traced_"
MAX_CHECKPOINT_NODES = 1_000   # untrusted top-level checkpoint-op nodes reported per file
MAX_TAGS = 1_000               # meta-graph tags kept for the report
MAX_CALLERS = 16               # callers kept per saver function and kind (trusted / not)
MAX_TEXT_VALUE = 4096          # attribute strings kept for reports are cut to this many characters


# GraphLimits field -> the user's policy limit (weightaudit/limits.py) it comes from
POLICY_LIMITS = {"max_fields": "graph_protobuf_fields", "max_meta_graphs": "graph_meta_graphs",
                 "max_nodes": "graph_nodes", "max_functions": "graph_functions", "max_text_bytes": "graph_text_bytes",
                 "max_text_depth": "graph_text_depth", "max_attr_depth": "graph_attr_depth",
                 "max_sites": "graph_op_sites", "max_attr_values": "graph_attr_values"}


@dataclass(frozen=True)
class GraphLimits:
    """Caps of one SavedModel walk, all from the user's policy (``limits.graph_*``, see POLICY_LIMITS); tests
    may override any with ``LoadOptions.extra['savedmodel_limits']``."""

    max_fields: int = DEFAULT_LIMITS.graph_protobuf_fields
    max_meta_graphs: int = DEFAULT_LIMITS.graph_meta_graphs
    max_nodes: int = DEFAULT_LIMITS.graph_nodes
    max_functions: int = DEFAULT_LIMITS.graph_functions
    max_text_bytes: int = DEFAULT_LIMITS.graph_text_bytes
    max_text_depth: int = DEFAULT_LIMITS.graph_text_depth     # messages nested in a saved_model.pbtxt
    max_attr_depth: int = DEFAULT_LIMITS.graph_attr_depth     # function-valued attributes (NameAttrList) nested
    max_sites: int = DEFAULT_LIMITS.graph_op_sites            # distinct (op, meta-graph, function) triples
    max_attr_values: int = DEFAULT_LIMITS.graph_attr_values   # recorded file-naming attribute values

    @classmethod
    def from_options(cls, limits: Limits, extra: Mapping[str, object] | None = None) -> "GraphLimits":
        values = {name: getattr(limits, policy) for name, policy in POLICY_LIMITS.items()}
        given = (extra or {}).get("savedmodel_limits")
        if isinstance(given, Mapping):
            names = {f.name for f in fields(cls)}
            values.update({k: int(v) for k, v in given.items() if k in names})  # type: ignore[call-overload]
        return replace(cls(), **values)


class WalkLimit(Exception):
    """A named limit was reached; the walk stopped there."""

    def __init__(self, limit: str, value: int) -> None:
        shown = f"limits.{POLICY_LIMITS[limit]} = {value:,}" if limit in POLICY_LIMITS else f"{limit} = {value:,}"
        super().__init__(f"{shown} reached; the rest of the graph was not checked")
        self.limit = limit
        self.value = value


@dataclass(frozen=True)
class OpSite:
    """All nodes running ``op`` in one function (None: the top-level graph) of one meta-graph."""

    op: str
    meta_graph: int
    function: str | None
    node: str            # the first such node
    count: int

    @property
    def where(self) -> str:
        scope = f"function {self.function}" if self.function else "the top-level graph"
        more = f" (+{self.count - 1} more)" if self.count > 1 else ""
        return f"meta-graph {self.meta_graph}, {scope}, node {self.node!r}{more}"


@dataclass(frozen=True)
class AttrSite:
    """A string attribute of a node that may name a file or URL."""

    op: str
    meta_graph: int
    function: str | None
    node: str
    attr: str
    value: str

    @property
    def where(self) -> str:
        scope = f"function {self.function}" if self.function else "the top-level graph"
        return f"meta-graph {self.meta_graph}, {scope}, node {self.node!r}, attr {self.attr}"


@dataclass
class Budget:
    limits: GraphLimits
    fields: int = 0

    def tick(self) -> None:
        self.fields += 1
        if self.fields > self.limits.max_fields:
            raise WalkLimit("max_fields", self.limits.max_fields)


class WireMessage:
    """A protobuf message in wire format, decoded lazily by ``SCHEMA``."""

    __slots__ = ("buf", "kind", "budget")

    def __init__(self, buf: Any, kind: str, budget: Budget) -> None:
        self.buf, self.kind, self.budget = buf, kind, budget

    def items(self) -> Iterator[tuple[str, Any]]:
        spec = SCHEMA[self.kind]
        budget = self.budget
        cap = budget.limits.max_fields
        for number, wire, payload in iter_fields(self.buf):
            budget.fields += 1
            if budget.fields > cap:
                raise WalkLimit("max_fields", cap)
            known = spec.get(number)
            if known is None or wire != 2:
                continue
            name, kind = known
            if kind == "string":
                yield name, str(payload, "utf-8", "replace")
            elif kind == "bytes":
                yield name, bytes(payload[:MAX_TEXT_VALUE])
            elif kind == "present":
                yield name, True
            else:
                yield name, WireMessage(payload, kind, budget)

    def node_parts(self) -> tuple[str, str, list[Any]]:
        """A NodeDef's (name, op, attr entries): the hot path of big graphs, decoded without the schema."""
        name = op = ""
        attrs: list[Any] = []
        budget = self.budget
        for number, wire, payload in iter_fields(self.buf):
            budget.fields += 1
            if wire != 2:
                continue
            if number == 2:
                op = str(payload, "utf-8", "replace")
            elif number == 1:
                name = str(payload, "utf-8", "replace")
            elif number == 5:
                attrs.append(WireMessage(payload, "AttrEntry", budget))
        if budget.fields > budget.limits.max_fields:
            raise WalkLimit("max_fields", budget.limits.max_fields)
        return name, op, attrs


def node_parts(node: Any) -> tuple[str, str, list[Any]]:
    """(name, op, attr entries) of a NodeDef from any message reader (last ``name``/``op`` wins)."""
    if isinstance(node, WireMessage):
        return node.node_parts()
    name = op = ""
    attrs: list[Any] = []
    for item, value in node.items():
        if item == "name":
            name = value
        elif item == "op":
            op = value
        elif item == "attr":
            attrs.append(value)
    return name, op, attrs


@dataclass
class GraphRecorder:
    """What the walk keeps: bounded aggregates, never a per-node list."""

    limits: GraphLimits
    watched_attrs: frozenset[str]
    sites: dict[tuple[str, int, str | None], list] = field(default_factory=dict)
    op_counts: dict[str, int] = field(default_factory=dict)
    attr_values: list[AttrSite] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    saver_callers: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)   # (caller, trusted)
    checkpoint_ops: frozenset[str] = frozenset()      # ops trusted only inside TensorFlow's own saver
    untrusted_checkpoint_nodes: list[tuple[str, int, str, str]] = field(default_factory=list)  # op, mg, node, why
    tags: list[str] = field(default_factory=list)
    tensorflow_version: str = ""
    meta_graphs: int = 0
    nodes: int = 0
    object_graph_variables: int = 0
    limit: WalkLimit | None = None

    def node(self, op: str, name: str, meta_graph: int, function: str | None) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise WalkLimit("max_nodes", self.limits.max_nodes)
        self.op_counts[op] = self.op_counts.get(op, 0) + 1
        key = (op, meta_graph, function)
        site = self.sites.get(key)
        if site is not None:
            site[1] += 1
            return
        if len(self.sites) >= self.limits.max_sites:
            raise WalkLimit("max_sites", self.limits.max_sites)
        self.sites[key] = [name, 1]

    def saver_caller(self, function: str, caller: str, trusted: bool) -> None:
        """Remember up to MAX_CALLERS trusted and MAX_CALLERS untrusted callers of a saver function."""
        if function not in self.saver_callers and len(self.saver_callers) >= self.limits.max_sites:
            raise WalkLimit("max_sites", self.limits.max_sites)
        callers = self.saver_callers.setdefault(function, [])
        if sum(1 for _c, kind in callers if kind == trusted) < MAX_CALLERS:
            callers.append((caller, trusted))

    def attr_value(self, site: AttrSite) -> None:
        if len(self.attr_values) >= self.limits.max_attr_values:
            raise WalkLimit("max_attr_values", self.limits.max_attr_values)
        self.attr_values.append(site)

    def op_sites(self) -> tuple[OpSite, ...]:
        return tuple(OpSite(op, mg, fn, first, count) for (op, mg, fn), (first, count) in self.sites.items())


# ---------------------------------------------------------------- the walk

def walk_saved_model(root: Any, recorder: GraphRecorder) -> None:
    """Walk every meta-graph of a SavedModel message; a ``WalkLimit`` is recorded, not raised."""
    try:
        for name, meta_graph in root.items():
            if name != "meta_graphs":
                continue
            recorder.meta_graphs += 1
            if recorder.meta_graphs > recorder.limits.max_meta_graphs:
                raise WalkLimit("max_meta_graphs", recorder.limits.max_meta_graphs)
            _walk_meta_graph(meta_graph, recorder.meta_graphs - 1, recorder)
    except WalkLimit as hit:
        recorder.limit = WalkLimit(hit.limit, hit.value)     # without the traceback: it pins buffer slices


@dataclass
class _MetaGraphCalls:
    """Per meta-graph: top-level nodes that call saver functions, and nodes the signatures name."""

    saver_nodes: dict[str, list[str]] = field(default_factory=dict)   # node -> saver functions it calls
    signature_nodes: set[str] = field(default_factory=set)
    saver_def_nodes: set[str] = field(default_factory=set)            # nodes the SaverDef names
    checkpoint_nodes: list[tuple[str, str]] = field(default_factory=list)  # top-level (op, node) of checkpoint ops
    saver_edges: int = 0                                              # entries of saver_nodes, capped
    object_functions: set[str] = field(default_factory=set)           # saver functions the object graph lists


def _walk_meta_graph(meta_graph: Any, index: int, recorder: GraphRecorder) -> None:
    calls = _MetaGraphCalls()
    for name, value in meta_graph.items():
        if name == "meta_info_def":
            _walk_meta_info(value, recorder)
        elif name == "graph_def":
            _walk_graph(value, index, recorder, calls)
        elif name == "signature_def":
            _walk_signature(value, calls, recorder.limits)
        elif name == "saver_def":
            calls.saver_def_nodes.update(_node_of(v) for _n, v in value.items())
        elif name == "object_graph_def":
            _walk_object_graph(value, recorder, calls)
    _record_saver_calls(calls, index, recorder)


def _bounded_add(names: set[str], name: str, cap: int) -> None:
    """Add to a set the trust decisions depend on; past ``cap`` entries the walk stops (a limit, not a guess)."""
    if name not in names and len(names) >= cap:
        raise WalkLimit("max_sites", cap)
    names.add(name)


def _node_of(tensor_name: str) -> str:
    return tensor_name.lstrip("^").partition(":")[0]


def _walk_object_graph(value: Any, recorder: GraphRecorder, calls: _MetaGraphCalls) -> None:
    for name, item in value.items():
        if name == "nodes":
            recorder.object_graph_variables += any(n == "variable" for n, _ in item.items())
        elif name == "concrete_functions":
            key = next((v for n, v in item.items() if n == "key"), "")
            if SAVER_FUNCTION.fullmatch(key):
                _bounded_add(calls.object_functions, key, recorder.limits.max_sites)


def _record_saver_calls(calls: _MetaGraphCalls, index: int, recorder: GraphRecorder) -> None:
    """TensorFlow's own saver functions are called only from the top-level nodes its SaverDef names, which no
    signature names, and are not callable from Python objects (absent from the object graph)."""
    for node, functions in calls.saver_nodes.items():
        named = node in calls.signature_nodes
        trusted = node in calls.saver_def_nodes and not named
        caller = f"top-level node {node!r} of meta-graph {index}" + (
            ", named by a signature" if named else "" if trusted else ", which the SaverDef does not name")
        for function in functions:
            recorder.saver_caller(function, caller, trusted)
    for function in calls.object_functions:
        recorder.saver_caller(function, f"the object graph of meta-graph {index} (callable from Python)", False)
    _record_tf1_checkpoint_nodes(calls, index, recorder)


def _saver_scope(saver_def_nodes: set[str]) -> str | None:
    """The name scope of a TF1 Saver (``save/``, ``save_1/``...), from the nodes its SaverDef names."""
    scopes = {node.rpartition("/")[0] for node in saver_def_nodes if "/" in node}
    return scopes.pop() + "/" if len(scopes) == 1 else None


def _record_tf1_checkpoint_nodes(calls: _MetaGraphCalls, index: int, recorder: GraphRecorder) -> None:
    """Top-level checkpoint ops are TensorFlow's own only inside the SaverDef's scope, and only when no
    signature reaches into that scope (a signature could feed the file name and run the save op)."""
    scope = _saver_scope(calls.saver_def_nodes)
    exposed = scope is not None and any(node.startswith(scope) for node in calls.signature_nodes)
    for op, node in calls.checkpoint_nodes:
        if scope is None:
            why = "in a graph whose SaverDef names no saver scope"
        elif not node.startswith(scope):
            why = f"outside the saver scope {scope}"
        elif exposed:
            why = f"in the saver scope {scope}, which a signature names"
        else:
            continue
        if len(recorder.untrusted_checkpoint_nodes) < MAX_CHECKPOINT_NODES:
            recorder.untrusted_checkpoint_nodes.append((op, index, node, why))


def _walk_meta_info(value: Any, recorder: GraphRecorder) -> None:
    for name, item in value.items():
        if name == "tags" and len(recorder.tags) < MAX_TAGS:      # informational only
            recorder.tags.append(item)
        elif name == "tensorflow_version":
            recorder.tensorflow_version = item


def _walk_signature(entry: Any, calls: _MetaGraphCalls, limits: GraphLimits) -> None:
    for name, signature in entry.items():
        if name != "value":
            continue
        for _kind, tensor_entry in signature.items():
            for key, tensor in tensor_entry.items():
                if key != "value":
                    continue
                for tensor_field, tensor_name in tensor.items():
                    if tensor_field == "name":
                        _bounded_add(calls.signature_nodes, _node_of(tensor_name), limits.max_sites)


def _walk_graph(graph: Any, index: int, recorder: GraphRecorder, calls: _MetaGraphCalls) -> None:
    for name, value in graph.items():
        if name == "node":
            node_name, op, callees = _walk_node(value, index, None, recorder)
            if callees:
                calls.saver_edges += len(callees)
                if calls.saver_edges > recorder.limits.max_sites:
                    raise WalkLimit("max_sites", recorder.limits.max_sites)
                calls.saver_nodes.setdefault(node_name, []).extend(callees)
            if op in recorder.checkpoint_ops:
                if len(calls.checkpoint_nodes) >= recorder.limits.max_sites:
                    raise WalkLimit("max_sites", recorder.limits.max_sites)
                calls.checkpoint_nodes.append((op, node_name))
        elif name == "library":
            for item, function in value.items():
                if item == "function":
                    _walk_function(function, index, recorder)


def _function_name(function: Any) -> str:
    """The function's name (``signature.name``; the last one wins, as protobuf merges repeated messages)."""
    name = ""
    for item, value in function.items():
        if item == "signature":
            name = next((v for n, v in value.items() if n == "name"), name)
    return name


def _walk_function(function: Any, index: int, recorder: GraphRecorder) -> None:
    name = _function_name(function)      # a first pass: the signature may follow the nodes on the wire
    if len(recorder.functions) >= recorder.limits.max_functions:
        raise WalkLimit("max_functions", recorder.limits.max_functions)
    recorder.functions.append(name)
    for item, node in function.items():
        if item != "node_def":
            continue
        node_name, _op, callees = _walk_node(node, index, name, recorder)
        for callee in callees:
            recorder.saver_caller(callee, f"node {node_name!r} of function {name} (meta-graph {index})", False)


def _walk_node(node: Any, index: int, function: str | None, recorder: GraphRecorder) -> tuple[str, str, list[str]]:
    """Record one NodeDef (last ``name``/``op`` wins, as in protobuf). Returns its name, its op and the saver
    functions it calls."""
    name, op, attrs = node_parts(node)
    recorder.node(op, name, index, function)
    called: list[str] = [op] if op.startswith(SAVER_PREFIX) and SAVER_FUNCTION.fullmatch(op) else []
    for entry in attrs:
        _walk_attr_entry(entry, op, name, index, function, recorder, called, 0)
    return name, op, list(dict.fromkeys(called))


def _walk_attr_entry(entry: Any, op: str, node: str, index: int, function: str | None, recorder: GraphRecorder,
                     called: list[str], depth: int) -> None:
    if depth > recorder.limits.max_attr_depth:
        raise WalkLimit("max_attr_depth", recorder.limits.max_attr_depth)
    key = ""
    for item, value in entry.items():
        if item == "key":
            key = value
        elif item == "value":
            for kind, content in value.items():
                _attr_content(kind, content, key, op, node, index, function, recorder, called, depth)


def _attr_content(kind: str, content: Any, key: str, op: str, node: str, index: int, function: str | None,
                  recorder: GraphRecorder, called: list[str], depth: int) -> None:
    if kind == "s":
        if key in recorder.watched_attrs:
            text = content.decode("utf-8", "replace")
            recorder.attr_value(AttrSite(op, index, function, node, key, text))
    elif kind == "func":
        _walk_func_ref(content, op, node, index, function, recorder, called, depth + 1)
    elif kind == "list":
        for sub_kind, sub in content.items():
            _attr_content(sub_kind, sub, key, op, node, index, function, recorder, called, depth + 1)


def _walk_func_ref(ref: Any, op: str, node: str, index: int, function: str | None, recorder: GraphRecorder,
                   called: list[str], depth: int) -> None:
    for item, value in ref.items():
        if item == "name" and SAVER_FUNCTION.fullmatch(value):
            called.append(value)
        elif item == "attr":
            _walk_attr_entry(value, op, node, index, function, recorder, called, depth)
