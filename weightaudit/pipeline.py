"""The one place that runs discover -> load -> statistics -> rules -> report. Every command calls ``run``."""

from __future__ import annotations

import datetime as dt
import os
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from weightaudit import formats
from weightaudit.collector import fewer_collections
from weightaudit.copies import find_copies, without_echoes
from weightaudit.discover import discover
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.onnx_release import absorb_external_data
from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import FileStatus, Finding, LoadedFile, Release, Severity, TensorStats, WeightFileRef
from weightaudit.model_facts import adapter_facts, model_facts, read_adapter_config
from weightaudit.policy import Policy
from weightaudit.report import Report
from weightaudit.rules import AuditContext, Rule, all_rules
from weightaudit.rules import integrity as R
from weightaudit.safe_read import UnsafeDocument, check_json_depth, check_yaml_events, load_json, read_text

STRUCTURED_SUFFIXES = (".json", ".yaml", ".yml")
COLLAPSED = " collapsed"   # ``where`` of a summary finding ends with this

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """What shapes a run. ``rule_prefixes`` limits release-level rules (inspect leaves out WA5xx)."""

    command: str = "inspect"
    stats: bool = False
    policy: Policy = field(default_factory=Policy)
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    baseline: frozenset[str] = frozenset()
    rule_prefixes: tuple[str, ...] = ("WA1", "WA2", "WA3", "WA4", "WA5", "WA6")
    load: LoadOptions = field(default_factory=LoadOptions)
    workers: int | None = None
    on_phase: ProgressFn | None = None
    on_stats_start: Callable[[int], None] | None = None   # total bytes the statistics pass will stream
    on_bytes: Callable[[int], None] | None = None         # bytes streamed since the last call
    today: dt.date = field(default_factory=dt.date.today)


def run(paths: Sequence[str], options: RunOptions) -> Report:
    with fewer_collections():   # a record per tensor: the default GC thresholds cost ~30% of a 20,000-tensor audit
        release, load_options = open_release(paths, options)
        loaded = load_files(release.weight_files, load_options)
        loaded, release = absorb_external_data(loaded, release)   # an .onnx.data file is its model's bytes
        stats: Mapping[tuple[str, str], TensorStats] = {}
        if options.stats:
            stats = _compute_stats(Path(release.root), loaded, options)
        return finish_run(release, loaded, stats, load_options, options)


def open_release(paths: Sequence[str], options: RunOptions) -> tuple[Release, LoadOptions]:
    """Discover the release, with the load options the policy gives (``run``'s first step; also every stage of
    the fleet's split audit, weightaudit/fleet/split.py)."""
    load_options = options.load
    if options.policy.limits is not DEFAULT_LIMITS:
        load_options = replace(load_options, limits=options.policy.limits)
    if options.policy.pickle_allow:
        load_options = replace(load_options, pickle_allow=options.policy.pickle_allow)
    release = discover(paths, load_options.limits)
    _phase(options, f"{release.target}: found {len(release.weight_files)} weight file(s)")
    return release, load_options


def load_files(refs: Iterable[WeightFileRef], load_options: LoadOptions) -> tuple[LoadedFile, ...]:
    """Load weight files, each one's findings capped at once (a split audit loads some of a release's files)."""
    per_file = load_options.limits.findings_per_rule_per_file
    return tuple(_cap_findings(load_file(Path(ref.path), ref.rel, ref.format, load_options), per_file)
                 for ref in refs)


def finish_run(release: Release, loaded: tuple[LoadedFile, ...], stats: Mapping[tuple[str, str], TensorStats],
               load_options: LoadOptions, options: RunOptions) -> Report:
    """Everything after loading and statistics: coverage, release-level rules, copies, policy, the report."""
    per_file = load_options.limits.findings_per_rule_per_file
    coverage_notes: list[str] = []
    if options.stats:
        loaded, coverage_notes = stats_coverage(loaded, stats)
    files = tuple(sorted(loaded + release.problems, key=lambda f: f.path))
    context = AuditContext(release=release, files=files, stats=stats, config=_read_config(release, load_options.limits),
                           limits=load_options.limits)
    rule_findings = list(_run_rules(context, options))
    raw = (list(release.findings) + side_file_findings(release, load_options.limits)
           + [f for lf in files for f in lf.findings]
           + rule_findings)
    own = [f for lf in files for f in lf.findings if f.path == lf.path]   # e.g. a GGUF's template: WA463
    files = unverified_by_rules(files, own + rule_findings, Path(release.root))
    copies = find_copies(files, release)
    kept, suppressed, notes = apply_policy(without_echoes(raw, copies), options)
    notes = coverage_notes + notes
    return Report(
        command=options.command, release=release, files=files, copies=copies,
        model=model_facts(context.config),
        adapter=adapter_facts(read_adapter_config(release, load_options.limits)),
        findings=tuple(sorted(collapse_findings(_dedupe(kept), per_file), key=Finding.sort_key)),
        stats=stats, suppressed=tuple(sorted(collapse_findings(_dedupe(suppressed), per_file), key=Finding.sort_key)),
        fail_on=None if options.policy.fail_never else options.policy.fail_on, notes=tuple(notes),
        **_policy_field(options),
    )


def _policy_field(options: RunOptions) -> dict[str, Any]:
    """``audit`` reports say which policy applied (the release never chooses its own)."""
    if options.command != "audit":
        return {}
    policy = options.policy
    path = policy.source if policy.origin != "default" else None
    return {"policy": {"path": path, "source": policy.origin}}


def unverified_by_rules(files: tuple[LoadedFile, ...], findings: Iterable[Finding], root: Path
                        ) -> tuple[LoadedFile, ...]:
    """Release-level rules cannot change the files they read, so a finding of a rule that ``unverifies`` (WA132:
    a limit stopped the check; WA463: a chat template not analysed) leaves its file unverified here: a weight file
    is marked so, a side file is listed as an unverified file of its own (format ``side-file``). Never a pass for
    what was not fully checked."""
    from weightaudit.rules import get_rule

    reasons: dict[str, str] = {}
    for finding in findings:
        try:
            unverifies = get_rule(finding.rule_id).unverifies
        except KeyError:
            continue
        if unverifies:
            reasons.setdefault(finding.path, f"not fully checked: {finding.message}")
    if not reasons:
        return files
    out = [replace(lf, verified=False, reason=lf.reason or reasons[lf.path])
           if lf.path in reasons and lf.verified else lf for lf in files]
    known = {lf.path for lf in files}
    for path, reason in reasons.items():
        if path not in known:
            out.append(LoadedFile(path, "side-file", _size(root / path), status=FileStatus.ERROR, reason=reason,
                                  verified=False))
    return tuple(sorted(out, key=lambda f: f.path))


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except (OSError, ValueError):
        return 0


def _cap_findings(loaded: LoadedFile, per_rule_per_file: int) -> LoadedFile:
    """Collapse a loader's findings right away, so a million identical ones never reach the later stages."""
    if len(loaded.findings) <= per_rule_per_file:
        return loaded
    return replace(loaded, findings=tuple(collapse_findings(list(loaded.findings), per_rule_per_file)))


def collapse_findings(findings: list[Finding], per_rule_per_file: int) -> list[Finding]:
    """At most ``per_rule_per_file`` findings of one rule in one file; the rest become one summary finding with
    their count, at the highest severity among them (a file with a million bad tensors is one line, not a million)."""
    counts: dict[tuple[str, str], int] = {}
    extra: dict[tuple[str, str], list[Finding]] = {}
    out: list[Finding] = []
    for finding in findings:
        if finding.where is not None and finding.where.endswith(COLLAPSED):   # already a summary: keep it
            out.append(finding)
            continue
        key = (finding.path, finding.rule_id)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] <= per_rule_per_file:
            out.append(finding)
        else:
            extra.setdefault(key, []).append(finding)
    for (path, rule_id), rest in extra.items():
        worst = max(f.severity for f in rest)
        out.append(Finding(rule_id, worst, path, f"{len(rest):,} more {rule_id} finding(s) in this file not listed "
                           f"(limits.findings_per_rule_per_file = {per_rule_per_file:,}); first not listed: "
                           f"{rest[0].message}", tensor=None, where=f"{len(rest)}{COLLAPSED}"))
    return out


def _phase(options: RunOptions, message: str) -> None:
    if options.on_phase is not None:
        options.on_phase(message)


def load_file(path: Path, rel: str, fmt: str, options: LoadOptions) -> LoadedFile:
    """Run one loader; an unexpected exception becomes an unverified file, never a crash of the audit."""
    try:
        return _with_reason(formats.get_loader(fmt).load(path, rel, options))
    except OSError as exc:
        message = f"cannot read file: {exc.strerror or exc}"
        return LoadedFile(rel, fmt, 0, findings=(R.UNREADABLE.finding(rel, message),),
                          status=FileStatus.ERROR, reason=message, verified=False)
    except Exception as exc:  # noqa: BLE001 - a loader bug must not stop the other files
        if os.environ.get("WEIGHTAUDIT_DEBUG") == "1":
            traceback.print_exc()
        message = f"internal error while reading ({type(exc).__name__}: {exc})"
        return LoadedFile(rel, fmt, 0, findings=(R.INTERNAL_ERROR.finding(rel, message),),
                          status=FileStatus.ERROR, reason=message, verified=False)


def _with_reason(loaded: LoadedFile) -> LoadedFile:
    """An unverified file always says why: its loader's reason, else its most severe finding."""
    if loaded.verified or loaded.reason:
        return loaded
    worst = max(loaded.findings, key=lambda f: f.severity, default=None)
    reason = f"not fully verified: {worst.message}" if worst else "not fully verified"
    return replace(loaded, reason=reason)


def stats_coverage(loaded: tuple[LoadedFile, ...], stats: Mapping[tuple[str, str], TensorStats]
                   ) -> tuple[tuple[LoadedFile, ...], list[str]]:
    """Fail closed on statistics: a file whose tensors could not all be streamed is not verified (WA131);
    tensors of dtypes the statistics do not cover (complex, F4, strings) are named in a note."""
    from weightaudit.stats import has_statistics as supported_dtype   # quantized GGUF included

    out, notes = [], []
    for lf in loaded:
        if lf.status is not FileStatus.OK:
            out.append(lf)
            continue
        missing = [t for t in lf.tensors if t.key not in stats and supported_dtype(t.dtype) and t.parameter_count]
        uncovered = sorted({t.dtype for t in lf.tensors if not supported_dtype(t.dtype)})
        if uncovered:
            count = sum(1 for t in lf.tensors if not supported_dtype(t.dtype))
            notes.append(f"{lf.path}: no statistics for {count} tensor(s) of dtype {', '.join(uncovered)} "
                         "(not supported by the statistics engine; header checks still apply)")
        if missing:
            message = (f"statistics could not be computed for {len(missing)} tensor(s), e.g. {missing[0].name!r}: "
                       "numeric checks did not cover them")
            lf = replace(lf, verified=False, reason=lf.reason or message,
                         findings=lf.findings + (R.STATS_INCOMPLETE.finding(lf.path, message, tensor=missing[0].name),))
        out.append(lf)
    return tuple(out), notes


def _compute_stats(root: Path, loaded: tuple[LoadedFile, ...], options: RunOptions) -> Mapping[tuple[str, str], TensorStats]:
    from weightaudit import stats as stats_module  # numpy-heavy: imported only when statistics are asked for

    from weightaudit.render.common import human_bytes

    total = sum(t.nbytes or 0 for f in loaded for t in f.tensors)
    _phase(options, f"computing statistics over {human_bytes(total)}")
    if options.on_stats_start is not None:
        options.on_stats_start(total)
    return stats_module.compute_stats(root, loaded, workers=options.workers, on_progress=options.on_bytes)


def _read_config(release: Release, limits: Limits) -> Mapping[str, Any] | None:
    """The top-level config.json (bounded, depth-safe); None when absent or refused (see side_file_findings)."""
    for rel in release.side("config"):
        if "/" not in rel:
            try:
                data = load_json(read_text(Path(release.root) / rel, limits.side_file_bytes), limits)
            except (OSError, ValueError):
                return None
            return data if isinstance(data, dict) else None
    return None


def side_file_findings(release: Release, limits: Limits) -> list[Finding]:
    """WA133 for every JSON/YAML side file (and model-card front matter) that no reader can parse safely: too
    big, nested too deep, an alias bomb, not a regular file. Readers (config, chat templates, openness) then skip
    it quietly; this is the one place that names it. Shard indexes are checked by discovery."""
    cards = set(release.side("model_card"))
    out = []
    for rel in release.all_side_files():
        lower = rel.lower()
        if lower.endswith(".index.json") or not (lower.endswith(STRUCTURED_SUFFIXES) or rel in cards):
            continue
        import yaml   # PyYAML and the card reader load when there is a side file to check, not at start-up

        from weightaudit.openness.card import _split_front_matter

        try:
            text = read_text(Path(release.root) / rel, limits.side_file_bytes)
            if lower.endswith(".json"):
                check_json_depth(text, limits)
            elif rel in cards:
                lines = text.splitlines()
                fences = _split_front_matter(lines)
                if fences is not None:
                    check_yaml_events("\n".join(lines[fences[0]:fences[1]]), limits)
            else:
                check_yaml_events(text, limits)
        except UnsafeDocument as exc:
            out.append(R.SIDE_FILE_REFUSED.finding(rel, f"{rel} not read: {exc}"))
        except (OSError, ValueError, yaml.YAMLError):
            continue   # unreadable or merely invalid: the readers report what they need
    return out


def _selected(rule: Rule, options: RunOptions) -> bool:
    def matches(patterns: Iterable[str]) -> bool:
        return any(rule.id.startswith(p.upper().rstrip("X")) for p in patterns)

    if options.select and not matches(options.select):
        return False
    return not matches(options.ignore)


def _run_rules(context: AuditContext, options: RunOptions) -> Iterable[Finding]:
    for rule in all_rules():
        if rule.check is None or not rule.id.startswith(options.rule_prefixes):
            continue
        if rule.needs_stats and not context.stats:
            continue
        policy = options.policy.rule(rule.id)
        if not policy.enabled or not _selected(rule, options):
            continue
        config = {**rule.thresholds, **policy.thresholds}
        try:
            yield from rule.check(context, config)
        except Exception as exc:  # noqa: BLE001 - one broken rule must not hide the others
            if os.environ.get("WEIGHTAUDIT_DEBUG") == "1":
                traceback.print_exc()
            yield R.INTERNAL_ERROR.finding(".", f"rule {rule.id} failed: {type(exc).__name__}: {exc}")


def apply_policy(findings: list[Finding], options: RunOptions) -> tuple[list[Finding], list[Finding], list[str]]:
    """Apply select/ignore, per-rule enable/severity, ignore entries and the baseline.

    Returns (kept, suppressed, notes). Suppressed findings stay visible in the report as such.
    """
    from weightaudit.rules import get_rule

    kept: list[Finding] = []
    suppressed: list[Finding] = []
    notes: list[str] = []
    for entry in options.policy.ignore:
        if entry.expired(options.today):
            notes.append(f"ignore entry for {entry.rule} on {entry.path} expired on {entry.expires}; it no longer applies")
    active_ignores = [e for e in options.policy.ignore if not e.expired(options.today)]
    for finding in findings:
        policy = options.policy.rule(finding.rule_id)
        try:
            rule = get_rule(finding.rule_id)
        except KeyError:
            rule = None
        if rule is not None and (not policy.enabled or not _selected(rule, options)):
            continue
        if policy.severity is not None:
            finding = replace(finding, severity=policy.severity)
        if any(e.matches(finding) for e in active_ignores) or finding.fingerprint in options.baseline:
            suppressed.append(finding)
        else:
            kept.append(finding)
    return kept, suppressed, notes


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def highest(findings: Iterable[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)
