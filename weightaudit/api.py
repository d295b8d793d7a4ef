"""The Python API: what every CLI command does, as functions returning typed report objects.

    import weightaudit
    report = weightaudit.audit("path/to/release")
    report.exit_code        # what `weightaudit audit` would exit with
    report.to_dict()        # what `weightaudit audit --format json` would print
    for finding in report.findings: ...

Each function takes the paths the command takes and its options as keyword arguments (``revision=`` is the
CLI's ``--revision`` for Hugging Face cache folders). Several folders that are
separate releases give a :class:`ReportSet` (one report each, like the CLI); anything else gives one
:class:`~weightaudit.report.Report`. The CLI commands are thin layers over these functions: same defaults,
same reports, same exit codes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from weightaudit import targets
from weightaudit.errors import ExitCode
from weightaudit.report import Report, Verdict

__all__ = ["inspect", "audit", "scorecard", "diff", "hash", "verify", "ReportSet", "ScorecardReport",
           "ProgressSink", "release_groups"]

PathsLike = "str | Path | Sequence[str | Path]"
FILE_RULES = ("WA1", "WA2", "WA3", "WA4", "WA6")     # a file target: no release-level openness rules
INSPECT_RULES = ("WA1", "WA2", "WA3", "WA4")


class ProgressSink(Protocol):
    """Where a long run reports progress (the CLI's progress bar; anything with these three methods)."""

    def phase(self, message: str) -> None: ...
    def start(self, total_bytes: int) -> None: ...
    def advance(self, n_bytes: int) -> None: ...


@dataclass(frozen=True)
class ReportSet:
    """Several releases audited at once: one report each, and their combined verdict."""

    reports: tuple[Report, ...]

    def __iter__(self) -> Iterator[Report]:
        return iter(self.reports)

    def __len__(self) -> int:
        return len(self.reports)

    @property
    def verdict(self) -> Verdict:
        from weightaudit.report import combined_verdict

        return combined_verdict(self.reports)

    @property
    def exit_code(self) -> ExitCode:
        return self.verdict.exit_code

    def to_dict(self) -> dict[str, Any]:
        import json

        from weightaudit.render.json_report import render_many

        return json.loads(render_many(self.reports, None))   # type: ignore[arg-type]


@contextlib.contextmanager
def _revision(rev: str | None) -> Iterator[None]:
    """``revision=``: the snapshot of a Hugging Face cache repository folder to read (the CLI's --revision);
    None leaves the current choice (refs/main, else the only snapshot)."""
    if rev is None:
        yield
        return
    from weightaudit.hub_cache import revision

    with revision(rev):
        yield


def _paths(paths: Any) -> tuple[str, ...]:
    if isinstance(paths, (str, Path)):
        return (str(paths),)
    return tuple(str(p) for p in paths)


def release_groups(paths: Any) -> list[tuple[str, ...]]:
    """Paths that are separate releases are audited separately (see targets.release_groups)."""
    return targets.release_groups(_paths(paths))


def _one_or_set(reports: list[Report]) -> "Report | ReportSet":
    return reports[0] if len(reports) == 1 else ReportSet(tuple(reports))


def inspect(paths: Any, *, stats: bool = False, fail_on: str = "high", verify_checksums: bool = False,
            workers: int | None = None, progress: ProgressSink | None = None,
            revision: str | None = None) -> "Report | ReportSet":
    """What is inside a file or release (header reads only unless ``stats``); exit 1 when broken or unsafe."""
    from weightaudit.formats.base import LoadOptions
    from weightaudit.pipeline import RunOptions, run
    from weightaudit.policy import Policy, with_cli_overrides

    policy = with_cli_overrides(Policy(), fail_on)
    reports = []
    with _revision(revision):
        for group in release_groups(paths):
            options = RunOptions(command="inspect", stats=stats, policy=policy, workers=workers,
                                 rule_prefixes=INSPECT_RULES, load=LoadOptions(verify_checksums=verify_checksums),
                                 **_progress(progress, phases=stats))
            reports.append(run(group, options))
    return _one_or_set(reports)


def audit(paths: Any, *, policy: Any = None, fail_on: str | None = None, select: Sequence[str] = (),
          ignore: Sequence[str] = (), baseline: Any = None, stats: bool = True, verify_checksums: bool = False,
          workers: int | None = None, progress: ProgressSink | None = None,
          revision: str | None = None) -> "Report | ReportSet":
    """Every loader and rule (statistics unless ``stats=False``). ``policy``: a Policy, a policy file path, or
    None for the user policy discovered from the working directory (never one inside the release).
    ``baseline``: a baseline file path or a set of fingerprints."""
    from weightaudit.pipeline import run

    given = _paths(paths)
    plan = audit_plan(given, policy=policy, fail_on=fail_on, select=select, ignore=ignore, baseline=baseline,
                      stats=stats, verify_checksums=verify_checksums, workers=workers, progress=progress)
    reports = []
    with _revision(revision):
        for group in release_groups(given):
            reports.append(run(group, plan(group)))
    return _one_or_set(reports)


def audit_plan(paths: Any, *, policy: Any = None, fail_on: str | None = None, select: Sequence[str] = (),
               ignore: Sequence[str] = (), baseline: Any = None, stats: bool = True, verify_checksums: bool = False,
               workers: int | None = None, progress: ProgressSink | None = None) -> Any:
    """The options :func:`audit` runs each release group with (policy resolved once): a function from a group's
    paths to its ``pipeline.RunOptions``. The fleet's split audit runs its stages with exactly these."""
    from weightaudit.formats.base import LoadOptions
    from weightaudit.pipeline import RunOptions
    from weightaudit.policy import Policy, resolve_policy, with_cli_overrides

    given = _paths(paths)
    select, ignore = split_rule_patterns(select), split_rule_patterns(ignore)
    check_rule_patterns(select + ignore)
    resolved = policy if isinstance(policy, Policy) else resolve_policy(None if policy is None else str(policy), given)
    resolved = with_cli_overrides(resolved, fail_on)
    if resolved.fail_on is None and not resolved.fail_never:
        resolved = with_cli_overrides(resolved, "high")
    fingerprints = _baseline(baseline)

    def options(group: Sequence[str]) -> RunOptions:
        return RunOptions(command="audit", stats=stats, policy=resolved, select=select, ignore=ignore,
                          baseline=fingerprints, workers=workers,
                          rule_prefixes=FILE_RULES if _only_files(group) else RunOptions.rule_prefixes,
                          load=LoadOptions(verify_checksums=verify_checksums), **_progress(progress, phases=True))

    return options


def _progress(progress: ProgressSink | None, phases: bool) -> dict[str, Any]:
    if progress is None:
        return {}
    return {"on_phase": progress.phase if phases else None, "on_stats_start": progress.start,
            "on_bytes": progress.advance}


def _baseline(baseline: Any) -> frozenset[str]:
    if baseline is None:
        return frozenset()
    if isinstance(baseline, (str, Path)):
        from weightaudit.baseline import read_baseline

        return read_baseline(Path(baseline))
    return frozenset(baseline)


def _only_files(paths: Sequence[str]) -> bool:
    return targets.only_files(paths)


def split_rule_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = (patterns,)
    return tuple(p.strip() for given in patterns for p in given.split(",") if p.strip())


def check_rule_patterns(patterns: tuple[str, ...]) -> None:
    from weightaudit.errors import UsageError
    from weightaudit.rules import all_rules

    ids = [r.id for r in all_rules()]
    for pattern in patterns:
        prefix = pattern.upper().rstrip("X")
        if not prefix.startswith("WA") or not any(i.startswith(prefix) for i in ids):
            raise UsageError(f"--select/--ignore: {pattern!r} matches no rule (see `weightaudit rules`)")


# ---------------------------------------------------------------------------------------------------------
# scorecard
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScorecardReport:
    """Openness scorecards, one per release (or one for a declaration alone)."""

    cards: tuple[tuple[tuple[str, ...], Any], ...]     # (release paths, Scorecard)
    declare: str | None = None
    min_score: float | None = None
    command: str = field(default="scorecard")

    def __iter__(self) -> Iterator[Any]:
        return iter(card for _, card in self.cards)

    @property
    def problems(self) -> list[str]:
        return self._outcome()[1]

    @property
    def exit_code(self) -> ExitCode:
        return self._outcome()[0]

    def _outcome(self) -> tuple[ExitCode, list[str]]:
        """0 informational; 3 when a scorecard is incomplete; 1 when ``min_score`` is not met (fail wins)."""
        code, problems = ExitCode.OK, []
        for group, card in self.cards:
            name = " ".join(group) or "declaration"
            if card.notes:
                problems.append(f"{name}: scorecard incomplete: {'; '.join(card.notes)}")
                code = code if code is ExitCode.FINDINGS else ExitCode.INCOMPLETE
            if self.min_score is not None and (card.score is None or card.score < self.min_score):
                shown = "n/a" if card.score is None else f"{card.score:g}"
                problems.append(f"{name}: openness score {shown} is below --min-score {self.min_score:g}")
                code = ExitCode.FINDINGS
        return code, problems

    def _document(self, group: tuple[str, ...], card: Any) -> dict[str, Any]:
        from weightaudit import __version__
        from weightaudit.openness import scorecard_to_dict

        return {"schema_version": "1", "tool": {"name": "weightaudit", "version": __version__},
                "command": "scorecard", "target": " ".join(group) if group else self.declare,
                "scorecard": scorecard_to_dict(card)}

    def to_dict(self) -> dict[str, Any]:
        from weightaudit import __version__

        documents = [self._document(group, card) for group, card in self.cards]
        if len(documents) == 1:
            return documents[0]
        return {"schema_version": "1", "tool": {"name": "weightaudit", "version": __version__},
                "command": "scorecard", "target": " ".join(d["target"] for d in documents), "reports": documents}


def scorecard(paths: Any = (), *, declare: str | Path | None = None,
              min_score: float | None = None, knowledge: str | Path | None = None,
              revision: str | None = None) -> ScorecardReport:
    """How open a release is (MOF class, OSAID 1.0), from its folder, a MOF declaration YAML, or both."""
    from weightaudit.discover import discover
    from weightaudit.errors import UsageError
    from weightaudit.openness import build_scorecard

    given = _paths(paths)
    if not given and not declare:
        raise UsageError("give a release path, a --declare FILE, or both")
    declaration = Path(declare) if declare else None
    with _revision(revision):
        groups = release_groups(given) if given else [()]
        cards = tuple((group, build_scorecard(discover(list(group)) if group else None, declaration, knowledge))
                      for group in groups)
    return ScorecardReport(cards, str(declare) if declare else None, min_score)


# ---------------------------------------------------------------------------------------------------------
# diff, hash, verify
# ---------------------------------------------------------------------------------------------------------


def diff(a: Any, b: Any, *, tolerance: Any = None, revision: str | None = None,
         progress: ProgressSink | None = None):
    """What changed from ``a`` to ``b`` (files or releases, any formats): a :class:`~weightaudit.compare.DiffReport`.
    ``tolerance``: a :class:`~weightaudit.compare.Tolerance` or its text (``"1e-3"``, ``"rel=1e-2"``)."""
    from weightaudit.compare import Tolerance, diff_targets

    if not isinstance(tolerance, Tolerance):
        tolerance = Tolerance.parse(tolerance)
    with _revision(revision):
        return diff_targets(_paths(a), _paths(b), tolerance, progress=progress)


def hash(paths: Any, *, exclude: str | Path | None = None, revision: str | None = None):   # noqa: A001
    """A manifest of every file's sha256 and every tensor's content hash (:class:`~weightaudit.manifest.Manifest`).
    ``exclude``: a file not to list (the manifest being written inside the release)."""
    from weightaudit.manifest import build_manifest

    with _revision(revision):
        return build_manifest(_paths(paths), skip=Path(exclude) if exclude else None)


def verify(paths: Any, manifest: str | Path, *, revision: str | None = None):
    """Check a release against a manifest written by :func:`hash` (:class:`~weightaudit.manifest.VerifyReport`)."""
    from weightaudit.manifest import verify_manifest

    with _revision(revision):
        return verify_manifest(_paths(paths), Path(manifest))
