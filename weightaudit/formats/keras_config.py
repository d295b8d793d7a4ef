"""Walk a parsed Keras model config (``.keras`` ``config.json``, legacy ``.h5`` ``model_config``) without recursion.

The walk visits every dict and list, iteratively and within named limits, and yields:

- :class:`ConfigObject`: every dict with a ``class_name`` (layers, nested models, wrappers, initializers,
  regularizers, constraints, optimizers, schedules, losses, metrics, functions, ``__lambda__``...), with its
  *config path* (``config.layers[3].config.activation``) and the layer path (``outer/inner/dense``) it sits in;
- :class:`ConfigValue`: every string value that looks like a file path or URL, and every ``safe_mode`` key,
  with the ``class_name`` of the object that holds it.

Nothing is resolved or imported: rules (weightaudit/rules/keras_rules.py) judge the objects against Keras'
own built-in names. Limits: ``nesting_depth`` levels and ``objects_visited`` values (weightaudit/limits.py); a walk that hits one
names it in ``ConfigWalk.limit`` (the loader turns that into WA132 and an unverified file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from weightaudit.limits import DEFAULT_LIMITS

MAX_DEPTH = DEFAULT_LIMITS.nesting_depth        # Keras configs nest a few dozen levels
MAX_NODES = DEFAULT_LIMITS.objects_visited      # dicts, lists and values visited per config
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}:/")      # file:/ http:// gs:// s3:// hdfs:// ...
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_SAFE_MODE = re.compile(r"(?<![A-Za-z0-9_])safe_mode(?:_saving)?(?![A-Za-z0-9_])")


@dataclass(frozen=True)
class ConfigObject:
    path: str          # config path of the object (``config.layers[3]``); "" for the root
    layer: str         # enclosing layer names joined by "/"
    node: dict


@dataclass(frozen=True)
class ConfigValue:
    path: str          # config path of the value
    layer: str
    key: str           # the key that holds it ("" inside a list)
    value: Any
    owner: str | None  # class_name of the nearest object holding it


@dataclass
class ConfigWalk:
    objects: list[ConfigObject] = field(default_factory=list)
    values: list[ConfigValue] = field(default_factory=list)
    limit: str | None = None


def looks_like_path(text: str) -> bool:
    """A string a loader could open or fetch: absolute, home-relative, ``..`` component, URL or drive path."""
    value = text.strip()
    if not value:
        return False
    if value[0] in "/\\~" or _SCHEME.match(value) or _DRIVE.match(value):
        return True
    return ".." in value.replace("\\", "/").split("/")


def _suspicious(value: Any) -> bool:
    """A path/URL, or a string naming Keras' safe-mode switch (``enable_unsafe_deserialization``...)."""
    if not isinstance(value, str):
        return False
    return looks_like_path(value) or names_safe_mode_switch(value)


def names_safe_mode_switch(text: str) -> bool:
    """``enable_unsafe_deserialization``, ``safe_mode`` or ``safe_mode_saving`` as a whole identifier."""
    return "unsafe_deserialization" in text or _SAFE_MODE.search(text) is not None


def _child_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _layer_label(node: dict, layer: str) -> str:
    name = node.get("name")
    config = node.get("config")
    if not isinstance(name, str) and isinstance(config, dict):
        name = config.get("name")
    if isinstance(name, str) and name and isinstance(node.get("class_name"), str):
        return f"{layer}/{name}" if layer else name
    return layer


def walk_config(config: Any, prefix: str = "", max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> ConfigWalk:
    """Every object and suspicious value of ``config``; ``prefix`` starts the config paths."""
    walk = ConfigWalk()
    stack: list[tuple[Any, str, str, str | None, int]] = [(config, prefix, "", None, 0)]
    visited = 0
    while stack:
        node, path, layer, owner, depth = stack.pop()
        visited += 1
        if visited > max_nodes:
            walk.limit = "objects_visited"
            break
        if depth > max_depth:
            walk.limit = "nesting_depth"
            continue
        if isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str):
                walk.objects.append(ConfigObject(path, layer, node))
                owner = cls
            inner = _layer_label(node, layer)
            for key, value in reversed(list(node.items())):
                child = _child_path(path, key)
                if key == "safe_mode" or _suspicious(value):
                    walk.values.append(ConfigValue(child, inner, str(key), value, owner))
                if isinstance(value, (dict, list)):
                    stack.append((value, child, inner, owner, depth + 1))
        elif isinstance(node, list):
            for index in range(len(node) - 1, -1, -1):
                value = node[index]
                child = _child_path(path, index)
                if _suspicious(value):
                    walk.values.append(ConfigValue(child, layer, "", value, owner))
                elif isinstance(value, (dict, list)):
                    stack.append((value, child, layer, owner, depth + 1))
    return walk


def show_path(path: str) -> str:
    return path or "(root)"


# ---------------------------------------------------------------- facts for reports

_KERAS_MODULE_ROOTS = ("keras", "tf_keras")


def _is_keras(module: Any) -> bool:
    return isinstance(module, str) and any(module == r or module.startswith(r + ".") for r in _KERAS_MODULE_ROOTS)


def config_facts(config: Any, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> dict[str, Any]:
    """Layers (nested), Lambda layers and custom objects of a model config, for facts and reports.

    ``keras_config_limit`` names the limit (weightaudit/limits.py) the walk hit, else None.
    """
    walk = walk_config(config, "", max_depth, max_nodes)
    layers: list[dict[str, Any]] = []
    lambdas: set[str] = set()
    custom: set[str] = set()
    for item in walk.objects:
        node, cls = item.node, item.node.get("class_name")
        inner = node.get("config") if isinstance(node.get("config"), dict) else {}
        label = _layer_label(node, item.layer)
        if label != item.layer and ("layers" in inner or "function" in inner or "inbound_nodes" in node
                                    or "build_config" in node):
            layers.append({"path": label, "class_name": cls, "module": node.get("module")})
        if cls in ("Lambda", "__lambda__") or inner.get("function_type") == "lambda":
            lambdas.add(label or "/")
        registered, module = node.get("registered_name"), node.get("module")
        if isinstance(registered, str) and ">" in registered:
            custom.add(registered)
        if isinstance(module, str) and not _is_keras(module) and module != "builtins":
            custom.add(f"{module}.{cls}")
    model_class = config.get("class_name") if isinstance(config, dict) else None
    return {"model_class": model_class, "layers": layers, "lambda_layers": sorted(lambdas),
            "custom_objects": sorted(custom), "keras_config_limit": walk.limit,
            "keras_walk_limits": [max_depth, max_nodes]}
