"""``weightaudit batch SOURCE... --db results.db``: audit and score many releases into a SQLite database,
resumable and incremental, on local worker processes or a Dask cluster (see weightaudit/fleet/)."""

from __future__ import annotations

import os

import click

from weightaudit.cli.options import fail_on_option

DEFAULT_DB = "weightaudit.db"


def _bytes(text: str | None, option: str = "--max-memory") -> int | None:
    """``512M``, ``4G``, ``1048576`` -> bytes."""
    if text is None:
        return None
    from weightaudit.errors import UsageError

    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    raw = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = units.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = int(float(number) * scale)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: give bytes or a size like 512M, 4G") from exc
    if value <= 0:
        raise UsageError(f"{option} {text!r} must be positive")
    return value


def _split_above(text: str | None) -> int | None:
    from weightaudit.fleet.split import SPLIT_ABOVE_BYTES

    if text is None:
        return SPLIT_ABOVE_BYTES
    return None if text.strip().lower() == "never" else _bytes(text, "--split-above")


@click.command("batch")
@click.argument("sources", nargs=-1, type=click.Path())
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, metavar="FILE",
              help="SQLite database to write (created when missing; re-runs skip unchanged releases).")
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False), metavar="LIST",
              help="Also read release paths from LIST, one per line (# comments).")
@click.option("--all-revisions", is_flag=True, help="Hugging Face cache: every downloaded snapshot, not refs/main.")
@click.option("--policy", "policy_path", type=click.Path(), metavar="FILE",
              help="Policy YAML (default: discovered from the working directory upwards, as for audit).")
@fail_on_option()
@click.option("--select", multiple=True, metavar="RULE", help="Only these rules or prefixes (as for audit).")
@click.option("--ignore", "ignore_rules", multiple=True, metavar="RULE", help="Skip these rules (as for audit).")
@click.option("--knowledge", type=click.Path(dir_okay=False), metavar="FILE",
              help="Your own known-artifact rows for the scorecard (as for scorecard).")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), default=None,
              help="Worker processes (default: cores).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where releases are audited: local processes, or Dask (pip install 'weightaudit[dask]').")
@click.option("--scheduler", metavar="ADDRESS",
              help="--engine dask: an existing scheduler (tcp://host:8786) instead of a local cluster.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.001), default=None, metavar="SECONDS",
              help="Wall-clock limit per task (a release, or one stage of a split one), from when it starts "
                   "running; a release past it is recorded as failed (timeout).")
@click.option("--max-memory", "max_memory", metavar="SIZE",
              help="Per-release memory limit (512M, 4G): beyond it the release is recorded as out-of-memory.")
@click.option("--split-above", "split_above", default=None, show_default="4G", metavar="SIZE",
              help="Releases whose weight files hold more than SIZE are audited as parallel per-file tasks and "
                   "merged (the same report); 'never' audits every release in one task.")
@click.option("--force", is_flag=True, help="Re-audit every release, changed or not.")
@click.option("--retry-failed", is_flag=True, help="Re-audit releases whose last audit failed, even if unchanged.")
@click.option("--paranoid", is_flag=True,
              help="Content key from full sha256 of every file (default: size, mtime and first/last 64 KiB).")
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: on a terminal outside CI).")
@click.option("-q", "--quiet", is_flag=True, help="Only the final one-line summary on stderr.")
def batch_command(sources: tuple[str, ...], db_path: str, from_file: str | None, all_revisions: bool,
                  policy_path: str | None, fail_on: str | None, select: tuple[str, ...],
                  ignore_rules: tuple[str, ...], knowledge: str | None, jobs: int | None, engine: str,
                  scheduler: str | None, timeout_s: float | None, max_memory: str | None, split_above: str | None,
                  force: bool, retry_failed: bool, paranoid: bool, progress: bool | None, quiet: bool) -> None:
    """Audit and score many releases into a database; re-runs audit only what changed.

    \b
    A SOURCE is a release (folder or file), a folder whose sub-folders are releases, or a Hugging Face cache
    root (each repository's refs/main snapshot). Every release gets what `audit` (with statistics) and
    `scorecard` give it; `weightaudit report DB` shows the fleet. Exit 1 when any release fails at --fail-on,
    else 3 when any could not be audited, else 0.
    """
    from weightaudit import api
    from weightaudit.errors import UsageError
    from weightaudit.fleet.engine import EngineConfig
    from weightaudit.fleet.runner import BatchConfig, run_batch
    from weightaudit.fleet.sources import expand
    from weightaudit.fleet.task import AuditOptions
    from weightaudit.policy import resolve_policy

    if scheduler and engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    select_t, ignore_t = api.split_rule_patterns(select), api.split_rule_patterns(ignore_rules)
    api.check_rule_patterns(select_t + ignore_t)
    releases = expand(sources, from_file, all_revisions)
    policy = resolve_policy(policy_path, [r.path for r in releases])
    if policy.origin == "discovered" and not quiet:
        from weightaudit.cli.common import stderr_line

        stderr_line(f"weightaudit: using policy {policy.source}")
    options = AuditOptions(fail_on=fail_on, select=select_t, ignore=ignore_t, stats=True, knowledge=knowledge,
                           policy=policy)
    engine_config = EngineConfig(jobs=jobs or os.cpu_count() or 1, timeout_s=timeout_s,
                                 max_memory_bytes=_bytes(max_memory), scheduler=scheduler)
    split = _split_above(split_above)
    config = BatchConfig(db_path, options, engine, engine_config, paranoid, force, retry_failed, split)
    raise SystemExit(run_batch(releases, config, quiet=quiet, progress=progress))
