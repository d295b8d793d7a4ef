"""SARIF 2.1.0 for GitHub code scanning: rules from the registry, security-severity, partialFingerprints,
file-level locations with the tensor as a logical location; unverified files as tool notifications."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import quote

from weightaudit import __version__
from weightaudit.model import Finding, Severity
from weightaudit.report import Report, Verdict
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


def _repository_root(folder: Path) -> Path | None:
    """The nearest folder at or above ``folder`` holding ``.git`` (no git command is run)."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _prefix(report: Report) -> str:
    """The audited folder relative to ``%SRCROOT%`` ('' when they are the same): the repository holding the
    release, else the working folder when the release is inside it."""
    root = Path(report.release.root).absolute()
    base = _repository_root(root)
    if base is None:
        cwd = Path.cwd().absolute()
        base = cwd if root == cwd or cwd in root.parents else root
    return "" if base == root else root.relative_to(base).as_posix() + "/"


def artifact_uri(path: str, prefix: str = "") -> str:
    """A relative URI reference (RFC 3986): every character outside the unreserved set and ``/`` is
    percent-encoded as UTF-8 (spaces, ``#``, ``?``, brackets, non-ASCII)."""
    return quote(prefix + path.replace(os.sep, "/"), safe="/")


def _location(path: str, prefix: str) -> dict[str, Any]:
    return {"physicalLocation": {"artifactLocation": {"uri": artifact_uri(path, prefix), "uriBaseId": "%SRCROOT%"}}}


def _result(finding: Finding, index_of: dict[str, int], prefix: str = "") -> dict[str, Any]:
    location: dict[str, Any] = _location(finding.path, prefix)
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


def _run(report: Report) -> dict[str, Any]:
    """One SARIF run per release. Result URIs are relative to the repository root (``%SRCROOT%``, so code
    scanning finds the file even when a sub-folder was audited); the run records that sub-folder."""
    rules = all_rules()
    index_of = {rule.id: i for i, rule in enumerate(rules)}
    prefix = _prefix(report)
    notifications = [
        {"level": "error", "message": {"text": f"{f.path}: not verified: {f.reason or f.status.value}"},
         "locations": [_location(f.path, prefix)]}
        for f in report.files if not f.verified
    ]
    invocation: dict[str, Any] = {"executionSuccessful": report.verdict is not Verdict.INCOMPLETE,
                                  "exitCode": int(report.exit_code),
                                  "properties": {"verdict": report.verdict.value}}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "tool": {"driver": {"name": "weightaudit", "version": __version__, "semanticVersion": __version__,
                            "informationUri": INFO_URI, "rules": [rule_descriptor(r) for r in rules]}},
        "invocations": [invocation],
        "originalUriBaseIds": _base_ids(prefix),
        "results": [_result(f, index_of, prefix) for f in report.findings],
        "properties": {"target": report.target, "auditedFolder": prefix.rstrip("/") or ".",
                       "verdict": report.verdict.value, **({"policy": dict(report.policy)} if report.policy else {})},
    }


def _base_ids(prefix: str) -> dict[str, Any]:
    ids: dict[str, Any] = {"%SRCROOT%": {"description": {"text": "The repository holding the audited release (else "
                                                                 "the working folder, else the audited folder)."}}}
    if prefix:
        ids["AUDITROOT"] = {"uri": quote(prefix, safe="/"), "uriBaseId": "%SRCROOT%",
                            "description": {"text": "The audited folder."}}
    return ids


def build(report: Report) -> dict[str, Any]:
    return build_many([report])


def build_many(reports: Sequence[Report]) -> dict[str, Any]:
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [_run(r) for r in reports]}


def render(report: Report, options: "RenderOptions") -> str:
    return json.dumps(build(report), indent=2, ensure_ascii=False)


def render_many(reports: Sequence[Report], options: "RenderOptions") -> str:
    return json.dumps(build_many(reports), indent=2, ensure_ascii=False)
