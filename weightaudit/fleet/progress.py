"""Batch progress on stderr: releases done/total, releases/s, GB/s, ETA and failures, redrawn in place on a
terminal (at most every REDRAW_S); nothing while running in CI, off a terminal or with -q. The one-line
summary at the end is always written."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

REDRAW_S = 0.2


@dataclass
class BatchProgress:
    total: int
    total_bytes: int
    live: bool
    done: int = 0
    failed: int = 0
    skipped: int = 0
    done_bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    _drawn: float = 0.0

    @classmethod
    def for_stderr(cls, total: int, total_bytes: int, quiet: bool, progress: bool | None) -> "BatchProgress":
        tty = sys.stderr.isatty() if hasattr(sys.stderr, "isatty") else False
        live = progress is True or (progress is None and tty and not os.environ.get("CI"))
        return cls(total, total_bytes, live and not quiet)

    def skip(self, n: int) -> None:
        self.skipped += n

    def advance(self, n_bytes: int, ok: bool) -> None:
        self.done += 1
        self.done_bytes += n_bytes
        self.failed += 0 if ok else 1
        now = time.monotonic()
        if self.live and (now - self._drawn >= REDRAW_S or self.done == self.total):
            self._drawn = now
            sys.stderr.write("\r\x1b[2K" + self.line() if sys.stderr.isatty() else self.line() + "\n")
            sys.stderr.flush()

    def line(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self.started)
        rate = self.done / elapsed
        left = self.total - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        return (f"weightaudit batch: {self.done}/{self.total} releases  {rate:.1f} releases/s  "
                f"{self.done_bytes / elapsed / 1e9:.3f} GB/s  ETA {eta}  {self.failed} failed")

    def summary(self, exit_code: int, interrupted: bool = False) -> str:
        elapsed = time.monotonic() - self.started
        word = "interrupted" if interrupted else "done"
        return (f"weightaudit batch: {word}: {self.done} audited, {self.skipped} unchanged (skipped), "
                f"{self.failed} failed, in {elapsed:.1f} s; exit {exit_code}")

    def finish(self, exit_code: int, interrupted: bool = False) -> None:
        if self.live and sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K")
        sys.stderr.write(self.summary(exit_code, interrupted) + "\n")
        sys.stderr.flush()
