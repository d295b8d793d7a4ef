"""One template in, its issues out: parse, walk, or fall back to patterns (and say so)."""

from __future__ import annotations

from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.templates.expressions import Budget
from weightaudit.templates.fallback import pattern_issues
from weightaudit.templates.issues import KINDS, OVERSIZED_TEMPLATE, Template, TemplateIssue, short
from weightaudit.templates.parse import parse, string_tokens
from weightaudit.templates.walker import walk

# Source spellings of '_' and '.' inside string literals: only needed to hide a name from a reader.
ESCAPED_NAME_CHARS = ("\\x5f", "\\u005f", "\\u0000005f", "\\137", "\\n{low line}", "\\x2e", "\\u002e",
                      "\\u0000002e", "\\056", "\\n{full stop}")


def analyse(template: Template, limits: Limits = DEFAULT_LIMITS) -> list[TemplateIssue]:
    """Every issue of a template, most severe first, then by line; empty for an ordinary chat template. Parsing
    and the walk are bounded by the user's ``limits.template_parse_chars`` / ``template_walk_steps``."""
    text = template.text
    issues, unparsed, line = _tree_issues(template, limits)
    if unparsed is not None:
        issues = [TemplateIssue("unparsed", f"{unparsed}; checked by pattern only", short(text), line),
                  *pattern_issues(text)]
    if len(text) > OVERSIZED_TEMPLATE:
        issues.append(TemplateIssue("unusual", f"is {len(text):,} characters long", ""))
    return sorted(issues, key=lambda i: (KINDS.index(i.kind), i.line or 0))


def _tree_issues(template: Template, limits: Limits) -> tuple[list[TemplateIssue], str | None, int | None]:
    """(issues, why the tree could not be used, line of the parse error)."""
    if template.unparsed is not None:
        return [], f"could not be parsed by Jinja2: {template.unparsed}", None
    parsed = parse(template.text, limits.template_parse_chars)
    if parsed.tree is None:
        return [], f"could not be parsed by Jinja2: {parsed.error}", parsed.line
    try:
        issues = walk(parsed.tree, limits.template_walk_steps)
    except Budget as exc:
        return [], f"was parsed by Jinja2 but is too complex to analyse ({exc})", None
    except RecursionError:
        return [], "was parsed by Jinja2 but nests too deeply to analyse", None
    return issues + _escape_issues(template.text), None, None


def _escape_issues(text: str) -> list[TemplateIssue]:
    """String literals that spell '_' or '.' with escapes (``'\\x5f\\x5fclass\\x5f\\x5f'``)."""
    lowered = text.lower()
    if not any(marker in lowered for marker in ESCAPED_NAME_CHARS):
        return []
    for line, spelling in string_tokens(text):
        if any(marker in spelling.lower() for marker in ESCAPED_NAME_CHARS):
            return [TemplateIssue("obfuscation", "spells '_' or '.' with escape sequences in a string, which only "
                                  "hides a name", short(spelling), line)]
    return []
