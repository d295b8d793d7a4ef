"""Calls and filters in a chat template: what is called, on what, and the strings they fold to.

A template gets plain data from the chat API (strings, lists, dicts), a few globals (``raise_exception``,
``strftime_now``, ``range``, ``namespace``, ``dict`` ...) and its own macros. Calling anything else — a Python
built-in, a method plain data does not have, a computed object — is flagged; calling what leads to Python
internals is critical.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jinja2 import nodes
from jinja2.filters import FILTERS
from jinja2.tests import TESTS

from weightaudit.templates import values as V
from weightaudit.templates.expressions import (ATTRIBUTE_FILTERS, EXPRESSIONS, HUGE_RANGE, TEXT_FILTERS,
                                               TEXT_METHODS, ExpressionEvaluator)
from weightaudit.templates.values import DATA, Val


def _arguments(ev: ExpressionEvaluator, node: nodes.Call | nodes.Filter) -> tuple[list[Val], dict[str, Val]]:
    args = [ev.ev(arg) for arg in node.args]
    kwargs = {kw.key: ev.ev(kw.value) for kw in node.kwargs}
    for extra in (node.dyn_args, node.dyn_kwargs):
        if extra is not None:
            args.append(ev.ev(extra))
            args[-1] = replace(args[-1], consts=None)   # *x / **x: arity unknown, nothing folds
    return args, kwargs


def _fold_call(fn: Any, receiver: Val | None, args: list[Val], kwargs: dict[str, Val], path: str) -> Val:
    operands = ([receiver] if receiver is not None else []) + args + list(kwargs.values())
    names = list(kwargs)
    n = len(operands) - len(names)

    def call(*values: Any) -> Any:
        return fn(*values[:n], **dict(zip(names, values[n:])))
    return V.fold(call, operands, path)


def _call(ev: ExpressionEvaluator, node: nodes.Call) -> Val:
    args, kwargs = _arguments(ev, node)
    if isinstance(node.node, nodes.Name) and node.node.name not in ev.scope and node.node.name not in ev.macros:
        return _call_global(ev, node, node.node.name, args, kwargs)
    if isinstance(node.node, nodes.Getattr):
        return _call_method(ev, node, node.node, args, kwargs)
    callee = ev.ev(node.node)
    path = f"{callee.path}(...)"
    if callee.internal:
        ev.report("execution", "calls an object reached through Python internals", node, path)
        return Val(internal=path, path=path)
    if callee.root and callee.root.startswith("macro:") or callee.root in ev.names.globals:
        return _call_known(ev, node, callee.root, args, kwargs)
    ev.report("obfuscation", "calls a computed object, which no chat API passes to a template", node, path)
    return DATA.with_path(path)


def _call_global(ev: ExpressionEvaluator, node: nodes.Call, name: str, args: list[Val],
                 kwargs: dict[str, Val]) -> Val:
    if name in ev.names.code_builtins:
        ev.report("execution", f"calls {name}(), a Python built-in that reaches code, files or attributes", node,
                  f"{name}(...)")
        if name == "getattr" and len(args) >= 2:
            return ev._by_key(args[0], args[1], node, "attribute")
        return Val(internal=f"{name}(...)", path=f"{name}(...)")
    if name in ev.names.globals:
        return _call_known(ev, node, name, args, kwargs)
    ev.report("obfuscation", f"calls {name}(), which no chat runtime provides to a template", node, f"{name}(...)")
    if name == "chr" and len(args) == 1:
        return V.fold(V.safe_chr, args, f"chr({args[0].path})")
    return Val(built=True, path=f"{name}(...)")


def _call_known(ev: ExpressionEvaluator, node: nodes.Call, name: str, args: list[Val],
                kwargs: dict[str, Val]) -> Val:
    if name == "range":
        sizes = [v for a in args for v in (a.consts or ()) if isinstance(v, int)]
        if any(abs(v) >= HUGE_RANGE for v in sizes):
            ev.report("unusual", f"loops over a huge range ({max(abs(v) for v in sizes):,} items: a denial of "
                      "service when rendered)", node)
        return DATA.with_path("range(...)")
    if name == "namespace":
        return Val(attrs=tuple(kwargs.items()), path="namespace(...)")
    if name == "dict":
        return ev._const_dict([(V.const(k), v) for k, v in kwargs.items()])
    return DATA.with_path(f"{name}(...)")


def _call_method(ev: ExpressionEvaluator, node: nodes.Call, callee: nodes.Getattr, args: list[Val],
                 kwargs: dict[str, Val]) -> Val:
    receiver = ev.ev(callee.node)
    method = callee.attr
    reached = ev._reach(receiver, method, callee, "attribute")
    path = f"{reached.path}(...)"
    if reached.internal:
        if receiver.internal or method.startswith("_"):
            ev.report("execution", f"calls {method}() on Python internals", node, path)
        return Val(internal=path, path=path)
    if method == "format":
        _check_format_fields(ev, receiver, node)
    if method not in ev.names.methods:
        ev.report("obfuscation", f"calls the method .{method}(), which the strings, lists and dicts a chat API "
                  "passes do not have", node, path)
        return Val(built=True, path=path)
    if method in TEXT_METHODS:
        return _fold_call(TEXT_METHODS[method], receiver, args, kwargs, path)
    return Val(path=path[:V.PATH_CHARS], elements=receiver.elements)


def _check_format_fields(ev: ExpressionEvaluator, fmt: Val, node: nodes.Node) -> None:
    """``'{0.__class__}'.format(x)`` reads attributes of its arguments: judge every attribute in every field."""
    for text in V.strings(fmt):
        for field in V.format_fields(text):
            for part in field.replace("[", ".").replace("]", "").split(".")[1:]:
                ev._reach(DATA.with_path("format argument"), part, node, "attribute")


def _filter(ev: ExpressionEvaluator, node: nodes.Filter) -> Val:
    value = ev.ev(node.node)
    args, kwargs = _arguments(ev, node)
    path = f"{value.path}|{node.name}"
    if node.name not in FILTERS:
        ev.report("obfuscation", f"uses the filter |{node.name}, which Jinja2 does not have (a runtime that registers "
                  "it runs code the template does not show)", node, path)
    if node.name == "attr":
        name = args[0] if args else DATA
        if name.consts is None and not name.built:   # (an assembled name is reported by _by_key)
            ev.report("obfuscation", "the attr filter reads an attribute named by render-time data", node, path)
        return ev._by_key(value, name, node, "attribute")
    if node.name in ATTRIBUTE_FILTERS:
        _check_attribute_argument(ev, node, value, args, kwargs)
    if node.name == "map" and args and "attr" in (args[0].consts or ()):
        return ev._by_key(value, args[1] if len(args) > 1 else DATA, node, "attribute")
    if node.name == "format":
        _check_format_fields(ev, value, node)
    if node.name in TEXT_FILTERS and not kwargs.get("attribute"):
        out = _fold_call(TEXT_FILTERS[node.name], value, args, kwargs, path)
        return replace(out, internal=value.internal and path, built=out.built and node.name not in
                       ("e", "escape", "safe", "string", "default", "d", "first", "last", "list", "trim"))
    return Val(internal=value.internal and path, path=path[:V.PATH_CHARS], elements=value.elements)


def _check_attribute_argument(ev: ExpressionEvaluator, node: nodes.Filter, value: Val, args: list[Val],
                              kwargs: dict[str, Val]) -> None:
    """``|map(attribute='__class__')``, ``|selectattr('__class__')`` ... read attributes (dotted paths too)."""
    where = ATTRIBUTE_FILTERS[node.name]
    name = kwargs.get("attribute") if where == "attribute" else (args[0] if args else None)
    if name is None:
        return
    for text in V.strings(name):
        for part in text.split("."):
            ev._reach(value, part, node, "attribute", built=name.built)
    if name.consts is None:
        how = "assembled at render time" if name.built else "named by render-time data"
        ev.report("obfuscation", f"|{node.name} reads an attribute {how}", node)


def _test(ev: ExpressionEvaluator, node: nodes.Test) -> Val:
    if node.name not in TESTS:
        ev.report("obfuscation", f"uses the test 'is {node.name}', which Jinja2 does not have", node)
    ev._generic(node)
    return DATA


EXPRESSIONS.update({nodes.Call: _call, nodes.Filter: _filter, nodes.Test: _test})
