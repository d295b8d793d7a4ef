"""Licence expressions as SPDX reads them, with the ScanCode licence index bundled in ``license-expression``.

- ``parse_expression(text, single)`` parses ``(MIT OR Apache-2.0) AND CC-BY-4.0``, ``GPL-2.0-or-later WITH
  Classpath-exception-2.0`` and lower-case operators with ``license_expression``'s parser, normalises every
  licence in it with ``single`` (our table first, then the ScanCode index) and renders it back with the brackets
  the precedence needs. Nothing is fetched: the index is the JSON file vendored inside the package.
- ``scancode_entry(id)`` looks an SPDX id (current, deprecated or ``LicenseRef-scancode-*``) or a ScanCode key up
  in that index: its current SPDX id, ScanCode key and ScanCode category.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Mapping

import license_expression

MAX_EXPRESSION_CHARS = 500


@dataclass(frozen=True)
class ScancodeEntry:
    """One licence of the ScanCode index: the id to emit (current SPDX id or ``LicenseRef-scancode-*``)."""

    spdx_id: str
    key: str
    category: str
    is_exception: bool
    deprecated: bool


@functools.cache
def _index() -> Mapping[str, ScancodeEntry]:
    """Lower-cased SPDX ids (current and other/deprecated) and ScanCode keys -> entry. Offline (vendored JSON)."""
    out: dict[str, ScancodeEntry] = {}
    for row in license_expression.get_license_index():
        spdx = row.get("spdx_license_key") or f"LicenseRef-scancode-{row['license_key']}"
        entry = ScancodeEntry(spdx, row["license_key"], str(row.get("category") or ""),
                              bool(row.get("is_exception")), bool(row.get("is_deprecated")))
        if entry.deprecated:
            continue
        out.setdefault(spdx.lower(), entry)
        for other in row.get("other_spdx_license_keys") or ():
            out.setdefault(str(other).lower(), entry)
    for row in license_expression.get_license_index():   # ScanCode keys last: SPDX ids win a clash
        entry = out.get((row.get("spdx_license_key") or "").lower())
        if entry is not None:
            out.setdefault(row["license_key"].lower(), entry)
    return out


def scancode_entry(license_id: str) -> ScancodeEntry | None:
    return _index().get(license_id.strip().lower())


def scancode_spdx_ids() -> frozenset[str]:
    """Every id the ScanCode index emits (SPDX ids and ``LicenseRef-scancode-*``), in their canonical case."""
    return frozenset(entry.spdx_id for entry in _index().values())


def _render(node: object, single: Callable[[str], str | None], parent: str | None) -> str | None:
    if isinstance(node, license_expression.LicenseWithExceptionSymbol):
        base = single(node.license_symbol.key)
        exception = scancode_entry(node.exception_symbol.key)
        if base is None or exception is None or not exception.is_exception:
            return None
        return f"{base} WITH {exception.spdx_id}"
    if isinstance(node, license_expression.LicenseSymbol):
        return single(node.key)
    operator = "AND" if isinstance(node, license_expression.AND) else "OR"
    parts = [_render(arg, single, operator) for arg in getattr(node, "args", ())]
    if not parts or any(p is None for p in parts):
        return None
    joined = f" {operator} ".join(dict.fromkeys(p for p in parts if p))
    return f"({joined})" if parent is not None and parent != operator and len(set(parts)) > 1 else joined


def parse_expression(text: str, single: Callable[[str], str | None]) -> str | None:
    """The normalised expression, or None if it does not parse or names a licence neither we nor ScanCode know."""
    if not text.strip() or len(text) > MAX_EXPRESSION_CHARS:
        return None
    try:
        tree = license_expression.Licensing().parse(text, simple=False)
    except license_expression.ExpressionError:
        return None
    except Exception:   # the parser raises its own ParseError subclasses and boolean.py errors
        return None
    if tree is None:
        return None
    return _render(tree, single, None)


def has_operator(expression: str) -> bool:
    return any(f" {op} " in expression for op in ("AND", "OR", "WITH"))
