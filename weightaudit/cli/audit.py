"""``weightaudit audit PATH...``: every loader, every rule, statistics — with exit codes CI can trust."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from weightaudit.cli.common import stderr_line
from weightaudit.cli.options import SEVERITY_CHOICES, announce_problems, emit, finish, output_options
from weightaudit.errors import UsageError


@click.command("audit")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--policy", "policy_path", type=click.Path(), metavar="FILE",
              help="Policy YAML (default: weightaudit.yaml in the release, then [tool.weightaudit] in ./pyproject.toml).")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES), default=None,
              help="Exit 1 at or above this severity (default: the policy's fail_on, else high).")
@click.option("--baseline", "baseline_path", type=click.Path(), metavar="FILE",
              help="Suppress findings recorded in this baseline.")
@click.option("--write-baseline", "write_baseline_path", type=click.Path(), metavar="FILE",
              help="Record the current findings as a baseline.")
@click.option("--select", multiple=True, metavar="RULE", help="Only these rules or prefixes (WA4, WA301). Repeatable.")
@click.option("--ignore", "ignore_rules", multiple=True, metavar="RULE", help="Skip these rules or prefixes. Repeatable.")
@click.option("--no-stats", is_flag=True, help="Header-only: skip the statistics pass (no WA3xx numeric rules).")
@click.option("--verify-checksums", is_flag=True, help="Verify stored checksums (TensorFlow bundles).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes for statistics (default: cores).")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when it is a terminal).")
@output_options(("text", "json", "sarif", "markdown"))
def audit_command(paths: tuple[str, ...], policy_path: str | None, fail_on: str | None, baseline_path: str | None,
                  write_baseline_path: str | None, select: tuple[str, ...], ignore_rules: tuple[str, ...],
                  no_stats: bool, verify_checksums: bool, workers: int | None, progress: bool | None, fmt: str,
                  output: str | None, quiet: bool, color: bool | None) -> None:
    """Run every check on a release and exit non-zero when findings reach --fail-on."""
    from weightaudit.baseline import read_baseline, write_baseline
    from weightaudit.formats.base import LoadOptions
    from weightaudit.pipeline import RunOptions, run
    from weightaudit.policy import with_cli_overrides

    _check_rule_patterns(select + ignore_rules)
    policy = with_cli_overrides(_resolve_policy(paths, policy_path, quiet), fail_on)
    if policy.fail_on is None and not policy.fail_never:
        policy = with_cli_overrides(policy, "high")
    baseline = read_baseline(Path(baseline_path)) if baseline_path else frozenset()
    show_progress = progress if progress is not None else (sys.stderr.isatty() and not os.environ.get("CI"))
    with _Progress(show_progress and not quiet) as bar:
        options = RunOptions(command="audit", stats=not no_stats, policy=policy, select=select,
                             ignore=ignore_rules, baseline=baseline, workers=workers,
                             load=LoadOptions(verify_checksums=verify_checksums),
                             on_phase=None if quiet else bar.phase, on_stats_start=bar.start,
                             on_bytes=bar.advance)
        report = run(paths, options)
    if write_baseline_path:
        write_baseline(Path(write_baseline_path), report.findings + report.suppressed)
        if not quiet:
            stderr_line(f"weightaudit: wrote {len(report.findings) + len(report.suppressed)} finding(s) "
                        f"to baseline {write_baseline_path}")
    emit(report, fmt, output, color, show_stats=False)
    announce_problems(report, quiet)
    finish(report)


def _check_rule_patterns(patterns: tuple[str, ...]) -> None:
    from weightaudit.rules import all_rules

    ids = [r.id for r in all_rules()]
    for pattern in patterns:
        prefix = pattern.upper().rstrip("X")
        if not prefix.startswith("WA") or not any(i.startswith(prefix) for i in ids):
            raise UsageError(f"--select/--ignore: {pattern!r} matches no rule (see `weightaudit rules`)")


def _resolve_policy(paths: tuple[str, ...], policy_path: str | None, quiet: bool):
    from weightaudit.policy import Policy, find_policy, load_policy

    if policy_path is not None:
        path = Path(policy_path)
        if not path.is_file():
            raise UsageError(f"{policy_path}: policy file not found")
        return load_policy(path)
    for given in paths:
        folder = Path(given) if Path(given).is_dir() else Path(given).parent
        found = find_policy(folder)
        if found is not None:
            if not quiet:
                stderr_line(f"weightaudit: using policy {found}")
            return load_policy(found)
    pyproject = Path("pyproject.toml")
    if pyproject.is_file():
        policy = load_policy(pyproject)
        if policy.rules or policy.ignore or policy.fail_on or policy.fail_never:
            if not quiet:
                stderr_line("weightaudit: using [tool.weightaudit] from ./pyproject.toml")
            return policy
    return Policy()


class _Progress:
    """A transient rich progress bar on stderr, or one stderr line per phase when not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), console=Console(stderr=True), transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def phase(self, message: str) -> None:
        if self._progress is None:
            stderr_line(f"weightaudit: {message}")
        else:
            self._progress.console.print(f"weightaudit: {message}")

    def start(self, total_bytes: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task("statistics", total=total_bytes)

    def advance(self, n_bytes: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n_bytes)
