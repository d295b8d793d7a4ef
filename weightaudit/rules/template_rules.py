"""WA460–WA469: chat templates (Jinja2 programs shipped with the tokenizer), read statically."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from weightaudit.chat_templates import analyse, find_templates
from weightaudit.model import Finding, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

_WHY = ("Chat templates are Jinja2 programs in tokenizer_config.json (chat_template), chat_template.jinja and "
        "the like. transformers renders them in Jinja's sandbox, but other runtimes have not (llama-cpp-python "
        "before 0.2.72: CVE-2024-34359, remote code execution from a GGUF's template), and templates travel "
        "between formats. weightaudit reads the template text and never renders it.")


def _check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    root = Path(ctx.release.root)
    rel_paths = ctx.release.all_side_files()
    for template in find_templates(root, rel_paths):
        seen: set[str] = set()
        for issue in analyse(template):
            if issue.kind in seen:
                continue
            seen.add(issue.kind)
            rule = _BY_KIND[issue.kind]
            detail = f": {issue.snippet}" if issue.snippet else ""
            yield rule.finding(template.path, f"chat template {template.where} {issue.reason}{detail}",
                               where=template.where)


EXECUTION = register(Rule(
    id="WA460", name="chat-template-code-execution",
    summary="A chat template reaches Python internals (template injection).", severity=Severity.CRITICAL,
    cwe=1336, tags=("security", "chat-template"), check=_check,
    help="The template uses dunder attributes (__class__, __globals__, __builtins__ ...), names them in strings, "
         "or calls eval/exec/__import__/getattr: the steps of a server-side template injection that runs shell "
         f"commands when the template is rendered without a sandbox.\n\n{_WHY}\n\nWhat to do: do not render "
         "this template; replace it with the model family's published template.",
))
OBFUSCATION = register(Rule(
    id="WA461", name="chat-template-obfuscation",
    summary="A chat template builds names indirectly or starts from an escape gadget.", severity=Severity.HIGH,
    cwe=1336, tags=("security", "chat-template"),
    help="chr()/ord(), the attr filter, escaped characters that decode to '_' or '.', or a Jinja/Flask global "
         "(cycler, joiner, lipsum, request, config, self) used as the root of an attribute chain: ordinary chat "
         f"templates need none of these; template-injection payloads use them to dodge scanners.\n\n{_WHY}",
))
UNUSUAL = register(Rule(
    id="WA462", name="chat-template-unusual",
    summary="A chat template is malformed, oversized or loops over a huge range.", severity=Severity.LOW,
    cwe=400, tags=("chat-template",),
    help="Unbalanced delimiters (the template will not render), a template over 64 KB, or a loop over millions "
         f"of items (a denial of service when rendered).\n\n{_WHY}",
))
_BY_KIND = {"execution": EXECUTION, "obfuscation": OBFUSCATION, "unusual": UNUSUAL}
