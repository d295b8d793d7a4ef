"""Exit codes and the exceptions that map onto them. Only ``cli.main`` turns these into exits."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0            # audit complete, nothing at or above --fail-on
    FINDINGS = 1      # findings at or above --fail-on
    USAGE = 2         # usage or configuration error (bad flag, invalid policy, unknown rule ID)
    INCOMPLETE = 3    # a file could not be read or verified, or an internal error


class WeightauditError(Exception):
    """Base of our own errors; the message is one line naming what went wrong."""

    exit_code = ExitCode.INCOMPLETE


class UsageError(WeightauditError):
    """Bad invocation or configuration (policy file, baseline file, rule ID, declaration file)."""

    exit_code = ExitCode.USAGE


class PolicyError(UsageError):
    """An invalid or missing policy file."""
