"""Keras config rules (WA430–WA434, WA437–WA439): every object a config names, judged against Keras' own
built-in objects.

The configs are the ``keras_config`` (``.keras`` ``config.json`` or legacy ``.h5`` ``model_config``), the
``keras_training_config`` (legacy ``.h5`` ``training_config``) and ``keras_metadata`` (SavedModel
``keras_metadata.pb``) facts. Each is walked whole (weightaudit/formats/keras_config.py) and every object with a
``class_name`` is resolved the way Keras resolves it, but on paper: ``module + "." + class_name`` against the
names Keras exports (``weightaudit/data/keras_allowlist.json``, generated from the Keras 3 and tf-keras sources by
fixtures/make_keras_allowlist.py), bare legacy class names against Keras 2's, functions of ``module: "builtins"``
against Keras' BUILTIN_MODULES. Anything else is high; what runs code or loads files is critical. Findings name
the object and its config path (``config.layers[3].config.activation``). Bytecode is hashed, never unmarshalled.

The rules themselves (ids, help, severities) are declared in :mod:`~weightaudit.rules.keras_rule_defs`, whose checks
import this module when a file carries a Keras config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Mapping

from weightaudit.formats.keras_config import (
    MAX_DEPTH, MAX_NODES, ConfigObject, ConfigValue, names_safe_mode_switch, show_path, walk_config,
)
from weightaudit.model import Finding, LoadedFile, Severity
from weightaudit.rules import get_rule
from weightaudit.rules.base import AuditContext
from weightaudit.rules.keras_rule_defs import ALLOWABLE
from weightaudit.rules.keras_rule_defs import RULES as _RULES

KERAS_ROOTS = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras")
DATA_FORMS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"})
CODE_MODULES = frozenset({"os", "posix", "nt", "subprocess", "builtins", "sys", "shutil", "socket", "pty", "importlib",
                          "runpy", "pickle", "marshal", "ctypes", "code", "codeop", "webbrowser", "urllib", "http",
                          "requests", "pathlib", "io", "tempfile", "multiprocessing", "threading", "asyncio"})
DANGEROUS_LEAVES = frozenset({
    "get_file", "load_model", "load_weights", "save_model", "save_weights", "model_from_json", "model_from_yaml",
    "deserialize_keras_object", "enable_unsafe_deserialization", "set_global_attribute", "func_load", "exec", "eval",
    "compile", "system", "popen", "Popen", "__import__", "open", "load_img", "save_img", "clear_session",
    "register_keras_serializable",
})
TF_SYMBOL_DANGER = ("io.", "py_function", "numpy_function", "py_func", "compat.v1.py_func", "raw_ops.", "print",
                    "summary.", "saved_model.", "data.", "load_op_library", "load_library", "gfile", "compat.v1.io",
                    "debugging.experimental", "keras.utils", "keras.models", "keras.saving")
TF_MATH_NAMESPACES = ("math.", "nn.", "linalg.", "__operators__.", "signal.", "bitwise.", "dtypes.", "image.",
                      "sparse.", "ragged.", "random.", "strings.")
MAX_FINDINGS_PER_RULE = 1_000   # per file, before the pipeline's own (policy) cap: bounds memory on huge configs


@dataclass(frozen=True)
class Allowlist:
    names: frozenset[str]            # exported + internal dotted names relative to keras[.src] / tf_keras[.src]
    legacy: frozenset[str]           # bare class names (Keras 2 configs)
    builtin_functions: frozenset[str]
    registered: frozenset[str]       # "Custom>Adam": Keras' own @register_keras_serializable() classes
    flagged: Mapping[str, Mapping[str, Any]]
    dangerous: Mapping[str, str]


@lru_cache(maxsize=1)
def allowlist() -> Allowlist:
    """weightaudit/data/keras_allowlist.json (schema in its ``_schema`` key)."""
    from importlib import resources

    text = resources.files("weightaudit").joinpath("data/keras_allowlist.json").read_text(encoding="utf-8")
    data = json.loads(text)
    groups = data["groups"]
    return Allowlist(
        names=frozenset(groups["exported"]["names"]) | frozenset(groups["internal"]["names"]),
        legacy=frozenset(groups["legacy_names"]["names"]) | frozenset(data["flagged"]),
        builtin_functions=frozenset(groups["builtin_functions"]["names"]),
        registered=frozenset(groups["registered_names"]["names"]),
        flagged=data["flagged"], dangerous=data["dangerous"])


def relative_module(module: str) -> str | None:
    """``keras.src.layers.core.dense`` -> ``layers.core.dense``; None when outside Keras."""
    for root in KERAS_ROOTS:
        if module == root or module.startswith(root + "."):
            rest = module[len(root) + 1:]
            return rest[4:] if rest.startswith("src.") else "" if rest == "src" else rest
    return None


@dataclass(frozen=True)
class Verdict:
    rule_id: str
    message: str
    severity: Severity | None = None     # None: the rule's default
    subpath: str = ""                    # appended to the object's config path (".config.vocabulary")


def _bytecode_summary(blob: Any) -> str:
    import base64
    import binascii
    import hashlib

    text = blob if isinstance(blob, str) else ""
    try:
        raw = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raw = text.encode("utf-8", "replace")
    return f"{len(raw)} bytes of marshalled bytecode, sha256 {hashlib.sha256(raw).hexdigest()[:16]}"


def _inner(node: dict) -> dict:
    return node["config"] if isinstance(node.get("config"), dict) else {}


def _function_name(node: dict) -> str:
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else config
    return str(name) if name is not None else "?"


def _is_dangerous(dotted: str, leaf: str) -> str | None:
    table = allowlist().dangerous
    if dotted in table:
        return table[dotted]
    if leaf in DANGEROUS_LEAVES:
        return "reads or downloads files, loads nested models, switches safe_mode off or runs code"
    return None


def judge_function(module: Any, name: str) -> Verdict | None:
    """A ``{"class_name": "function"}`` object: Keras calls ``module.name`` when it deserializes."""
    leaf = name.rpartition(".")[2]
    dotted = f"{module}.{name}" if isinstance(module, str) and module else name
    reason = _is_dangerous(dotted, leaf)
    if reason:
        return Verdict("WA433", f"config references function {dotted} ({reason})")
    lists = allowlist()
    if not isinstance(module, str) or module == "builtins":
        if name in lists.builtin_functions:
            return None
        return Verdict("WA437", f"function {name!r} (module {module!r}) is not a Keras built-in function")
    rel = relative_module(module)
    if rel is None:
        return _external(module, f"function {name!r}")
    if f"{rel}.{name}".strip(".") in lists.names:
        return None
    return Verdict("WA437", f"function {dotted} is not a Keras built-in modelling function")


def _external(module: str, what: str) -> Verdict:
    root = module.split(".")[0]
    severity = Severity.CRITICAL if root in CODE_MODULES else None
    return Verdict("WA431", f"{what} is loaded from module {module!r}, outside Keras (imported at load time)",
                   severity)


def judge_class(module: Any, cls: str) -> Verdict | None:
    lists = allowlist()
    if module is None or module == "":
        if cls in lists.legacy or cls in lists.registered:
            return None
        if ">" in cls:
            return Verdict("WA434", f"custom object {cls!r} needs user code to load")
        return Verdict("WA437", f"object {cls!r} is not a Keras built-in")
    if not isinstance(module, str):
        return Verdict("WA437", f"object {cls!r} has a non-string module {module!r}")
    rel = relative_module(module)
    if rel is None:
        return _external(module, f"object {cls!r}")
    if f"{rel}.{cls}".strip(".") in lists.names or cls in lists.flagged:
        return None
    reason = _is_dangerous(f"{module}.{cls}", cls.rpartition(".")[2])     # get_file/load_model named as a class
    if reason:
        return Verdict("WA433", f"config references {module}.{cls} ({reason})")
    return Verdict("WA437", f"object {module}.{cls} is not a Keras built-in object")


def _lambda_verdict(node: dict) -> Verdict | None:
    config = _inner(node)
    function = config.get("function")
    if isinstance(function, dict):
        if function.get("class_name") == "__lambda__":
            return None     # the nested __lambda__ object is reported itself
        target = f"{function.get('module')}.{_function_name(function)}"
        return Verdict("WA430", f"Lambda layer calling {target} with config-chosen arguments", Severity.HIGH)
    if config.get("function_type") == "lambda" or isinstance(function, (list, tuple)):
        blob = function[0] if isinstance(function, (list, tuple)) and function else function
        return Verdict("WA430", f"Lambda layer with marshalled bytecode ({_bytecode_summary(blob)})",
                       Severity.CRITICAL)
    module = config.get("module")
    dotted = f"{module}.{function}" if isinstance(module, str) and module else str(function)
    runs_code = (isinstance(module, str) and module.split(".")[0] in CODE_MODULES) \
        or str(function).rpartition(".")[2] in DANGEROUS_LEAVES
    return Verdict("WA430", f"Lambda layer calling {dotted[:120]!r} (resolved from that module when loaded)",
                   Severity.CRITICAL if runs_code else Severity.HIGH)


def _tf_symbol_verdict(cls: str, function: str) -> Verdict:
    """TFOpLambda: symbols that touch files, the network or Python are critical; a namespace outside TF's math
    namespaces is high (not shown to be data-only); top-level and math symbols keep the rule's medium."""
    symbol = function
    while symbol.startswith(("compat.v1.", "compat.v2.")):     # tf.compat.v1.transpose is tf.transpose
        symbol = symbol[len("compat.v1."):]
    if symbol.startswith(TF_SYMBOL_DANGER) or symbol.rpartition(".")[2] in DANGEROUS_LEAVES:
        return Verdict("WA432", f"{cls} layer calls TF symbol {function!r} (file, network or Python access)",
                       Severity.CRITICAL)
    if "." in symbol and not symbol.startswith(TF_MATH_NAMESPACES):
        return Verdict("WA432", f"{cls} layer calls TF symbol {function!r}, outside TensorFlow's math "
                       "namespaces", Severity.HIGH)
    return Verdict("WA432", f"{cls} layer calls TF symbol {function!r}")


def _flagged_verdicts(node: dict, cls: str) -> Iterator[Verdict]:
    entry = allowlist().flagged[cls]
    config = _inner(node)
    kind = entry.get("kind")
    if cls == "Lambda":
        verdict = _lambda_verdict(node)
        if verdict is not None:
            yield verdict
    elif kind in ("code", "external-model"):
        yield Verdict("WA439", f"built-in layer {cls}: {entry.get('reason')}")
    elif kind == "tf-symbol":
        yield _tf_symbol_verdict(cls, str(config.get("function", "")))
    for argument in entry.get("path_arguments", ()):
        value = config.get(argument)
        if isinstance(value, str) and value:
            yield Verdict("WA438", f"{cls} argument {argument!r} is a file path or URL {value[:120]!r}, "
                                   "opened when the model loads", subpath=f".config.{argument}")


def judge_object(node: dict) -> list[Verdict]:
    """Every verdict on one config object (empty when it is a plain Keras built-in)."""
    cls = node["class_name"]
    module = node.get("module")
    verdicts: list[Verdict] = []
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered and registered not in allowlist().registered:
        verdicts.append(Verdict("WA434", f"custom object {registered!r} needs user code to load"))
    if cls in DATA_FORMS:
        return verdicts
    if cls == "__lambda__":
        blob = _inner(node).get("code") or _inner(node).get("value")
        blob = blob[0] if isinstance(blob, (list, tuple)) and blob else blob
        verdicts.append(Verdict("WA430", f"serialized Python lambda ({_bytecode_summary(blob)})", Severity.CRITICAL))
        return verdicts
    if cls == "__typespec__":
        if not (isinstance(module, str) and module.startswith(("tensorflow.", "keras.", "tf_keras."))):
            verdicts.append(_external(str(module), f"type spec {node.get('spec_name')!r}"))
        return verdicts
    if cls == "function":
        found = judge_function(module, _function_name(node))
        return verdicts + ([found] if found else [])
    if _inner(node).get("function_type") == "lambda" and cls != "Lambda":
        verdicts.append(Verdict("WA430", f"{cls} with a marshalled-bytecode function", Severity.CRITICAL))
    found = judge_class(module, cls)
    if found is not None:
        verdicts.append(found)
    elif cls in allowlist().flagged:
        verdicts.extend(_flagged_verdicts(node, cls))
    return verdicts


def judge_value(value: ConfigValue) -> Verdict | None:
    if value.key == "safe_mode":
        if value.value is True:
            return None
        return Verdict("WA439", f"config sets safe_mode={value.value!r} for a nested load")
    text = str(value.value)
    if names_safe_mode_switch(text):
        return Verdict("WA439", f"config names Keras' safe-mode switch {text[:80]!r}")
    if value.owner in ("Lambda", "__lambda__", "__bytes__") and value.key in ("function", "code", "value", ""):
        return None    # bytecode blobs are reported by WA430
    flagged = allowlist().flagged.get(value.owner or "")
    if flagged and value.key in flagged.get("path_arguments", ()) and value.path.endswith(f"config.{value.key}"):
        return None    # reported with the layer that opens it (judge_object)
    owner = f" of {value.owner}" if value.owner else ""
    return Verdict("WA438", f"file path or URL {text[:120]!r} in a config value{owner}")


# ---------------------------------------------------------------- one analysis per audit

def _sources(loaded: LoadedFile) -> Iterator[tuple[str, Any]]:
    if loaded.facts.get("keras_config") is not None:
        yield "", loaded.facts["keras_config"]
    if loaded.facts.get("keras_training_config") is not None:
        yield "training_config", loaded.facts["keras_training_config"]
    for index, config in enumerate(loaded.facts.get("keras_metadata", ()) or ()):
        yield f"keras_metadata[{index}]", config


def _where(path: str, layer: str) -> str:
    return f"{show_path(path)} (layer {layer})" if layer else show_path(path)


def _verdicts(walk: Any) -> Iterator[tuple[ConfigObject | ConfigValue, Verdict]]:
    for obj in walk.objects:
        for verdict in judge_object(obj.node):
            yield obj, verdict
    for value in walk.values:
        verdict = judge_value(value)
        if verdict is not None:
            yield value, verdict


def object_names(node: dict) -> frozenset[str]:
    """The names a user's policy may allow an object by: registered name, module.class, module.function."""
    cls, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
    names = {str(registered)} if isinstance(registered, str) else set()
    leaf = _function_name(node) if cls == "function" else cls
    names.add(f"{module}.{leaf}" if isinstance(module, str) and module else str(leaf))
    return frozenset(names)


def file_findings(loaded: LoadedFile) -> list[Finding]:
    return [finding for finding, _names in keyed_findings(loaded)]


def keyed_findings(loaded: LoadedFile) -> list[tuple[Finding, frozenset[str]]]:
    """Every Keras config finding for one file: at most MAX_FINDINGS_PER_RULE per rule, then one count (the
    pipeline's own per-rule cap applies after). A walk stopped by a limit is WA132 (the loader already reported
    it for the model config and left the file unverified; a SavedModel's keras_metadata is reported here)."""
    found: list[tuple[Finding, frozenset[str]]] = []
    counts: dict[str, int] = {}
    for prefix, config in _sources(loaded):
        depth, nodes = loaded.facts.get("keras_walk_limits") or (MAX_DEPTH, MAX_NODES)
        walk = walk_config(config, prefix, depth, nodes)
        for item, verdict in _verdicts(walk):
            counts[verdict.rule_id] = counts.get(verdict.rule_id, 0) + 1
            if counts[verdict.rule_id] > MAX_FINDINGS_PER_RULE:
                continue
            path = f"{item.path}{verdict.subpath}" if item.path or not verdict.subpath else verdict.subpath[1:]
            names = object_names(item.node) if isinstance(item, ConfigObject) and not verdict.subpath else frozenset()
            found.append((_RULES[verdict.rule_id].finding(loaded.path, f"{verdict.message} at "
                                                           f"{_where(path, item.layer)}", where=show_path(path),
                                                           severity=verdict.severity), names))
        if walk.limit and prefix:
            found.append((get_rule("WA132").finding(loaded.path, f"Keras config {prefix} not walked whole: "
                                                    f"limits.{walk.limit}", where=prefix), frozenset()))
    for rule_id, count in counts.items():
        if count > MAX_FINDINGS_PER_RULE:
            worst = max((f.severity for f, _ in found if f.rule_id == rule_id), default=_RULES[rule_id].severity)
            found.append((_RULES[rule_id].finding(loaded.path, f"{count - MAX_FINDINGS_PER_RULE:,} more {rule_id} "
                                                  "findings in this file's Keras config were not listed",
                                                  severity=worst), frozenset()))
    return found


_CACHE: list[Any] = [None, None]


def _all_findings(ctx: AuditContext) -> list[tuple[Finding, frozenset[str]]]:
    if _CACHE[0] is not ctx:
        _CACHE[0], _CACHE[1] = ctx, [item for loaded in ctx.files for item in keyed_findings(loaded)]
    return _CACHE[1]


def rule_findings(rule_id: str, ctx: AuditContext, cfg: Mapping[str, Any]) -> list[Finding]:
    """One rule's findings for the release (its check, in keras_rule_defs, calls here when a file carries a Keras
    config)."""
    also = ("WA132",) if rule_id == "WA437" else ()     # walk limits are reported with the unknown-object check
    allowed = {str(name) for name in cfg.get("allow", ()) or ()} if rule_id in ALLOWABLE else set()
    return [f for f, names in _all_findings(ctx) if (f.rule_id == rule_id or f.rule_id in also)
            and not (names & allowed and f.severity < Severity.CRITICAL)]
