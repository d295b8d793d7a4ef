"""What a rule is, and the context a rule's check reads.

A rule is documented data with a stable ID. Some rules have a ``check`` that reads the whole release
(``AuditContext``); others are raised by a loader while it parses (their ``check`` is None) — either way the
registry is the one source for ``weightaudit rules``, SARIF ``rules[]`` and policy validation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import Finding, LoadedFile, Release, Severity, TensorInfo, TensorStats


@dataclass(frozen=True)
class AuditContext:
    """Everything a release-level rule may read. ``stats`` is empty when statistics were not computed."""

    release: Release
    files: tuple[LoadedFile, ...]
    stats: Mapping[tuple[str, str], TensorStats] = field(default_factory=dict)
    config: Mapping[str, Any] | None = None   # parsed config.json at the release root, if any
    limits: Limits = DEFAULT_LIMITS            # the user's policy limits (a rule that hits one yields WA132)

    @property
    def tensors(self) -> Iterable[TensorInfo]:
        for loaded in self.files:
            yield from loaded.tensors

    @functools.cached_property
    def tensors_with_stats(self) -> tuple[tuple[LoadedFile, TensorInfo, TensorStats], ...]:
        """Every tensor that has statistics, with the file that holds it, files in path order. Built once per
        context: the numeric rules each walked 20,000 tensors and their stats look-ups again."""
        stats = self.stats
        return tuple((loaded, tensor, found) for loaded in sorted(self.files, key=lambda f: f.path)
                     for tensor in loaded.tensors if (found := stats.get((tensor.file, tensor.name))) is not None)


CheckFn = Callable[[AuditContext, Mapping[str, Any]], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """One rule. ``thresholds`` are the defaults a policy may override (``rules: {WA305: {sigma: 50}}``)."""

    id: str
    name: str
    summary: str
    severity: Severity
    help: str
    confidence: str = "high"          # low | medium | high — how sure a hit is a real problem
    cwe: int | None = None
    tags: tuple[str, ...] = ()
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    check: CheckFn | None = None
    needs_stats: bool = False
    unverifies: bool = False          # a finding means its file was not fully checked: that file is unverified

    def finding(
        self,
        path: str,
        message: str,
        tensor: str | None = None,
        where: str | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        """A finding of this rule, at its default severity unless one is given."""
        return Finding(self.id, severity if severity is not None else self.severity, path, message, tensor, where)
