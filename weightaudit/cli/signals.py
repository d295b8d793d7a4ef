"""SIGINT and SIGTERM: stop the statistics workers, leave no partial output file, exit 130 or 143.

The handler raises ``Interrupted`` (a BaseException, so no ``except Exception`` in a loader or rule swallows
it); ``write_output`` removes its temporary file on the way out and the command group turns it into the exit
code 128 + signal number, as shells report a process killed by that signal. Forked statistics workers inherit
the handler and simply exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_MAIN_PID: int | None = None


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def install() -> None:
    """Install the handlers (main thread of the main process only; a library caller keeps its own)."""
    global _MAIN_PID
    if threading.current_thread() is not threading.main_thread():
        return
    _MAIN_PID = os.getpid()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handle)


def _handle(signum: int, frame: object) -> None:
    if os.getpid() != _MAIN_PID:          # a forked worker: the parent decides what happens
        os._exit(128 + signum)
    for signum_ in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum_, signal.SIG_IGN)   # a second Ctrl-C must not interrupt the clean-up
    multiprocessing = sys.modules.get("multiprocessing")   # not imported: there are no worker processes to stop
    if multiprocessing is not None:
        for child in multiprocessing.active_children():
            child.terminate()
    raise Interrupted(signum)
