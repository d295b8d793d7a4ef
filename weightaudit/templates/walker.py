"""Statements of a chat template's syntax tree: variable bindings followed across ``{% set %}``, namespaces,
branches and loops, so a name assembled over several statements is still seen whole.

Flow: statements run in order; each branch of an ``if`` starts from the same bindings and the branches' results
are merged (a variable may hold any of its branch values); a loop body is walked twice (values carried from one
iteration to the next) when loops nest at most ``LOOP_PASSES_DEPTH`` deep, once otherwise.
"""

from __future__ import annotations

from typing import Any, Callable

from jinja2 import nodes

from weightaudit.templates import calls  # noqa: F401 - registers Call and Filter
from weightaudit.templates import values as V
from weightaudit.templates.expressions import MAX_STEPS, Budget, ExpressionEvaluator
from weightaudit.templates.issues import TemplateIssue
from weightaudit.templates.values import DATA, Val

LOOP_PASSES_DEPTH = 3
MAX_UNROLL = 64           # loops over constants up to this length are walked item by item


class Walker(ExpressionEvaluator):
    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        super().__init__(max_steps)
        self.loop_depth = 0
        self.unrolling = False

    def run(self, body: list[nodes.Node]) -> None:
        for statement in body:
            self.statement(statement)

    def statement(self, node: nodes.Node) -> None:
        self.tick()
        self.depth += 1
        try:
            if self.depth > 300:
                raise Budget("statements nest deeper than 300")
            handler = STATEMENTS.get(type(node))
            if handler is not None:
                handler(self, node)
            elif isinstance(node, nodes.Expr):
                self.ev(node)
            else:
                self._generic_statement(node)
        finally:
            self.depth -= 1

    def _generic_statement(self, node: nodes.Node) -> None:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Expr):
                self.ev(child)
            else:
                self.statement(child)

    # ---------------------------------------------------------------------------------------------- bindings

    def bind(self, target: nodes.Node, value: Val) -> None:
        if isinstance(target, nodes.Name):
            self.scope[target.name] = value.with_path(target.name) if not value.path else value
        elif isinstance(target, nodes.NSRef):
            self._reach(self.scope.get(target.name, DATA), target.attr, target, "attribute")   # judge the name
            space = self.scope.get(target.name, DATA)
            attrs = dict(space.attrs or ())
            attrs[target.attr] = value
            self.scope[target.name] = Val(attrs=tuple(attrs.items()), root=space.root, path=target.name)
        elif isinstance(target, (nodes.Tuple, nodes.List)):
            self._unpack(target.items, value)

    def _unpack(self, targets: list[nodes.Node], value: Val) -> None:
        parts: list[Val] = [Val(internal=value.internal, built=value.built) for _ in targets]
        if value.consts is not None:
            for i in range(len(targets)):
                parts[i] = V.fold(lambda v, i=i: _item(v, i, len(targets)), [value], "", built=False)
        for target, part in zip(targets, parts):
            self.bind(target, part)

    def branches(self, bodies: list[list[nodes.Node]], keep_original: bool) -> None:
        """Walk each body from the current bindings; afterwards a variable holds any of their results."""
        start = dict(self.scope)
        results = [start] if keep_original else []
        for body in bodies:
            self.tick(len(start))
            self.scope = dict(start)
            self.run(body)
            results.append(self.scope)
        self.scope = _merge_scopes(results)

    # ---------------------------------------------------------------------------------------------- statements

    def _output(self, node: nodes.Output) -> None:
        for child in node.nodes:
            if not isinstance(child, nodes.TemplateData):
                self.ev(child)

    def _assign(self, node: nodes.Assign) -> None:
        self.bind(node.target, self.ev(node.node))

    def _assign_block(self, node: nodes.AssignBlock) -> None:
        self.run(node.body)
        parts = [self.ev(c) if not isinstance(c, nodes.TemplateData) else V.const(c.data)
                 for out in node.body if isinstance(out, nodes.Output) for c in out.nodes]
        simple = all(isinstance(out, nodes.Output) for out in node.body)
        value = V.fold(V.safe_concat, parts, "{% set %} block") if simple else Val(built=True)
        if node.filter is not None:
            self.ev(node.filter)
        self.bind(node.target, value)

    def _if(self, node: nodes.If) -> None:
        self.ev(node.test)
        bodies = [node.body]
        for branch in node.elif_:
            self.ev(branch.test)
            bodies.append(branch.body)
        bodies.append(node.else_)
        self.branches(bodies, keep_original=False)

    def _for(self, node: nodes.For) -> None:
        iterable = self.ev(node.iter)
        if iterable.internal:
            self.report("execution", "loops over what Python internals return (e.g. __subclasses__())", node,
                        iterable.internal)
        before = dict(self.scope)
        self.loop_depth += 1
        try:
            items = _unrollable(iterable) if not self.unrolling else None   # never nested: 64^3 iterations
            if items is not None:
                self._unrolled(node, items)
            else:
                name = node.target.name if isinstance(node.target, nodes.Name) else "loop item"
                self._passes(node, V.element_val(iterable, f"{iterable.path}[…]" if iterable.internal else name))
        finally:
            self.loop_depth -= 1
        self.scope = _merge_scopes([before, self.scope])
        self.run(node.else_)

    def _unrolled(self, node: nodes.For, items: tuple) -> None:
        """A loop over a short constant (``['__', 'cla', 'ss__']``): each iteration in turn, exactly."""
        self.unrolling = True
        try:
            for item in items:
                self.bind(node.target, V.const(item, repr(item)[:40]))
                self.ev(node.test)
                self.run(node.body)
        finally:
            self.unrolling = False

    def _passes(self, node: nodes.For, item: Val) -> None:
        """Any other loop: the body twice, each pass from the merged bindings (values carried across)."""
        self.bind(node.target, item)
        self.ev(node.test)
        passes = 2 if self.loop_depth <= LOOP_PASSES_DEPTH else 1
        for _ in range(passes):
            self.tick(len(self.scope))
            self.scope = _merge_scopes([self.scope, self._walked(node.body)])

    def _walked(self, body: list[nodes.Node]) -> dict[str, Val]:
        saved = dict(self.scope)
        self.run(body)
        walked, self.scope = self.scope, saved
        return walked

    def _macro(self, node: nodes.Macro | nodes.CallBlock) -> None:
        if isinstance(node, nodes.CallBlock):
            self.ev(node.call)
        else:
            self.scope[node.name] = Val(root=f"macro:{node.name}", path=node.name)
        defaults = [self.ev(default) for default in node.defaults]
        saved = dict(self.scope)
        padded = [DATA] * (len(node.args) - len(defaults)) + [V.merge(DATA, d) for d in defaults]
        for arg, value in zip(node.args, padded):
            self.bind(arg, value)
        self.scope["caller"] = Val(root="caller", path="caller")
        self.run(node.body)
        self.scope = _with_namespaces(saved, self.scope)

    def _with(self, node: nodes.With) -> None:
        saved = dict(self.scope)
        for target, value in zip(node.targets, node.values):
            self.bind(target, self.ev(value))
        self.run(node.body)
        self.scope = _with_namespaces(saved, self.scope)

    def _loads_template(self, node: nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport) -> None:
        name = self.ev(node.template)
        shown = ", ".join(repr(s) for s in V.strings(name)) or "a computed name"
        self.report("unusual", f"loads another template ({shown}): chat runtimes have no template loader", node)


def _with_namespaces(outer: dict[str, Val], inner: dict[str, Val]) -> dict[str, Val]:
    """The outer bindings after an inner scope (macro, with) ran: namespaces are shared objects, so attributes
    the inner scope set on an outer namespace stay set (merged: the macro may or may not have run)."""
    kept = dict(outer)
    for name, value in outer.items():
        if value.attrs is not None and name in inner and inner[name] is not value:
            kept[name] = V.merge(value, inner[name])
    return kept


def _unrollable(iterable: Val) -> tuple | None:
    if iterable.consts is None or iterable.open or len(iterable.consts) != 1:
        return None
    items = tuple(V.elements(next(iter(iterable.consts))))
    return items if 0 < len(items) <= MAX_UNROLL else None


def _item(value: Any, index: int, count: int) -> Any:
    if not isinstance(value, tuple) or len(value) != count:
        raise TypeError("cannot unpack")
    return value[index]


def _merge_scopes(scopes: list[dict[str, Val]]) -> dict[str, Val]:
    merged: dict[str, Val] = {}
    for scope in scopes:
        for name, value in scope.items():
            merged[name] = V.merge(merged[name], value) if name in merged else value
    return merged


STATEMENTS: dict[type, Callable[[Walker, Any], None]] = {
    nodes.Output: Walker._output, nodes.Assign: Walker._assign, nodes.AssignBlock: Walker._assign_block,
    nodes.If: Walker._if, nodes.For: Walker._for, nodes.Macro: Walker._macro, nodes.CallBlock: Walker._macro,
    nodes.With: Walker._with, nodes.Extends: Walker._loads_template, nodes.Include: Walker._loads_template,
    nodes.Import: Walker._loads_template, nodes.FromImport: Walker._loads_template,
}


def walk(tree: nodes.Template, max_steps: int = MAX_STEPS) -> list[TemplateIssue]:
    """Every issue the syntax tree shows. Raises Budget (or RecursionError) past the walk's limits."""
    walker = Walker(max_steps)
    walker.macros = {macro.name for macro in tree.find_all(nodes.Macro)}
    walker.run(tree.body)
    return walker.issues
