"""Chat templates: where they are in a release and what they do, read statically (never rendered).

A chat template is a Jinja2 program shipped with the tokenizer (``tokenizer_config.json`` ``chat_template``,
``chat_template.jinja``, ``*.j2``, GGUF ``tokenizer.chat_template``). Rendered outside a sandbox it can reach
Python's internals through dunder attributes — server-side template injection, e.g. CVE-2024-34359 in
llama-cpp-python. The work is done in ``weightaudit.templates`` (Jinja2's parser, a walk of its syntax tree, a
linear pattern fallback) and ``weightaudit.templates.sources`` (finding templates in side files); this module
keeps the names the rest of the package imports.
"""

from __future__ import annotations

from weightaudit.templates import OVERSIZED_TEMPLATE, Template, TemplateIssue, analyse
from weightaudit.templates.sources import RAW_TEMPLATE_SUFFIXES, Unread, find_templates, scan_sources

__all__ = ["OVERSIZED_TEMPLATE", "RAW_TEMPLATE_SUFFIXES", "Template", "TemplateIssue", "Unread", "analyse",
           "find_templates", "scan_sources"]
