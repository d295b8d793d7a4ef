"""The rule registry. Adding a rule module = one import line in ``_load_rule_modules``.

ID ranges (never reused or renumbered): WA1xx integrity, WA2xx size and shape, WA3xx numerics,
WA4xx code-execution risk, WA5xx openness, WA6xx release hygiene (credentials).
"""

from __future__ import annotations

import importlib
import re

from weightaudit.rules.base import AuditContext, Rule

__all__ = ["AuditContext", "Rule", "register", "rule_family", "get_rule", "all_rules", "is_rule_id"]

_RULES: dict[str, Rule] = {}
_ID_PATTERN = re.compile(r"^WA[1-9]\d\d$")

# One line per rule module.
_RULE_MODULES = (
    "weightaudit.rules.integrity",
    "weightaudit.rules.size",
    "weightaudit.rules.copies_rules",
    "weightaudit.rules.adapter_rules",
    "weightaudit.rules.numerics",
    "weightaudit.rules.pickle_rule_defs",        # rule objects only: the pickle machinery (pickle_rules) loads
    "weightaudit.rules.torch_container_rules",   # with the loaders that need it
    "weightaudit.rules.container_rules",
    "weightaudit.rules.template_rules",
    "weightaudit.rules.gguf_rules",
    "weightaudit.rules.onnx_rules",
    "weightaudit.rules.keras_tf_rules",
    "weightaudit.rules.keras_rule_defs",         # metadata; the checks import keras_rules on a Keras config
    "weightaudit.rules.tf_rules",
    "weightaudit.rules.openness",
    "weightaudit.rules.secrets",
)
_loaded = False


def register(rule: Rule) -> Rule:
    """Add a rule to the registry; IDs are unique and follow ``WA<range><nn>``."""
    if not _ID_PATTERN.match(rule.id):
        raise ValueError(f"rule ID {rule.id!r} does not match WAnnn")
    if rule.id in _RULES and _RULES[rule.id] is not rule:
        raise ValueError(f"rule ID {rule.id} registered twice")
    _RULES[rule.id] = rule
    return rule


def rule_family(tags: tuple[str, ...], help_footer: str, default_cwe: int | None = 20):
    """A constructor for a family of rules that share tags and the end of their help text (what the format
    requires, what to do): ``make(rule_id, name, summary, severity, detail, cwe=..., confidence=...)``."""
    from weightaudit.model import Severity

    def make(rule_id: str, name: str, summary: str, severity: Severity, detail: str,
             cwe: int | None = default_cwe, confidence: str = "high") -> Rule:
        return register(Rule(id=rule_id, name=name, summary=summary, severity=severity, cwe=cwe,
                             confidence=confidence, tags=tags, help=f"{detail}{help_footer}"))
    return make


def _load_rule_modules() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in _RULE_MODULES:
            importlib.import_module(name)


def all_rules() -> list[Rule]:
    """Every registered rule, sorted by ID."""
    _load_rule_modules()
    return [_RULES[k] for k in sorted(_RULES)]


def get_rule(rule_id: str) -> Rule:
    """The rule with this ID; KeyError when there is none."""
    _load_rule_modules()
    return _RULES[rule_id.upper()]


def is_rule_id(text: str) -> bool:
    _load_rule_modules()
    return text.upper() in _RULES
