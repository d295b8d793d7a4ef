"""The pickle allowlist and the table of known-dangerous globals, read from ``weightaudit/data``.

- ``data/pickle_allowlist.yaml``: :class:`AllowEntry` records (``allow``: data-only globals; ``data_containers``:
  reviewed ML-library record classes that stay ``medium``);
- ``data/pickle_dangerous.yaml``: :class:`DangerCategory` prefixes, dangerous final attribute names and the
  dunder-walker note, which turn a not-allowlisted global from ``high`` into ``critical``.

Both files document their schema in a header comment. :func:`policy_entries` turns a user's policy section
(``pickle: {allow: [...]}``) into extra entries; nothing read from an audited release ever reaches it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Mapping

from weightaudit.safe_read import load_bundled_yaml

__all__ = [
    "AllowEntry", "DangerCategory", "Allowlist", "DangerTable", "builtin_allowlist", "danger_table",
    "policy_entries", "torch_weights_only_globals", "ALLOWLIST_FILE", "DANGER_FILE", "ALLOW_KINDS", "CONTAINER_KINDS",
]

ALLOWLIST_FILE = "weightaudit/data/pickle_allowlist.yaml"
DANGER_FILE = "weightaudit/data/pickle_dangerous.yaml"
ALLOW_KINDS = frozenset({"function", "class", "constant"})
CONTAINER_KINDS = frozenset({"class", "enum"})


@dataclass(frozen=True)
class AllowEntry:
    """One allowlisted global. ``container``: a data-container class (medium, built only by NEWOBJ/BUILD)."""

    name: str
    kind: str
    reason: str
    needed_by: str
    container: bool = False
    source: str = ALLOWLIST_FILE
    arg_values: Mapping[int, frozenset[Any]] = field(default_factory=dict)   # index -> allowed constants


@dataclass(frozen=True)
class DangerCategory:
    category: str
    reason: str
    prefixes: frozenset[str]
    on_import: bool = False


@dataclass(frozen=True)
class Allowlist:
    entries: Mapping[str, AllowEntry]

    def get(self, qualname: str) -> AllowEntry | None:
        return self.entries.get(qualname)

    def extended(self, extra: Iterable[AllowEntry]) -> "Allowlist":
        merged = dict(self.entries)
        for entry in extra:
            merged.setdefault(entry.name, entry)      # a policy never changes a built-in entry
        return Allowlist(merged)


@dataclass(frozen=True)
class DangerTable:
    categories: tuple[DangerCategory, ...]
    attribute_names: frozenset[str]
    attribute_reason: str
    walker_reason: str
    module_aliases: Mapping[str, str] = field(default_factory=dict)

    def category_of(self, dotted: str) -> DangerCategory | None:
        """The first category one of whose prefixes covers ``dotted`` on a dot boundary."""
        parts = dotted.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        for category in self.categories:
            if prefixes & category.prefixes:
                return category
        return None


def _read(path: str) -> Mapping[str, Any]:
    text = resources.files("weightaudit").joinpath(path.removeprefix("weightaudit/")).read_text("utf-8")
    data = load_bundled_yaml(text)
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError(f"{path}: expected a mapping with version: 1")
    return data


def _names(row: Mapping[str, Any], where: str) -> list[str]:
    names = row.get("names") or ([row["name"]] if "name" in row else [])
    if not names or not all(isinstance(n, str) and "." in n for n in names):
        raise ValueError(f"{where}: every entry needs name or names (dotted module.qualname)")
    return list(names)


def _entries(rows: Iterable[Mapping[str, Any]], container: bool, source: str, section: str) -> list[AllowEntry]:
    kinds = CONTAINER_KINDS if container else ALLOW_KINDS
    out = []
    for index, row in enumerate(rows):
        where = f"{source}: {section}[{index}]"
        if row.get("kind") not in kinds:
            raise ValueError(f"{where}: kind must be one of {', '.join(sorted(kinds))}")
        if not str(row.get("reason", "")).strip() or not str(row.get("needed_by", "")).strip():
            raise ValueError(f"{where}: reason and needed_by are required")
        arg_values = {int(k): frozenset(v) for k, v in (row.get("arg_values") or {}).items()}
        out += [AllowEntry(n, row["kind"], row["reason"], row["needed_by"], container, source, arg_values)
                for n in _names(row, where)]
    return out


@functools.cache
def builtin_allowlist() -> Allowlist:
    data = _read(ALLOWLIST_FILE)
    entries = _entries(data.get("allow") or [], False, ALLOWLIST_FILE, "allow")
    entries += _entries(data.get("data_containers") or [], True, ALLOWLIST_FILE, "data_containers")
    table: dict[str, AllowEntry] = {}
    for entry in entries:
        if entry.name in table and not entry.container:
            raise ValueError(f"{ALLOWLIST_FILE}: {entry.name} listed twice")
        table[entry.name] = entry
    return Allowlist(table)


@functools.cache
def danger_table() -> DangerTable:
    data = _read(DANGER_FILE)
    categories = tuple(DangerCategory(row["category"], row["reason"], frozenset(row["prefixes"]),
                                      bool(row.get("on_import", False))) for row in data["categories"])
    attrs = data.get("attribute_names") or []
    names = frozenset(n for row in attrs for n in row["names"])
    reason = "; ".join(row["reason"] for row in attrs)
    aliases = {str(k): str(v) for k, v in (data.get("module_aliases") or {}).items()}
    return DangerTable(categories, names, reason, str(data.get("walkers", "")), aliases)


@functools.cache
def torch_weights_only_globals() -> frozenset[str]:
    """What torch.load(weights_only=True) accepts: the table's exact names plus the torch.<name> and
    torch.cuda.<name> constants and classes of ``allow`` (dtypes, storage tags, qschemes, legacy tensor types)."""
    section = _read(ALLOWLIST_FILE).get("torch_weights_only") or {}
    tags = {e.name for e in builtin_allowlist().entries.values()
            if (e.name.count(".") == 1 or e.name.startswith("torch.cuda.")) and e.name.startswith("torch.")
            and e.kind in ("constant", "class") and not e.container}
    return frozenset(section.get("names") or ()) | frozenset(tags)


def policy_entries(rows: Any, source: str) -> tuple[AllowEntry, ...]:
    """Entries from a policy's ``pickle.allow`` list: ``name`` (dotted), ``reason`` (required), optional
    ``kind`` (function | class | constant; default class) and ``container: true`` (keep it medium, WA418).
    Raises ValueError with the entry's position on any problem."""
    if not isinstance(rows, list):
        raise ValueError("pickle.allow must be a list")
    out = []
    for index, row in enumerate(rows):
        where = f"pickle.allow[{index}]"
        if not isinstance(row, dict) or set(row) - {"name", "reason", "kind", "container"}:
            raise ValueError(f"{where}: a mapping with name, reason and optional kind, container")
        name, reason = row.get("name"), row.get("reason")
        if not isinstance(name, str) or "." not in name or name.strip() != name:
            raise ValueError(f"{where}: name must be a dotted module.qualname")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{where}: a 'reason' is required to allow {name}")
        category = danger_table().category_of(name)
        if category is not None or any(p.startswith("__") and p.endswith("__") for p in name.split(".")):
            raise ValueError(f"{where}: {name} is known to {category.reason if category else 'walk attributes'}; "
                             "a policy cannot allow it")
        kind = row.get("kind", "class")
        if kind not in ALLOW_KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(sorted(ALLOW_KINDS))}")
        container = row.get("container", False)
        if not isinstance(container, bool):
            raise ValueError(f"{where}: container must be true or false")
        out.append(AllowEntry(name, kind, reason.strip(), f"policy {source}", container, f"policy {source}"))
    return tuple(out)
