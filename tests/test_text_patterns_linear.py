"""Every regular expression in weightaudit/ finishes on adversarial 1 MB inputs (issue 10: a 120 KB chat template
of escaped quotes took 63 s under a backtracking pattern; 4.9 MB never finished).

The patterns are collected two ways: from the source (every ``re.compile/search/match/...`` call with a literal
pattern, found with ``ast``) and from the imported modules (every compiled pattern held at module level, also
inside tuples, lists and dicts). Each runs in a child process against each adversarial input, with ``search``
and an exhausted ``finditer``; a pattern that has not finished after ``HANG_SECONDS`` is reported by name. The
bound is a hang detector, not a performance test: a linear pattern takes milliseconds here.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import re
import selectors
import subprocess
import sys
from pathlib import Path

import weightaudit

PACKAGE = Path(weightaudit.__file__).resolve().parent
SIZE = 1_000_000
HANG_SECONDS = 5.0     # per pattern and input; a linear pattern needs milliseconds, a quadratic one hours
READY_SECONDS = 120.0  # building the inputs on a loaded machine
CALLS = {"compile": 1, "search": 2, "match": 2, "fullmatch": 2, "findall": 2, "finditer": 2, "split": 3,
         "sub": 4, "subn": 4}
# Compiled patterns only ever applied with .match/.fullmatch (to a file name): checked with .match, as they run.
# Literal patterns called as re.match/re.fullmatch are found in the source (anchored_sources).
NAME_ONLY = {r".*\.(py|sh|ipynb|yaml|yml|toml|cfg)$": "discover.py: .match on a file name"}
# Repeated units that make backtracking patterns blow up (escaped quotes, unclosed delimiters, identifier-like
# runs, separators), each also with a terminator that forces a failed match at the end.
UNITS = ["a", " ", "\n", "_", ".", "\\'", '\\"', "{{", "{%", "format(", "a-", "api_key=", "e+1", "layers.0."]


def _flags(node: ast.AST | None) -> int:
    if node is None:
        return 0
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "re":
        return int(getattr(re, node.attr))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flags(node.left) | _flags(node.right)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, int) else 0


def _literal_calls() -> list[tuple[Path, ast.Call]]:
    """Every ``re.<function>("literal", ...)`` call in the package."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                    and node.func.attr in CALLS and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, (str, bytes))):
                calls.append((path, node))
    return calls


def anchored_sources() -> set[str]:
    """Literal patterns only ever called as re.match/re.fullmatch: they run from position 0 only, so they are
    checked with .match (a search would try every start position, which the code never does)."""
    anchored = {node.args[0].value for _, node in _literal_calls() if node.func.attr in ("match", "fullmatch")}
    elsewhere = {node.args[0].value for _, node in _literal_calls() if node.func.attr not in ("match", "fullmatch")}
    return {_text(source) for source in anchored - elsewhere}


def _from_source() -> dict[tuple[str, int], str]:
    found: dict[tuple[str, int], str] = {}
    for path, node in _literal_calls():
        position = CALLS[node.func.attr]
        flags = next((k.value for k in node.keywords if k.arg == "flags"),
                     node.args[position] if len(node.args) > position else None)
        found.setdefault((node.args[0].value, _flags(flags)), f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def _from_modules() -> dict[tuple[str, int], str]:
    found: dict[tuple[str, int], str] = {}
    for info in pkgutil.walk_packages([str(PACKAGE)], "weightaudit."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - an optional module that cannot import holds no pattern we run
            continue
        for name, value in vars(module).items():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else [value]
            for item in list(items)[:1000]:
                for pattern in (item if isinstance(item, tuple) else (item,)):
                    if isinstance(pattern, re.Pattern):
                        found.setdefault((pattern.pattern, pattern.flags & ~re.UNICODE), f"{info.name}.{name}")
    return found


def _from_data() -> dict[tuple[str, int], str]:
    """Patterns compiled from data files: the licence-text rules of data/licenses.yaml."""
    from weightaudit.openness.licenses import _table

    return {(p.pattern, p.flags & ~re.UNICODE): f"data/licenses.yaml text rule for {license_id}"
            for p, license_id in _table().text_rules}


def all_patterns() -> dict[tuple[str, int], str]:
    return {**_from_data(), **_from_modules(), **_from_source()}


CHILD = r"""
import json, re, sys
patterns = json.loads(sys.stdin.readline())
first, units, size, name_only = patterns.pop(), patterns.pop(), patterns.pop(), set(patterns.pop())
inputs = []
for unit in units:
    text = (unit * (size // len(unit) + 1))[:size]
    inputs += [text, text[:-1] + "!"]
as_bytes = [text.encode("latin-1") for text in inputs]
print("ready", flush=True)
for index, (source, flags, is_bytes) in enumerate(patterns[first:], first):
    compiled = re.compile(source.encode("latin-1") if is_bytes else source, flags)
    for number, text in enumerate(as_bytes if is_bytes else inputs):
        print(f"{index} {number}", flush=True)
        if source in name_only:
            compiled.match(text)
            continue
        if compiled.search(text) is not None:   # no match: finditer would repeat the same failed scan
            for _ in compiled.finditer(text):
                pass
print("done", flush=True)
"""


def _run_from(first: int, payload: list) -> tuple[int, int] | None:
    """Run the patterns from index ``first``; the (pattern, input) still running after HANG_SECONDS, or None.
    The child's lines are read straight from the pipe (no buffered reader that could hold lines back)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    child.stdin.write((json.dumps(payload + [first]) + "\n").encode())
    child.stdin.flush()
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ)
    last, pending, ready = (first, 0), b"", False
    try:
        while selector.select(timeout=HANG_SECONDS if ready else READY_SECONDS):
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the pattern child died after pattern {last[0]}")
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line == b"done":
                    return None
                if line == b"ready":
                    ready = True
                else:
                    index, number = (int(x) for x in line.split())
                    last = (index, number)
        return last
    finally:
        child.kill()
        child.wait()


def _text(source: str | bytes) -> str:
    return source.decode("latin-1") if isinstance(source, bytes) else source


def slow_patterns() -> list[str]:
    patterns = sorted(all_patterns().items(), key=lambda item: (repr(item[0]), item[1]))
    payload = [[_text(source), flags, isinstance(source, bytes)] for (source, flags), _ in patterns]
    payload += [sorted(set(NAME_ONLY) | anchored_sources()), SIZE, UNITS]
    slow, first = [], 0
    while (stuck := _run_from(first, payload)) is not None:
        index, number = stuck
        (source, _), where = patterns[index]
        slow.append(f"{where}: {source!r} runs past {HANG_SECONDS} s on 1 MB of {UNITS[number // 2]!r}")
        first = index + 1
    return slow


def test_patterns_are_collected() -> None:
    patterns = all_patterns()
    assert len(patterns) > 30
    assert any(where.startswith("weightaudit/rules/secrets.py") for where in patterns.values())
    assert any(where.startswith("weightaudit/openness/") for where in patterns.values())
    assert any(isinstance(source, bytes) for source, _ in patterns)
    assert any(where.startswith("data/licenses.yaml") for where in patterns.values())


def test_every_pattern_finishes_on_one_megabyte_adversarial_inputs() -> None:
    assert slow_patterns() == []
