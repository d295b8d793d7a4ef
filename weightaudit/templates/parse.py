"""Chat templates parsed with Jinja2's own parser, configured the way the chat runtimes configure it.

transformers (``_compile_jinja_template``) builds an ``ImmutableSandboxedEnvironment`` with ``trim_blocks``,
``lstrip_blocks``, the ``loopcontrols`` extension (``{% break %}``, ``{% continue %}``) and its own
``{% generation %}...{% endgeneration %}`` tag; llama.cpp's minja accepts the same syntax. We build the same
environment and call ``parse`` only: parsing builds a syntax tree and runs nothing. Templates are never
rendered and never compiled to Python.

Bounded: templates over ``limits.template_parse_chars`` (default ``MAX_PARSE_CHARS``) are not given to the parser (Jinja's lexer and parser run at about
0.5 MB/s, and the biggest published chat templates are under 20 KB); Jinja's recursive-descent parser raises
RecursionError on deep nesting, which is caught here. Either way the caller checks the text by pattern only and
says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_PARSE_CHARS = 64 * 1024    # templates up to this size are parsed by Jinja2 (published ones are < 20 KB)


class GenerationTag(jinja2.ext.Extension):
    """transformers' ``{% generation %}...{% endgeneration %}`` (marks assistant tokens): parsed as a scope."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                         extensions=[jinja2.ext.loopcontrols, GenerationTag])


@dataclass(frozen=True)
class Parsed:
    """A syntax tree, or why there is none (``error``, with the template line when Jinja gave one)."""

    tree: nodes.Template | None
    error: str | None = None
    line: int | None = None


def parse(text: str, max_chars: int = MAX_PARSE_CHARS) -> Parsed:
    """Jinja2's syntax tree of ``text`` (never rendered); none past ``max_chars`` (limits.template_parse_chars)."""
    if len(text) > max_chars:
        return Parsed(None, f"{len(text):,} characters, over limits.template_parse_chars = {max_chars:,} for parsing")
    try:
        return Parsed(environment().parse(text))
    except jinja2.TemplateSyntaxError as exc:
        return Parsed(None, f"syntax error: {exc.message}", exc.lineno)
    except RecursionError:
        return Parsed(None, "nested deeper than Jinja2's parser can follow")
    except (jinja2.TemplateError, ValueError, TypeError, MemoryError) as exc:
        return Parsed(None, f"{type(exc).__name__}: {exc}")


def string_tokens(text: str) -> list[tuple[int, str]]:
    """(line, source spelling) of every string literal in the template's code, from Jinja2's lexer (so raw
    blocks and text between blocks are not included)."""
    try:
        return [(line, value) for line, kind, value in environment().lex(text) if kind == "string"]
    except (jinja2.TemplateError, RecursionError, ValueError):
        return []
