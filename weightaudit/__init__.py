"""weightaudit: audit open model-weight releases without executing anything from them.

The Python API (see weightaudit/api.py and the README's "Python API"): ``inspect``, ``audit``, ``scorecard``,
``diff``, ``hash`` and ``verify`` return typed reports whose ``to_dict()`` is the CLI's JSON and whose
``exit_code`` is the CLI's exit code. Imported on first use, so ``import weightaudit`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "inspect", "audit", "scorecard", "diff", "hash", "verify", "Report", "ReportSet",
           "ScorecardReport", "DiffReport", "Tolerance", "Manifest", "VerifyReport", "Finding", "TensorInfo",
           "Severity", "Verdict", "ExitCode"]

# public name -> module that defines it
_EXPORTS = {
    "inspect": "weightaudit.api", "audit": "weightaudit.api", "scorecard": "weightaudit.api",
    "diff": "weightaudit.api", "hash": "weightaudit.api", "verify": "weightaudit.api",
    "ReportSet": "weightaudit.api", "ScorecardReport": "weightaudit.api",
    "Report": "weightaudit.report", "Verdict": "weightaudit.report",
    "DiffReport": "weightaudit.compare", "Tolerance": "weightaudit.compare",
    "Manifest": "weightaudit.manifest", "VerifyReport": "weightaudit.manifest",
    "Finding": "weightaudit.model", "TensorInfo": "weightaudit.model", "Severity": "weightaudit.model",
    "ExitCode": "weightaudit.errors",
}

if TYPE_CHECKING:
    from weightaudit.api import ReportSet, ScorecardReport, audit, diff, hash, inspect, scorecard, verify
    from weightaudit.compare import DiffReport, Tolerance
    from weightaudit.errors import ExitCode
    from weightaudit.manifest import Manifest, VerifyReport
    from weightaudit.model import Finding, Severity, TensorInfo
    from weightaudit.report import Report, Verdict


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'weightaudit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
