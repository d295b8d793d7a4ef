"""Fault injection for the fleet's own tests, off unless an environment variable asks for it: a test must be
able to kill a worker in the middle of a release, or hold one release long, without crafting a release that
does it. Workers (local forks, Dask worker processes) inherit the variables from the process that starts them.

- ``WEIGHTAUDIT_TEST_HOLD_ONCE=FILE``: the first unit of work to start creates FILE with its worker's pid and
  sleeps (``HOLD_S``) for the test to kill that process; every later unit (the retry included) runs normally.
- ``WEIGHTAUDIT_TEST_SLOW=TEXT=SECONDS``: a unit whose release path contains TEXT sleeps SECONDS first.
"""

from __future__ import annotations

import os
import time

HOLD_ONCE = "WEIGHTAUDIT_TEST_HOLD_ONCE"
SLOW = "WEIGHTAUDIT_TEST_SLOW"
HOLD_S = 120.0


def at_start(release_path: str) -> None:
    marker = os.environ.get(HOLD_ONCE)
    if marker:
        _hold_once(marker)
    slow = os.environ.get(SLOW)
    if slow:
        text, _, seconds = slow.rpartition("=")
        if text and text in release_path:
            time.sleep(float(seconds))


def _hold_once(marker: str) -> None:
    try:
        handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.write(handle, str(os.getpid()).encode())
    os.close(handle)
    time.sleep(HOLD_S)
