"""``weightaudit audit PATH...``: every loader, every rule, statistics — with exit codes CI can trust."""

from __future__ import annotations

from pathlib import Path

import click

from weightaudit.cli.common import stderr_line, terminal
from weightaudit.cli.options import (Progress, announce_problems, emit, fail_on_option, finish, output_options,
                                     resolve_format, run_options)

FORMATS = ("text", "json", "sarif", "markdown")


@click.command("audit")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--policy", "policy_path", type=click.Path(), metavar="FILE",
              help="Policy YAML (default: weightaudit.yaml or [tool.weightaudit] found from the working directory upwards; "
                   "never one inside the audited release).")
@fail_on_option()
@click.option("--baseline", "baseline_path", type=click.Path(), metavar="FILE",
              help="Suppress findings recorded in this baseline.")
@click.option("--write-baseline", "write_baseline_path", type=click.Path(), metavar="FILE",
              help="Record the current findings as a baseline.")
@click.option("--select", multiple=True, metavar="RULE",
              help="Only these rules or prefixes (WA4, WA301; comma-separated or repeated).")
@click.option("--ignore", "ignore_rules", multiple=True, metavar="RULE",
              help="Skip these rules or prefixes (comma-separated or repeated).")
@click.option("--no-stats", is_flag=True, help="Header-only: skip the statistics pass (no WA3xx numeric rules).")
@click.option("--verify-checksums", is_flag=True, help="Verify stored checksums (TensorFlow bundles).")
@click.option("--findings-only", is_flag=True,
              help="Text output: only the findings and the verdict (no summary box, no tensor table).")
@click.option("--also-write", "also_write", multiple=True, metavar="FILE",
              help="Also write the same report to FILE, in the format its extension names (.json, .sarif, .md, "
                   ".txt). Repeatable: SARIF, JSON and Markdown from one run.")
@run_options
@output_options(FORMATS)
def audit_command(paths: tuple[str, ...], policy_path: str | None, fail_on: str | None, baseline_path: str | None,
                  write_baseline_path: str | None, select: tuple[str, ...], ignore_rules: tuple[str, ...],
                  no_stats: bool, verify_checksums: bool, findings_only: bool, also_write: tuple[str, ...],
                  workers: int | None, progress: bool | None, fmt: str | None, output: str | None, quiet: bool,
                  color: bool | None) -> None:
    """Run every check on a release and exit non-zero when findings reach --fail-on.

    A file given alone is judged as that file (no release-level openness rules); several folders that are
    separate releases get one report each.
    """
    from weightaudit import api
    from weightaudit.baseline import write_baseline

    fmt = resolve_format(fmt, output, FORMATS)
    extra = [(path, resolve_format(None, path, FORMATS)) for path in also_write]
    api.check_rule_patterns(api.split_rule_patterns(select) + api.split_rule_patterns(ignore_rules))
    policy = _resolve_policy(paths, policy_path, quiet)
    term = terminal(color, output)
    with Progress(progress, quiet, term) as bar:
        result = api.audit(paths, policy=policy, fail_on=fail_on, select=select, ignore=ignore_rules,
                           baseline=baseline_path, stats=not no_stats, verify_checksums=verify_checksums,
                           workers=workers, progress=bar)
    reports = list(result) if isinstance(result, api.ReportSet) else [result]
    if write_baseline_path:
        everything = [f for r in reports for f in r.findings + r.suppressed]
        write_baseline(Path(write_baseline_path), tuple(everything))
        if not quiet:
            stderr_line(f"weightaudit: wrote {len(everything)} finding(s) to baseline {write_baseline_path}")
    emit(reports, fmt, output, term, show_stats=False, findings_only=findings_only)
    for path, extra_fmt in extra:
        emit(reports, extra_fmt, path, term, show_stats=False, findings_only=findings_only)
    announce_problems(reports, quiet)
    finish(reports)


def _resolve_policy(paths: tuple[str, ...], policy_path: str | None, quiet: bool):
    """The user's policy (--policy, else discovered from the working directory upwards; never the release's)."""
    from weightaudit.policy import resolve_policy

    policy = resolve_policy(policy_path, paths)
    if policy.origin == "discovered" and not quiet:
        stderr_line(f"weightaudit: using policy {policy.source}")
    return policy
