"""SARIF 2.1.0 for GitHub code scanning: rules from the registry, security-severity, partialFingerprints,
file-level locations with the tensor as a logical location; unverified files as tool notifications."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from weightaudit import __version__
from weightaudit.model import Finding, Severity
from weightaudit.report import Report
from weightaudit.rules import Rule, all_rules

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/weightaudit/weightaudit"
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                     Severity.LOW: "2.0", Severity.INFO: "0.0"}
LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
         Severity.LOW: "note", Severity.INFO: "note"}
PRECISION = {"high": "high", "medium": "medium", "low": "low"}


def rule_descriptor(rule: Rule) -> dict[str, Any]:
    tags = list(rule.tags)
    if rule.cwe is not None:
        tags.append(f"external/cwe/cwe-{rule.cwe}")
    if rule.id.startswith("WA4"):
        tags.append("security")
    tags = list(dict.fromkeys(tags))   # SARIF tags are a set (uniqueItems)
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.help.split("\n\n")[0]},
        "help": {"text": rule.help, "markdown": rule.help},
        "helpUri": f"{INFO_URI}/blob/main/README.md#rules",
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {"tags": tags, "precision": PRECISION.get(rule.confidence, "medium"),
                       "security-severity": SECURITY_SEVERITY[rule.severity]},
    }


def _result(finding: Finding, index_of: dict[str, int]) -> dict[str, Any]:
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": finding.path,
                                                                         "uriBaseId": "%SRCROOT%"}}}
    if finding.tensor is not None:
        location["logicalLocations"] = [{"name": finding.tensor, "fullyQualifiedName":
                                         f"{finding.path}::{finding.tensor}", "kind": "member"}]
    message = finding.message + (f" [{finding.where}]" if finding.where else "")
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "level": LEVEL[finding.severity],
        "message": {"text": message},
        "locations": [location],
        "partialFingerprints": {"weightauditFingerprint/v1": finding.fingerprint},
        "properties": {"severity": finding.severity.label,
                       "security-severity": SECURITY_SEVERITY[finding.severity]},
    }
    if finding.rule_id in index_of:
        result["ruleIndex"] = index_of[finding.rule_id]
    return result


def build(report: Report) -> dict[str, Any]:
    rules = all_rules()
    index_of = {rule.id: i for i, rule in enumerate(rules)}
    notifications = [
        {"level": "error", "message": {"text": f"{f.path}: not verified: {f.reason or f.status.value}"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"}}}]}
        for f in report.files if not f.verified
    ]
    invocation: dict[str, Any] = {"executionSuccessful": report.verified}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "weightaudit", "version": __version__, "semanticVersion": __version__,
                                "informationUri": INFO_URI, "rules": [rule_descriptor(r) for r in rules]}},
            "invocations": [invocation],
            "results": [_result(f, index_of) for f in report.findings],
            "properties": {"target": report.target},
        }],
    }


def render(report: Report, options: "RenderOptions") -> str:
    return json.dumps(build(report), indent=2, ensure_ascii=False)
