"""WA460–WA469: chat templates (Jinja2 programs shipped with the tokenizer), judged on Jinja2's syntax tree.

WA460 critical: reaches Python internals. WA461 high: builds names indirectly or calls what the chat API never
provides. WA462 low: unusual (huge loops, other templates loaded, oversized). WA463 medium: a template (or a file
that holds one) could not be fully analysed — checked by pattern only, or not read at all; the file that holds it
is unverified (exit 3), while whatever the patterns found dangerous is WA460/WA461 as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import Finding, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

if TYPE_CHECKING:   # the template scanner loads when there is a file to scan or a template to judge
    from weightaudit.chat_templates import Template, TemplateIssue

_WHY = ("Chat templates are Jinja2 programs in tokenizer_config.json (chat_template), chat_template.jinja, GGUF "
        "metadata (tokenizer.chat_template) and the like. transformers renders them in Jinja's sandbox, but other "
        "runtimes have not (llama-cpp-python before 0.2.72: CVE-2024-34359, remote code execution from a GGUF's "
        "template), and templates travel between formats. weightaudit parses the template with Jinja2's own "
        "parser (configured as transformers configures it) and walks the syntax tree; it never renders it. String "
        "expressions are folded (~, +, |join, |format, %, .format(), |replace, |reverse, slices, {% set %} "
        "variables and namespaces across statements), so a name assembled from pieces is seen whole; {% raw %} "
        "text and string literals are data.")


def template_findings(template: Template, label: str, limits: Limits = DEFAULT_LIMITS) -> Iterator[Finding]:
    """One finding per kind of issue in ``template``: the first line's issue that reaches furthest (the longest
    chain, e.g. ``cycler.__init__.__globals__.os.popen(...)``), with the count of the others.
    ``label`` says where the template is (``chat template chat_template[tool_use]``)."""
    from weightaudit.chat_templates import analyse

    issues = analyse(template, limits)
    for kind in dict.fromkeys(issue.kind for issue in issues):
        same = [issue for issue in issues if issue.kind == kind]
        shown = min(same, key=lambda issue: (issue.line or 0, -len(issue.snippet)))
        yield _BY_KIND[kind].finding(template.path, _message(label, shown, len(same) - 1), where=template.where)


def _message(label: str, issue: TemplateIssue, others: int) -> str:
    line = f" line {issue.line}" if issue.line else ""
    detail = f": {issue.snippet}" if issue.snippet else ""
    more = f" (+{others} more of this kind)" if others else ""
    return f"{label}{line} {issue.reason}{detail}{more}"


def _check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    side_files = ctx.release.all_side_files()
    if not side_files:
        return   # a lone weight file: no side file can hold a template
    from weightaudit.chat_templates import Unread, scan_sources

    root = Path(ctx.release.root)
    for found in scan_sources(root, side_files, ctx.limits):
        if isinstance(found, Unread):
            yield UNANALYSED.finding(found.path, f"side file that may hold a chat template {found.reason}")
        else:
            yield from template_findings(found, f"chat template {found.where}", ctx.limits)


EXECUTION = register(Rule(
    id="WA460", name="chat-template-code-execution",
    summary="A chat template reaches Python internals (template injection).", severity=Severity.CRITICAL,
    cwe=1336, tags=("security", "chat-template"), check=_check,
    help="The template reads a dunder attribute or item (__class__, __globals__, __builtins__ ...) however the "
         "name is assembled, a name-mangled or frame attribute (_TemplateReference__context, f_globals), a module "
         "(os, sys, __builtins__), loops over what such internals return (__subclasses__()), or calls eval, exec, "
         "__import__, getattr and the like: the steps of a server-side template injection that runs shell commands "
         f"when the template is rendered without a sandbox.\n\n{_WHY}\n\nWhat to do: do not render this template; "
         "replace it with the model family's published template.",
))
OBFUSCATION = register(Rule(
    id="WA461", name="chat-template-obfuscation",
    summary="A chat template builds names indirectly or calls what the chat API does not provide.",
    severity=Severity.HIGH, cwe=1336, tags=("security", "chat-template"),
    help="The template reads an attribute or item whose name is assembled at render time and cannot be folded, "
         "uses escapes that spell '_' or '.', reads a private attribute, starts an attribute chain from a "
         "Jinja/Flask global (cycler, joiner, lipsum, namespace, self, request, config), or calls a function or "
         "method the chat API never hands a template (the known inputs, globals and methods are listed in "
         f"weightaudit/data/chat_template_names.yaml). Ordinary chat templates need none of these.\n\n{_WHY}",
))
UNUSUAL = register(Rule(
    id="WA462", name="chat-template-unusual",
    summary="A chat template is oversized, loads other templates or loops over a huge range.", severity=Severity.LOW,
    cwe=400, tags=("chat-template",),
    help="A template over 64 KB, an include/import/extends (chat runtimes have no template loader), a loop over "
         f"millions of items or a string too big to build (a denial of service when rendered).\n\n{_WHY}",
))
UNANALYSED = register(Rule(
    id="WA463", name="chat-template-unanalysed",
    summary="A chat template could not be fully analysed (checked by pattern only, or not read).",
    severity=Severity.MEDIUM, cwe=1336, tags=("security", "chat-template"), unverifies=True,
    help="Jinja2's parser could not read the template (a syntax error, nesting deeper than the parser follows, "
         "a template over limits.template_parse_chars (64 KiB), or a tokenizer_config.json that is not valid "
         "JSON), or its walk passed limits.template_walk_steps, so it was checked by fixed patterns only; or a side "
         "file that may hold a template was over the size limit for reading (limits.template_json_bytes, 64 MiB; "
         "template_yaml_bytes, 4 MiB; template_file_bytes, 64 MiB) or could not be read. Raise those limits in "
         "YOUR policy if a legitimate template needs it. A template that was not fully analysed is "
         "not known to be safe: the file that holds it is reported as not verified, so the audit is incomplete "
         "(exit 3, never a pass); anything the patterns found dangerous is reported as WA460/WA461 and fails the "
         f"audit.\n\n{_WHY}\n\nWhat to do: fix or replace the template; or review it by hand. (Suppressing this "
         "finding in your policy does not make the file verified.)",
))
_BY_KIND = {"execution": EXECUTION, "obfuscation": OBFUSCATION, "unusual": UNUSUAL, "unparsed": UNANALYSED}
