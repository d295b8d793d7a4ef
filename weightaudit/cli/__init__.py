"""The click command group. Commands live in their own modules; heavy imports happen inside them.

Exit codes (never renumbered): 0 passed, 1 findings at or above --fail-on, 2 usage or configuration error,
3 audit incomplete or internal error. ``main`` and the group map every exception onto them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from weightaudit import __version__
from weightaudit.cli.signals import Interrupted, install
from weightaudit.errors import ExitCode, WeightauditError

# command name -> (module, attribute). One line per command.
_COMMANDS = {
    "inspect": ("weightaudit.cli.inspect", "inspect_command"),
    "audit": ("weightaudit.cli.audit", "audit_command"),
    "rules": ("weightaudit.cli.rules", "rules_group"),
    "diff": ("weightaudit.cli.diff", "diff_command"),
    "hash": ("weightaudit.cli.hash", "hash_command"),
    "verify": ("weightaudit.cli.hash", "verify_command"),
    "batch": ("weightaudit.cli.batch", "batch_command"),
    "report": ("weightaudit.cli.report_cmd", "report_command"),
}
_OPTIONAL_COMMANDS = {
    "scorecard": ("weightaudit.cli.scorecard", "scorecard_command"),
}

EPILOG = """\b
Exit codes (the report's verdict, also its last text line):
  0    pass: every file verified, nothing at or above --fail-on
  1    fail: findings at or above --fail-on (default high)
  2    usage or configuration error
  3    incomplete: a file could not be read or verified, or internal error
  130  interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM)
"""


def _debug() -> bool:
    return os.environ.get("WEIGHTAUDIT_DEBUG") == "1"


def _print_traceback() -> None:
    import traceback   # only with WEIGHTAUDIT_DEBUG=1, after an error

    traceback.print_exc()


class WeightauditGroup(click.Group):
    """Loads commands lazily (fast --help) and maps exceptions onto the exit-code contract."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(_COMMANDS)
        names += [n for n, (mod, _) in _OPTIONAL_COMMANDS.items() if importlib.util.find_spec(mod) is not None]
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _COMMANDS.get(cmd_name) or _OPTIONAL_COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, attr = spec
        if importlib.util.find_spec(module) is None:
            return None
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Interrupted as exc:
            click.echo(f"weightaudit: {exc}; stopped", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("weightaudit: interrupted; stopped", err=True)
            ctx.exit(130)
        except WeightauditError as exc:
            if _debug():
                _print_traceback()
            click.echo(f"weightaudit: error: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except Exception as exc:  # noqa: BLE001 - the contract: one line and exit 3, never a traceback
            if _debug():
                _print_traceback()
            click.echo(f"weightaudit: internal error: {type(exc).__name__}: {exc} "
                       "(set WEIGHTAUDIT_DEBUG=1 for details)", err=True)
            ctx.exit(int(ExitCode.INCOMPLETE))


@click.group(cls=WeightauditGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="weightaudit")
def cli() -> None:
    """Audit open model-weight releases without executing anything from them.

    \b
    weightaudit inspect model.safetensors       what is inside
    weightaudit audit RELEASE --format sarif    everything, for CI
    weightaudit scorecard RELEASE               how open the release is
    weightaudit diff A B                        what changed between two releases
    weightaudit hash RELEASE -o manifest.json   file and tensor hashes (weightaudit verify)
    weightaudit rules explain WA106             what a rule means
    weightaudit batch FOLDER --db fleet.db      many releases, resumable (weightaudit report fleet.db)
    """


def main() -> None:
    """Console-script entry point."""
    install()
    try:
        cli.main(prog_name="weightaudit")
    except SystemExit:
        raise
    except Interrupted as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - last resort: still honour the contract
        if _debug():
            _print_traceback()
        sys.stderr.write(f"weightaudit: internal error: {type(exc).__name__}: {exc}\n")
        sys.exit(int(ExitCode.INCOMPLETE))
