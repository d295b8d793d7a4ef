"""Policy files (``weightaudit.yaml``, ``--policy``, ``[tool.weightaudit]`` in pyproject.toml).

```yaml
version: 1
fail_on: high                 # info | low | medium | high | critical | never
rules:
  WA305: {severity: low}      # change a rule's severity
  WA306: {enabled: false}     # turn a rule off
  WA307: {sigma: 40}          # override a threshold
ignore:
  - rule: WA301
    path: "checkpoints/*.safetensors"   # glob on the path relative to the target (default "*")
    tensor: "*.bias"                     # optional glob on the tensor name
    reason: "known NaN in an unused head"   # required
    expires: 2027-01-31                  # optional; an expired entry no longer applies (and says so)
limits:                                  # optional; see weightaudit/limits.py (README "Reliability")
  side_file_bytes: 200000000
```
Any error in the file is a configuration error (exit 2).

Which policy applies is the user's choice, never the release's: ``--policy FILE``, else the first
``weightaudit.yaml`` (or another POLICY_NAMES) or ``pyproject.toml`` with ``[tool.weightaudit]`` found from the
current working directory upwards (stopping after a folder that holds ``.git``, or at the filesystem root), else
the defaults. Folders inside an audited target are skipped, except the working directory itself when it *is* the
target (``cd release && weightaudit audit .``): a policy shipped inside a release never applies to it otherwise.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from weightaudit.errors import PolicyError
from weightaudit.limits import DEFAULT_LIMITS, Limits, parse_limits
from weightaudit.model import Finding, Severity
from weightaudit.rules import get_rule, is_rule_id

POLICY_NAMES = ("weightaudit.yaml", "weightaudit.yml", ".weightaudit.yaml", ".weightaudit.yml")
TOP_KEYS = frozenset({"version", "fail_on", "rules", "ignore", "limits", "pickle"})
POLICY_MAX_BYTES = 1_000_000
RULE_KEYS = frozenset({"enabled", "severity"})
IGNORE_KEYS = frozenset({"rule", "path", "tensor", "reason", "expires"})


@dataclass(frozen=True)
class RulePolicy:
    enabled: bool = True
    severity: Severity | None = None
    thresholds: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IgnoreEntry:
    rule: str
    reason: str
    path: str = "*"
    tensor: str | None = None
    expires: dt.date | None = None

    def matches(self, finding: Finding) -> bool:
        if finding.rule_id != self.rule or not fnmatch.fnmatchcase(finding.path, self.path):
            return False
        return self.tensor is None or fnmatch.fnmatchcase(finding.tensor or "", self.tensor)

    def expired(self, today: dt.date) -> bool:
        return self.expires is not None and today > self.expires


@dataclass(frozen=True)
class Policy:
    source: str | None = None
    fail_on: Severity | None = None
    fail_never: bool = False
    rules: Mapping[str, RulePolicy] = field(default_factory=dict)
    ignore: tuple[IgnoreEntry, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    pickle_allow: tuple[Any, ...] = ()   # AllowEntry records: the user's own pickle data classes (WA420)
    origin: str = "default"      # cli (--policy) | discovered (cwd upwards) | default

    def rule(self, rule_id: str) -> RulePolicy:
        return self.rules.get(rule_id, RulePolicy())


def parse_fail_on(text: str) -> tuple[Severity | None, bool]:
    """``never`` -> (None, True); a severity name -> (severity, False). Raises ValueError otherwise."""
    if text.strip().lower() == "never":
        return None, True
    return Severity.parse(text), False


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; every problem is a PolicyError naming the file."""
    import tomllib   # TOML and YAML parsers load with a policy file, not at every start-up

    import yaml

    from weightaudit.safe_read import UnsafeDocument, load_yaml, read_text

    try:
        text = read_text(path, POLICY_MAX_BYTES)
    except UnsafeDocument as exc:
        raise PolicyError(f"{path}: policy file refused: {exc}") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file ({exc.strerror or exc})") from exc
    if path.name == "pyproject.toml":
        try:
            data = tomllib.loads(text).get("tool", {}).get("weightaudit")
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: invalid TOML: {exc}") from exc
        except RecursionError:
            raise PolicyError(f"{path}: policy file refused: nested too deeply") from None
        if data is None:
            return Policy(source=str(path))
        data.setdefault("version", 1)
    else:
        try:
            data = load_yaml(text)
        except UnsafeDocument as exc:
            raise PolicyError(f"{path}: policy file refused: {exc}") from None
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from exc
    return parse_policy(data, str(path))


def parse_policy(data: Any, source: str) -> Policy:
    def fail(message: str) -> PolicyError:
        return PolicyError(f"{source}: {message}")

    if not isinstance(data, dict):
        raise fail("a policy must be a mapping with 'version: 1'")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} (allowed: {', '.join(sorted(TOP_KEYS))})")
    if data.get("version") != 1:
        raise fail(f"'version' must be 1, not {data.get('version')!r}")
    fail_on, never = None, False
    if "fail_on" in data:
        try:
            fail_on, never = parse_fail_on(str(data["fail_on"]))
        except ValueError as exc:
            raise fail(f"fail_on: {exc}") from None
    rules = {rule_id: _rule_policy(rule_id, spec, fail) for rule_id, spec in (data.get("rules") or {}).items()}
    entries = data.get("ignore") or []
    if not isinstance(entries, list):
        raise fail("'ignore' must be a list")
    ignore = tuple(_ignore_entry(i, entry, fail) for i, entry in enumerate(entries))
    try:
        limits = parse_limits(data.get("limits"))
    except ValueError as exc:
        raise fail(str(exc)) from None
    pickle_allow = _pickle_allow(data.get("pickle"), source, fail)
    return Policy(source=source, fail_on=fail_on, fail_never=never, rules=rules, ignore=ignore, limits=limits,
                  pickle_allow=pickle_allow)


def _pickle_allow(section: Any, source: str, fail) -> tuple[Any, ...]:
    """``pickle: {allow: [{name, reason, kind?, container?}]}``: extra pickle allowlist entries (schema in
    weightaudit/rules/pickle_allowlist.py, documented by `weightaudit rules explain WA403`)."""
    from weightaudit.rules.pickle_allowlist import policy_entries

    if section is None:
        return ()
    if not isinstance(section, dict) or set(section) - {"allow"}:
        raise fail("'pickle' must be a mapping with an 'allow' list")
    try:
        return policy_entries(section.get("allow") or [], source)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _rule_policy(rule_id: Any, spec: Any, fail) -> RulePolicy:
    if not isinstance(rule_id, str) or not is_rule_id(rule_id):
        raise fail(f"rules: unknown rule ID {rule_id!r}")
    if not isinstance(spec, dict):
        raise fail(f"rules.{rule_id} must be a mapping")
    rule = get_rule(rule_id)
    thresholds = {k: v for k, v in spec.items() if k not in RULE_KEYS}
    for key, value in thresholds.items():
        if key not in rule.thresholds:
            allowed = ", ".join(sorted(rule.thresholds)) or "none"
            raise fail(f"rules.{rule_id}: unknown setting {key!r} (thresholds of {rule_id}: {allowed})")
        if not isinstance(value, type(rule.thresholds[key])) and not (
                isinstance(value, (int, float)) and isinstance(rule.thresholds[key], (int, float))):
            raise fail(f"rules.{rule_id}.{key}: expected {type(rule.thresholds[key]).__name__}")
    severity = None
    if "severity" in spec:
        try:
            severity = Severity.parse(str(spec["severity"]))
        except ValueError as exc:
            raise fail(f"rules.{rule_id}.severity: {exc}") from None
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail(f"rules.{rule_id}.enabled must be true or false")
    return RulePolicy(enabled=enabled, severity=severity, thresholds=thresholds)


def _ignore_entry(index: int, entry: Any, fail) -> IgnoreEntry:
    where = f"ignore[{index}]"
    if not isinstance(entry, dict):
        raise fail(f"{where} must be a mapping with rule and reason")
    unknown = set(entry) - IGNORE_KEYS
    if unknown:
        raise fail(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    rule = entry.get("rule")
    if not isinstance(rule, str) or not is_rule_id(rule):
        raise fail(f"{where}: unknown or missing rule ID {rule!r}")
    reason = entry.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise fail(f"{where}: a 'reason' is required to ignore {rule}")
    expires = entry.get("expires")
    if expires is not None and not isinstance(expires, dt.date):
        try:
            expires = dt.date.fromisoformat(str(expires))
        except ValueError:
            raise fail(f"{where}: expires must be a date (YYYY-MM-DD), not {expires!r}") from None
    return IgnoreEntry(rule=rule.upper(), reason=reason.strip(), path=str(entry.get("path", "*")),
                       tensor=entry.get("tensor"), expires=expires)


def find_policy(folder: Path) -> Path | None:
    """The policy file in this one folder, if any: a POLICY_NAMES file, else a pyproject.toml that has a
    ``[tool.weightaudit]`` table (one without it does not count, as linters do)."""
    for name in POLICY_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            with pyproject.open("rb") as handle:
                if "weightaudit" in tomllib.load(handle).get("tool", {}):
                    return pyproject
        except (OSError, ValueError, TypeError, RecursionError):
            return pyproject   # broken: load_policy reports it as a configuration error
    return None


def _inside(folder: Path, target: Path) -> bool:
    return folder == target or target in folder.parents


def discover_policy(cwd: Path, targets: list[Path]) -> Path | None:
    """The user's policy: searched from ``cwd`` upwards, never inside an audited target folder (unless that
    target is ``cwd`` itself); the search ends after a folder holding ``.git`` or at the filesystem root."""
    cwd = _real(cwd)
    roots = [_real(t) for t in targets]
    for folder in (cwd, *cwd.parents):
        allowed = folder == cwd and cwd in roots
        if allowed or not any(_inside(folder, root) for root in roots):
            found = find_policy(folder)
            if found is not None:
                return found
        if (folder / ".git").exists():
            return None
    return None


def target_folders(paths: list[str] | tuple[str, ...]) -> list[Path]:
    """The folders a policy must never come from: each target folder, or the folder of a target file."""
    out = []
    for given in paths:
        path = _real(Path(given))
        out.append(path if path.is_dir() else path.parent)
    return out


def _real(path: Path) -> Path:
    """Absolute, '..' and links resolved (a symlink loop falls back to the normalised spelling)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def resolve_policy(policy_path: str | None, paths: list[str] | tuple[str, ...], cwd: Path | None = None) -> Policy:
    """``--policy FILE`` (origin cli), else the discovered user policy (origin discovered), else the defaults."""
    if policy_path is not None:
        path = Path(policy_path)
        if not path.is_file():
            raise PolicyError(f"{policy_path}: policy file not found")
        return replace(load_policy(path), origin="cli")
    found = discover_policy(cwd or Path.cwd(), target_folders(paths))
    if found is None:
        return Policy()
    return replace(load_policy(found), origin="discovered", source=str(found))


def with_cli_overrides(policy: Policy, fail_on: str | None) -> Policy:
    """Apply ``--fail-on`` (CLI wins over the policy file)."""
    if fail_on is None:
        return policy
    try:
        severity, never = parse_fail_on(fail_on)
    except ValueError as exc:
        raise PolicyError(f"--fail-on: {exc}") from None
    return replace(policy, fail_on=severity, fail_never=never)
