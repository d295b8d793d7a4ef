"""``weightaudit rules`` lists every rule; ``weightaudit rules explain ID`` shows one."""

from __future__ import annotations

import json

import click

from weightaudit.cli.common import write_output
from weightaudit.errors import UsageError


def _rule_dict(rule) -> dict:
    return {"id": rule.id, "name": rule.name, "summary": rule.summary, "severity": rule.severity.label,
            "confidence": rule.confidence, "cwe": rule.cwe, "tags": list(rule.tags),
            "thresholds": dict(rule.thresholds), "help": rule.help}


@click.group("rules", invoke_without_command=True)
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def rules_group(ctx: click.Context, fmt: str) -> None:
    """List the rules (ID, severity, summary)."""
    if ctx.invoked_subcommand is not None:
        return
    from weightaudit.rules import all_rules

    rules = all_rules()
    if fmt == "json":
        write_output(json.dumps({"rules": [_rule_dict(r) for r in rules]}, indent=2), None)
        return
    width = max(len(r.name) for r in rules)
    lines = [f"{r.id}  {r.severity.label:<8}  {r.name:<{width}}  {r.summary}" for r in rules]
    write_output("\n".join(lines), None)


@rules_group.command("explain")
@click.argument("rule_id")
def explain(rule_id: str) -> None:
    """Show one rule in full."""
    from weightaudit.rules import get_rule

    try:
        rule = get_rule(rule_id)
    except KeyError:
        raise UsageError(f"unknown rule ID {rule_id!r} (see `weightaudit rules`)") from None
    lines = [f"{rule.id}  {rule.name}", "", rule.summary, "",
             f"Default severity: {rule.severity.label}", f"Confidence: {rule.confidence}"]
    if rule.cwe is not None:
        lines.append(f"CWE: CWE-{rule.cwe}")
    if rule.thresholds:
        lines.append("Thresholds: " + ", ".join(f"{k}={v}" for k, v in sorted(rule.thresholds.items())))
    lines += ["", rule.help]
    write_output("\n".join(lines), None)
