"""The iterative Keras config walker against a plain recursive reference on generated configs: every object with
a class_name once, with its config path; path-like values found; limits named, never a RecursionError."""

from __future__ import annotations

import random
from typing import Any

import pytest

from weightaudit.formats.keras_config import looks_like_path, walk_config


def _random_config(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 6 or roll < 0.3:
        return rng.choice([1, 2.5, None, True, "relu", "same", "/etc/passwd", "gs://b/v", "a..b", "../x", "~/k"])
    if roll < 0.55:
        return [_random_config(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    node = {f"k{i}": _random_config(rng, depth + 1) for i in range(rng.randint(0, 4))}
    if rng.random() < 0.6:
        node["class_name"] = rng.choice(["Dense", "Functional", "function", "__lambda__"])
        node["config"] = _random_config(rng, depth + 1)
    return node


def _reference(node: Any, path: str = "") -> tuple[list[str], list[str]]:
    objects: list[str] = []
    values: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            objects.append(path)
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and looks_like_path(value):
                values.append(child)
            sub_objects, sub_values = _reference(value, child)
            objects += sub_objects
            values += sub_values
    elif isinstance(node, list):
        for index, value in enumerate(node):
            child = f"{path}[{index}]"
            if isinstance(value, str) and looks_like_path(value):
                values.append(child)
            sub_objects, sub_values = _reference(value, child)
            objects += sub_objects
            values += sub_values
    return objects, values


@pytest.mark.parametrize("seed", range(60))
def test_walk_matches_recursive_reference(seed: int) -> None:
    config = _random_config(random.Random(seed))
    walk = walk_config(config)
    objects, values = _reference(config)
    assert [o.path for o in walk.objects] == objects
    assert sorted(v.path for v in walk.values) == sorted(values)
    assert walk.limit is None


@pytest.mark.parametrize(("text", "expected"), [
    ("/etc/passwd", True), ("~/.ssh/id_rsa", True), ("../../x", True), ("a/../b", True), ("file:///x", True),
    ("https://h/x", True), ("gs://bucket/v", True), ("C:\\\\x", True), ("\\\\\\\\srv\\\\share", True),
    ("relu", False), ("dense/kernel", False), ("a..b", False), ("channels_last", False), ("", False),
    ("tf.__operators__.add", False), ("3.5", False),
])
def test_looks_like_path(text: str, expected: bool) -> None:
    assert looks_like_path(text) is expected


def test_depth_and_size_limits_are_named_not_recursion_errors() -> None:
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    assert walk_config(deep).limit == "nesting_depth"
    wide = [{"class_name": "Dense"}] * 1000
    walk = walk_config(wide, max_nodes=500)
    assert walk.limit == "objects_visited" and len(walk.objects) < 500
