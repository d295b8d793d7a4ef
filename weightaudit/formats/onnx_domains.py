"""Operator domains of an ONNX model judged against ``weightaudit/data/onnx_domains.yaml``: nodes in a
domain no standard runtime implements are WA448 (medium), nodes in ONNX Runtime's built-in domains WA449
(low). One finding per domain and file, naming its ops, node count and first node. Nodes that call a
function defined in the model itself are never reported (the runtime expands the function body)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Iterator, Mapping

from weightaudit.model import Finding
from weightaudit.rules import onnx_rules as O
from weightaudit.safe_read import load_bundled_yaml

SHOWN_OPS = 8


@lru_cache(maxsize=1)
def domain_table() -> dict[str, str]:
    """domain -> "standard" | "runtime" (the data file's sections)."""
    text = resources.files("weightaudit.data").joinpath("onnx_domains.yaml").read_text(encoding="utf-8")
    data = load_bundled_yaml(text)
    return {entry["domain"]: section for section in ("standard", "runtime") for entry in data[section]}


def domain_findings(rel: str, ops: Mapping[tuple[str, str], list[Any]],
                    functions: set[tuple[str, str]]) -> Iterator[Finding]:
    by_domain: dict[str, list[tuple[str, int, str]]] = {}
    for (domain, op), (count, first) in ops.items():
        if (domain, op) in functions:
            continue
        by_domain.setdefault(domain, []).append((op, count, first))
    table = domain_table()
    for domain in sorted(by_domain):
        kind = table.get(domain)
        if kind == "standard":
            continue
        used = sorted(by_domain[domain])
        nodes = sum(count for _, count, _ in used)
        names = ", ".join(op for op, _, _ in used[:SHOWN_OPS]) + (" …" if len(used) > SHOWN_OPS else "")
        first = min(first for _, _, first in used)
        rule = O.RUNTIME_DOMAIN if kind == "runtime" else O.CUSTOM_DOMAIN
        need = ("built into ONNX Runtime only" if kind == "runtime"
                else "needs a custom-operator library (native code) registered by whoever loads the model")
        yield rule.finding(rel, f"{nodes} node(s) use operator domain {domain!r} ({names}): {need}",
                           where=f"first node {first}")
