"""The walker's constant folding agrees with Jinja2 itself.

Differential test in the spirit of the pickle one: each expression below is a harmless string-building
expression this test wrote (no attribute of any object is read); the value the walker folds is compared with
what Jinja2's ImmutableSandboxedEnvironment renders for ``{{ expr }}``. Only these test-built templates are ever
rendered, never a template from a release.
"""

from __future__ import annotations

import pytest
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from weightaudit.templates.parse import parse
from weightaudit.templates.walker import Walker

EXPRESSIONS = [
    "'__cla' ~ 'ss__'", "'__' + 'class' + '__'", "['__', 'class', '__']|join", "['a', 'b']|join('_')",
    "'%c%cclass%c%c'|format(95, 95, 95, 95)", "'%s-%s' % ('a', 'b')", "'{}{}'.format('_', 'x')",
    "'{0}{1}{0}'.format('__', 'init')", "'XXclassXX'|replace('X', '_')", "'aXbXc'|replace('X', '', 1)",
    "'__ssalc__'|reverse", "'a__class__b'[1:-1]", "'abcdef'[::2]", "'abcdef'[-3:]", "'__CLASS__'|lower",
    "'__class__'|upper", "'  x  '|trim", "'ab'|list|join('.')", "'_' * 2 ~ 'init' ~ '_' * 2",
    "{'k': '__globals__'}['k']", "{'k': 'v'}.get('k')", "dict(a='x')['a']", "('a', 'b')[1]", "'abc'[1]",
    "'a' if true else 'b'", "'x'|first", "'xyz'|last", "('q', 'r')|join", "2 ** 10", "7 // 2", "-3 + 5",
    "'%c'|format(90 + 5)", "'Ab'|title ~ 'cd'|capitalize", "'x'|string ~ 1", "'ab'|reverse|upper",
]


def _folded(expression: str) -> set:
    tree = parse("{{ " + expression + " }}").tree
    assert tree is not None
    (output,) = tree.body
    assert isinstance(output, nodes.Output)
    value = Walker().ev(output.nodes[0])
    return set(value.consts or ())


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_folding_matches_jinja(expression: str) -> None:
    """What Jinja renders is one of the values the walker folds (exactly it, but for a conditional, where both
    branches are kept: the walk does not decide tests)."""
    rendered = ImmutableSandboxedEnvironment().from_string("{{ " + expression + " }}").render()
    folded = {str(v) for v in _folded(expression)}
    assert folded == {rendered} or (" if " in expression and rendered in folded)


@pytest.mark.parametrize("expression", ["'a' * 10 ** 9", "2 ** 100000000", "'%999999999d'|format(1)",
                                        "'{:>999999999}'.format('a')", "messages[0].content ~ 'x'"])
def test_unbounded_or_unknown_values_are_not_folded(expression: str) -> None:
    assert _folded(expression) == set()
