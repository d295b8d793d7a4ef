"""Dotted names of values inside an unpickled object graph (dict keys, attributes, list indexes), bounded.

Used where tensors are not torch rebuild calls: joblib's array wrappers (:mod:`raw_pickle`) and legacy tar
checkpoints' persistent ids (:mod:`tar_legacy`). Each container is expanded once, so shared subgraphs cost their
size, not their number of paths.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from weightaudit.formats.pickle_values import Call

__all__ = ["dotted_names", "MAX_VISITS"]

MAX_VISITS = 5_000_000


def dotted_names(root: Any, is_leaf: Callable[[Any], bool], max_visits: int = MAX_VISITS) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) for every value ``is_leaf`` accepts, in depth-first order (each leaf once)."""
    stack: list[tuple[Any, str]] = [(root, "")]
    seen: set[int] = set()
    while stack and max_visits > 0:
        max_visits -= 1
        value, name = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if is_leaf(value):
            yield name, value
            continue
        stack.extend(reversed(list(_children(value, name))))


def _children(value: Any, name: str) -> Iterator[tuple[Any, str]]:
    if isinstance(value, Call):
        for state in value.state:
            parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
            for part in parts:
                yield part, name
        for key, child in value.setitems:
            yield child, _join(name, key)
        for index, child in enumerate(value.appends):
            yield child, _join(name, index)
        if isinstance(value.args, tuple):
            for child in value.args:
                yield child, name
    elif isinstance(value, dict):
        for key, child in value.items():
            yield child, _join(name, key)
    elif isinstance(value, (list, tuple)):
        for index, child in enumerate(value):
            yield child, _join(name, index)


def _join(prefix: str, key: Any) -> str:
    text = key if isinstance(key, str) else str(key) if isinstance(key, int) else "?"
    return f"{prefix}.{text}" if prefix else text
