"""Judge every global and callable a pickle names against the allowlist (fail closed).

:class:`Classifier` resolves a ``GLOBAL``/``STACK_GLOBAL`` the way CPython's ``Unpickler.find_class`` does —
``__import__(module)``, then one ``getattr`` per dotted part of ``name`` (protocol 4) — and judges the object
that chain reaches:

- ``ALLOWED``: exact entry of ``data/pickle_allowlist.yaml`` (or of the user's policy), undotted name;
- ``CONTAINER``: a reviewed ML-library data-container class (medium when built by NEWOBJ/BUILD);
- ``DANGEROUS``: the full path or any suffix of the attribute chain falls under a category of
  ``data/pickle_dangerous.yaml`` (``pathlib`` + ``os.system`` reaches ``os.system``), a dotted chain ends in a
  known dangerous method (``Path.write_text``) or walks through a dunder attribute (``__globals__``);
- ``UNKNOWN``: everything else — reported high, never allowed.

Protocol <3 renaming (``_compat_pickle``) is applied by the machine, which keeps the names as written in
``Global.raw_*``; both spellings are judged and the worse verdict wins.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Any, Iterable

from weightaudit.formats.pickle_values import Call, DynamicGlobal, ExtRef, Global, render
from weightaudit.rules.pickle_allowlist import (
    AllowEntry, Allowlist, DangerTable, builtin_allowlist, danger_table,
)

__all__ = ["Level", "Verdict", "Classifier", "classifier_for", "DEFAULT_CLASSIFIER", "MAX_NAME_PARTS",
           "MAX_CACHED_NAMES"]

MAX_NAME_PARTS = 32          # a longer attribute chain is judged an attribute walk without matching every suffix
MAX_CACHED_NAMES = 100_000   # verdicts remembered per classifier (one pickle may name a global a million times)


class Level(enum.IntEnum):
    ALLOWED = 0
    CONTAINER = 1
    UNKNOWN = 2
    DANGEROUS = 3


@dataclass(frozen=True)
class Verdict:
    """How a global or callable was judged. ``why`` is a short reason for reports."""

    level: Level
    name: str
    why: str
    category: str = ""
    on_import: bool = False
    entry: AllowEntry | None = None

    @property
    def label(self) -> str:
        return f"{self.category}: {self.why}" if self.category else self.why


def _is_dunder(part: str) -> bool:
    return len(part) > 4 and part.startswith("__") and part.endswith("__")


@dataclass(frozen=True)
class Classifier:
    allow: Allowlist
    danger: DangerTable
    _cache: dict[tuple[str, str], Verdict] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def judge_name(self, module: str, name: str) -> Verdict:
        key = (module, name)
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._judge_name(module, name)
            if len(self._cache) < MAX_CACHED_NAMES:
                self._cache[key] = verdict
        return verdict

    def _judge_name(self, module: str, name: str) -> Verdict:
        qualname = f"{module}.{name}"
        if name.count(".") >= MAX_NAME_PARTS:
            return Verdict(Level.DANGEROUS, qualname[:200], f"an attribute chain of more than {MAX_NAME_PARTS} parts",
                           "attribute-walker")
        parts = name.split(".")
        if len(parts) == 1:
            entry = self.allow.get(qualname)
            if entry is not None:
                level = Level.CONTAINER if entry.container else Level.ALLOWED
                return Verdict(level, qualname, entry.reason, entry=entry)
        dangerous = self._dangerous(qualname, parts)
        if dangerous is not None:
            return dangerous
        why = "not allowlisted" if len(parts) == 1 else "attribute chain to an object that is not allowlisted"
        return Verdict(Level.UNKNOWN, qualname, why)

    def _dangerous(self, qualname: str, parts: list[str]) -> Verdict | None:
        candidates = [qualname] + [".".join(parts[i:]) for i in range(len(parts))]
        aliases = self.danger.module_aliases
        candidates += [".".join([aliases[p], *parts[i + 1:]]) for i, p in enumerate(parts) if p in aliases]
        for candidate in candidates:
            category = self.danger.category_of(candidate)
            if category is not None:
                return Verdict(Level.DANGEROUS, qualname, category.reason, category.category, category.on_import)
        if any(_is_dunder(p) for p in parts):
            return Verdict(Level.DANGEROUS, qualname, self.danger.walker_reason, "attribute-walker")
        if len(parts) > 1 and parts[-1] in self.danger.attribute_names:
            return Verdict(Level.DANGEROUS, qualname, self.danger.attribute_reason, "dangerous-method")
        return None

    def judge_global(self, ref: Global) -> Verdict:
        verdict = self.judge_name(ref.module, ref.name)
        if verdict.level is Level.ALLOWED:
            return verdict                    # what find_class reaches after _compat_pickle renaming
        if ref.raw_module and (ref.raw_module, ref.raw_name) != (ref.module, ref.name):
            raw = self.judge_name(ref.raw_module, ref.raw_name)
            if raw.level is Level.DANGEROUS and verdict.level is not Level.DANGEROUS:
                return raw
        return verdict

    def judge_callable(self, func: Any, innermost_of: dict[int, Any] | None = None) -> Verdict:
        """What calling ``func`` does: globals by name; computed callables are never allowed.

        ``innermost_of`` (id of a Call -> the callable at the bottom of its chain) lets a caller that judges every
        call of one pickle share the walk down ``f()()()...`` chains, so a chain of n calls costs O(n), not O(n²).
        """
        if isinstance(func, Global):
            return self.judge_global(func)
        if isinstance(func, DynamicGlobal):
            return Verdict(Level.DANGEROUS, render(func), "imported by a name computed at load time", "run-code")
        if isinstance(func, ExtRef):
            return Verdict(Level.DANGEROUS, render(func), "resolved through copyreg's extension registry", "run-code")
        if isinstance(func, Call):
            inner = self.judge_callable(_innermost_callable(func, {} if innermost_of is None else innermost_of))
            if inner.level is Level.DANGEROUS:
                return Verdict(Level.DANGEROUS, render(func, depth=1), f"calls the result of {inner.name}",
                               inner.category)
            return Verdict(Level.UNKNOWN, render(func, depth=1), "calls the object another call returned")
        return Verdict(Level.UNKNOWN, render(func, depth=1), "calls a value that is not a global")

    def is_allowed(self, func: Any) -> bool:
        return self.judge_callable(func).level is Level.ALLOWED


def _innermost_callable(call: Call, innermost_of: dict[int, Any]) -> Any:
    """The callable at the bottom of a chain of calls (``f()()()``), walked iteratively and memoised."""
    chain: list[Call] = []
    node: Any = call
    while isinstance(node, Call) and id(node) not in innermost_of:
        chain.append(node)
        node = node.func
    bottom = innermost_of[id(node)] if isinstance(node, Call) else node
    for link in chain:
        innermost_of[id(link)] = bottom
    return bottom


def classifier_for(extra: Iterable[AllowEntry] = ()) -> Classifier:
    """The built-in tables, extended by a user's policy entries."""
    extra = tuple(extra)
    if not extra:
        return DEFAULT_CLASSIFIER()
    return Classifier(builtin_allowlist().extended(extra), danger_table())


@functools.cache
def DEFAULT_CLASSIFIER() -> Classifier:  # noqa: N802 - a cached constant
    return Classifier(builtin_allowlist(), danger_table())
