"""Chat templates judged on Jinja2's own syntax tree (never rendered).

``analyse(template)`` parses the template with Jinja2's parser, configured as the chat runtimes configure it
(parse.py), walks the tree (walker.py, expressions.py, calls.py) and reports what reaches Python internals, what
builds names indirectly and what calls things the chat API never provides. Templates the parser cannot read are
checked by fixed patterns in linear time (fallback.py), and the finding says so.
"""

from __future__ import annotations

from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.templates.issues import KINDS, OVERSIZED_TEMPLATE, Template, TemplateIssue

__all__ = ["KINDS", "OVERSIZED_TEMPLATE", "Template", "TemplateIssue", "analyse"]


def analyse(template: Template, limits: Limits = DEFAULT_LIMITS) -> list[TemplateIssue]:
    """See ``templates.analyse.analyse``. Imported on first use: Jinja2 and the tree walker load only when a
    release has a template, not at every start-up."""
    from weightaudit.templates.analyse import analyse as analyse_tree

    return analyse_tree(template, limits)
