"""Expressions of a chat template's syntax tree, evaluated abstractly (see values.py): which attribute and item
names they read however the names are assembled, which calls they make, what Python internals they reach.

Issues are reported with the template line. Nothing is rendered or run: the only computation is folding
constants the template wrote (concatenation, join, format, replace, reverse, slices, case changes, chr).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from jinja2 import nodes

from weightaudit.templates import values as V
from weightaudit.templates.issues import TemplateIssue
from weightaudit.templates.names import MODULE_ROOTS, judge_attribute, tables
from weightaudit.templates.values import DATA, ConstDict, Val

MAX_STEPS = 100_000        # default of limits.template_walk_steps: nodes visited (published templates need < 5,000)
MAX_DEPTH = 300            # nesting of the walk itself
HUGE_RANGE = 10_000_000    # range() sizes from here on are a denial of service when rendered
ATTRIBUTE_FILTERS = {"map": "attribute", "selectattr": 0, "rejectattr": 0, "sort": "attribute", "groupby": 0,
                     "sum": "attribute", "unique": "attribute", "min": "attribute", "max": "attribute",
                     "join": "attribute"}
BINARY: dict[type, Callable[[Any, Any], Any]] = {
    nodes.Add: V.safe_add, nodes.Mul: V.safe_mul, nodes.Pow: V.safe_pow, nodes.Mod: V.safe_percent,
    nodes.Sub: lambda a, b: a - b, nodes.Div: lambda a, b: a / b, nodes.FloorDiv: lambda a, b: a // b,
}
TEXT_FILTERS: dict[str, Callable[..., Any]] = {
    "join": V.safe_join, "format": lambda fmt, *a, **k: V.safe_percent(fmt, a or V.ConstDict(tuple(k.items()))),
    "replace": V.safe_replace, "reverse": V.safe_reverse, "lower": lambda s: s.lower(), "upper": lambda s: s.upper(),
    "title": lambda s: s.title(), "capitalize": lambda s: s.capitalize(), "trim": lambda s, c=None: s.strip(c),
    "string": V._text, "first": lambda s: s[0], "last": lambda s: s[-1], "list": lambda s: tuple(V.elements(s)),
    "items": lambda d: d.items, "dictsort": lambda d: tuple(sorted(d.items, key=repr)), "e": lambda s: s, "escape": lambda s: s, "safe": lambda s: s, "default": lambda s, *_: s, "d": lambda s, *_: s,
}
TEXT_METHODS: dict[str, Callable[..., Any]] = {
    "join": lambda sep, seq: V.safe_join(seq, sep), "format": V.safe_format, "replace": V.safe_replace,
    "lower": lambda s: s.lower(), "upper": lambda s: s.upper(), "title": lambda s: s.title(),
    "capitalize": lambda s: s.capitalize(), "strip": lambda s, c=None: s.strip(c),
    "lstrip": lambda s, c=None: s.lstrip(c), "rstrip": lambda s, c=None: s.rstrip(c),
    "get": lambda d, k, default=None: d.get(k) if isinstance(d, ConstDict) else default,
    "items": lambda d: d.items, "keys": lambda d: tuple(k for k, _ in d.items),
    "values": lambda d: tuple(v for _, v in d.items),
}


class Budget(Exception):
    """The walk went past MAX_STEPS or MAX_DEPTH."""


class ExpressionEvaluator:
    """Evaluates expressions against ``self.scope`` (name -> Val) and collects ``self.issues``."""

    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        self.max_steps = max_steps        # limits.template_walk_steps
        self.scope: dict[str, Val] = {}
        self.issues: list[TemplateIssue] = []
        self.steps = 0
        self.depth = 0
        self.names = tables()
        self.macros: set[str] = set()   # every macro the template defines (callable before its definition runs)

    # ---------------------------------------------------------------------------------------------- plumbing

    def report(self, kind: str, reason: str, node: nodes.Node, snippet: str = "") -> None:
        issue = TemplateIssue(kind, reason, snippet, getattr(node, "lineno", None))
        if len(self.issues) < 200 and issue not in self.issues:
            self.issues.append(issue)

    def tick(self, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > self.max_steps:
            raise Budget(f"the walk passed limits.template_walk_steps = {self.max_steps:,} steps")

    def ev(self, node: nodes.Node | None) -> Val:
        if node is None:
            return DATA
        self.tick()
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise Budget(f"expressions nest deeper than {MAX_DEPTH}")
            handler = EXPRESSIONS.get(type(node))
            return handler(self, node) if handler else self._generic(node)
        finally:
            self.depth -= 1

    def _generic(self, node: nodes.Node) -> Val:
        found = [self.ev(child) for child in node.iter_child_nodes() if isinstance(child, nodes.Expr)]
        return Val(internal=next((v.internal for v in found if v.internal), None))

    # ---------------------------------------------------------------------------------------------- names

    def _name(self, node: nodes.Name) -> Val:
        if node.name in self.scope:
            return self.scope[node.name]
        if node.name in self.macros:
            return Val(root=f"macro:{node.name}", path=node.name)
        if node.name in self.names.gadget_roots or node.name in self.names.globals:
            if node.name in MODULE_ROOTS and node.name.startswith("__"):
                self.report("execution", f"reads {node.name}, the builtins of the rendering Python module", node)
            return Val(root=node.name, path=node.name)
        return DATA.with_path(node.name)

    def _reach(self, base: Val, name: str, node: nodes.Node, how: str, built: bool = False) -> Val:
        """``base`` read at attribute/key ``name``: judge the name, follow internals and gadgets."""
        path = f"{base.path}.{name}" if how == "attribute" else f"{base.path}[{name!r}]"
        judged = judge_attribute(name) if how == "attribute" or name.startswith("_") else None
        if judged:
            kind, what = judged
            assembled = " assembled from pieces" if built else ""
            self.report(kind, f"reaches Python internals through {what}{assembled}" if kind == "execution"
                        else f"reads {what}{assembled}", node, path)
            return Val(internal=path if kind == "execution" else base.internal, path=path)
        if base.internal:
            return Val(internal=path, path=path)
        if base.root in MODULE_ROOTS:
            self.report("execution", f"reads {name!r} from the {base.root} module", node, path)
            return Val(internal=path, path=path)
        if base.root in self.names.gadget_roots and not base.root.startswith("macro:"):
            self.report("obfuscation", f"reads {name!r} from the Jinja/Flask global {base.root!r}, the usual first "
                        "step of a template escape", node, path)
            return Val(internal=path, path=path)
        if base.attrs is not None:
            return dict(base.attrs).get(name, DATA).with_path(path)
        return V.fold(lambda d: V.safe_index(d, name), [base], path, built=False) if base.consts else DATA.with_path(path)

    def _getattr(self, node: nodes.Getattr) -> Val:
        return self._reach(self.ev(node.node), node.attr, node, "attribute")

    def _getitem(self, node: nodes.Getitem) -> Val:
        base = self.ev(node.node)
        if isinstance(node.arg, nodes.Slice):
            parts = [self.ev(node.arg.start), self.ev(node.arg.stop), self.ev(node.arg.step)]
            parts = [p if p.consts is not None or part is not None else V.const(None)
                     for p, part in zip(parts, (node.arg.start, node.arg.stop, node.arg.step))]
            out = V.fold(V.safe_slice, [base, *parts], f"{base.path}[...]", built=bool(V.strings(base)) or base.built)
            return replace(out, internal=base.internal and f"{base.internal}[...]")
        key = self.ev(node.arg)
        return self._by_key(base, key, node)

    def _by_key(self, base: Val, key: Val, node: nodes.Node, how: str = "item") -> Val:
        names = V.strings(key)
        if names:
            results = [self._reach(base, name, node, how, built=key.built) for name in names]
            internal = next((r.internal for r in results if r.internal), None)
            folded = V.fold(V.safe_index, [base, key], f"{base.path}[...]", built=False) if base.consts else DATA
            return replace(folded, internal=internal or folded.internal, path=results[0].path)
        if key.consts is None and key.built:
            self.report("obfuscation", f"reads an {how} whose name is assembled at render time", node,
                        f"{base.path}[…]")
        if base.internal or base.root in MODULE_ROOTS:
            return Val(internal=f"{base.path}[…]", path=f"{base.path}[…]")
        if base.elements is not None:
            return base.elements.with_path(f"{base.path}[…]")
        if key.consts is not None and base.consts:
            return V.fold(V.safe_index, [base, key], f"{base.path}[...]", built=False)
        return DATA.with_path(f"{base.path}[…]")

    # ---------------------------------------------------------------------------------------------- literals

    def _const(self, node: nodes.Const) -> Val:
        return V.const(node.value, repr(node.value)[:40])

    def _sequence(self, node: nodes.List | nodes.Tuple) -> Val:
        items = [self.ev(item) for item in node.items]
        internal = next((v.internal for v in items if v.internal), None)
        if all(v.consts is not None and len(v.consts) == 1 and not v.open for v in items):
            value = tuple(next(iter(v.consts)) for v in items)
            out = V.const(value, "[...]")
            return replace(out, built=any(v.built for v in items), internal=internal)
        merged = items[0] if items else DATA
        for item in items[1:]:
            merged = V.merge(merged, item)
        return Val(built=any(v.built for v in items), internal=internal, path="[...]", elements=merged)

    def _dict(self, node: nodes.Dict) -> Val:
        pairs = [(self.ev(p.key), self.ev(p.value)) for p in node.items]
        return self._const_dict(pairs)

    def _const_dict(self, pairs: list[tuple[Val, Val]]) -> Val:
        internal = next((v.internal for _, v in pairs if v.internal), None)
        if all(k.consts and v.consts and len(k.consts) == 1 == len(v.consts) for k, v in pairs):
            value = ConstDict(tuple((next(iter(k.consts)), next(iter(v.consts))) for k, v in pairs))
            return replace(V.const(value, "{...}"), internal=internal)
        return Val(internal=internal, path="{...}")

    # ---------------------------------------------------------------------------------------------- operators

    def _binary(self, node: nodes.BinExpr) -> Val:
        left, right = self.ev(node.left), self.ev(node.right)
        out = V.fold(BINARY[type(node)], [left, right], f"{left.path} {node.operator} {right.path}",
                     built=V._has_str(left, right) or left.built or right.built)
        if isinstance(node, (nodes.Mul, nodes.Pow)) and out.consts is None and left.consts and right.consts:
            self.report("unusual", "builds a string or number too big to render (denial of service)", node)
        if isinstance(node, nodes.Add) and (left.elements or right.elements):
            both = [v.elements for v in (left, right) if v.elements is not None]
            out = replace(out, elements=both[0] if len(both) == 1 else V.merge(*both))
        return out

    def _concat(self, node: nodes.Concat) -> Val:
        parts = [self.ev(part) for part in node.nodes]
        return V.fold(V.safe_concat, parts, " ~ ".join(p.path for p in parts), built=True)

    def _either(self, node: nodes.CondExpr | nodes.And | nodes.Or) -> Val:
        if isinstance(node, nodes.CondExpr):
            self.ev(node.test)
            return V.merge(self.ev(node.expr1), self.ev(node.expr2))
        return V.merge(self.ev(node.left), self.ev(node.right))

    def _unary(self, node: nodes.UnaryExpr) -> Val:
        inner = self.ev(node.node)
        if isinstance(node, nodes.Neg):
            return V.fold(lambda x: -x, [inner], inner.path, built=False)
        return inner if isinstance(node, nodes.Pos) else Val(internal=inner.internal)

    def _test(self, node: nodes.Test | nodes.Compare) -> Val:
        self._generic(node)
        return DATA


EXPRESSIONS: dict[type, Callable[[ExpressionEvaluator, Any], Val]] = {
    nodes.Name: ExpressionEvaluator._name, nodes.Getattr: ExpressionEvaluator._getattr,
    nodes.Getitem: ExpressionEvaluator._getitem, nodes.Const: ExpressionEvaluator._const,
    nodes.List: ExpressionEvaluator._sequence, nodes.Tuple: ExpressionEvaluator._sequence,
    nodes.Dict: ExpressionEvaluator._dict, nodes.Concat: ExpressionEvaluator._concat,
    nodes.CondExpr: ExpressionEvaluator._either, nodes.And: ExpressionEvaluator._either,
    nodes.Or: ExpressionEvaluator._either, nodes.Neg: ExpressionEvaluator._unary,
    nodes.Pos: ExpressionEvaluator._unary, nodes.Not: ExpressionEvaluator._unary,
    nodes.Test: ExpressionEvaluator._test, nodes.Compare: ExpressionEvaluator._test,
    **{op: ExpressionEvaluator._binary for op in BINARY},
}
