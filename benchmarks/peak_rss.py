"""Peak RSS of a command and of every process it starts: ``python -m benchmarks.peak_rss -- CMD ...``.

Prints one JSON line: wall seconds, exit status, the peak RSS (``VmHWM``) of the command's own process and of
each descendant (e.g. the statistics workers an audit forks), and the tree maximum from ``wait4``'s
``ru_maxrss``. How:

- A descendant's ``VmHWM`` is read from ``/proc/<pid>/status`` every 5 ms while it lives (descendants are found
  by their parent pid in ``/proc/<pid>/stat``; this kernel has no ``/proc/<pid>/task/<tid>/children``). VmHWM
  is a high-water mark, so a poll misses only growth in the last few ms of a process's life.
- ``ru_maxrss`` from ``wait4`` is exact but is one number: the largest single process of the tree. On Linux it
  also inherits the hiwater mark of the process that exec'd the command (vfork + exec), which is why this
  launcher imports nothing heavy: its own VmHWM (``launcher_kib``, ~10 MB) bounds that error.

Deliberately tiny (stdlib only, no numpy) for that reason; the suite (``python -m benchmarks``) calls
``measure``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

POLL_SECONDS = 0.005


def _status_kib(pid: int | str, field: str = "VmHWM:") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None                              # gone, or a zombie (its status has no memory lines)


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[1])     # "pid (comm) state ppid ..."


def _grow(tree: set[int], strangers: set[int]) -> None:
    """Add processes whose parent is in ``tree`` (pids in increasing order: parents come before children)."""
    for name in sorted((n for n in os.listdir("/proc") if n.isdigit()), key=int):
        pid = int(name)
        if pid in tree or pid in strangers:
            continue
        (tree if _parent(pid) in tree else strangers).add(pid)


def watch(argv: list[str]) -> dict:
    strangers = {int(n) for n in os.listdir("/proc") if n.isdigit()}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree, peaks = {proc.pid}, {}
    while True:
        done, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            break
        _grow(tree, strangers)
        for pid in tree:
            kib = _status_kib(pid)
            if kib is not None:
                peaks[pid] = max(peaks.get(pid, 0), kib)
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    children = sorted((kib for pid, kib in peaks.items() if pid != proc.pid), reverse=True)
    return {"seconds": seconds, "exit": proc.returncode, "main_kib": peaks.get(proc.pid, 0), "children_kib": children,
            "tree_maxrss_kib": usage.ru_maxrss, "launcher_kib": _status_kib(os.getpid())}


def measure(argv: list[str], cwd: str | None = None) -> dict:
    """Run ``argv`` under this launcher in a fresh, small process; the launcher's JSON as a dict."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.peak_rss", "--", *argv], check=True, capture_output=True,
                         text=True, cwd=cwd).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(watch(args[1:] if args[:1] == ["--"] else args)))
