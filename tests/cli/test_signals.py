"""Issue 11: SIGINT and SIGTERM exit 130 and 143 (not 1, the code for findings), stop the statistics workers and
leave no partial ``-o`` file. Real signals to a real process; the statistics pass is replaced by one that starts
a forked worker pool and blocks, so the test does not depend on how fast the machine streams a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

SCRIPT = r"""
import os, sys, time, multiprocessing
from concurrent.futures import ProcessPoolExecutor
import weightaudit.stats as stats

PIDS_FILE = sys.argv[1]

def _block(_):
    time.sleep(120)

def blocking_stats(root, files, workers=None, on_progress=None, **kwargs):
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_block, i) for i in range(2)]
        time.sleep(0.5)
        pids = [p.pid for p in multiprocessing.active_children()]
        with open(PIDS_FILE + ".tmp", "w") as handle:
            handle.write(" ".join(map(str, pids)))
        os.replace(PIDS_FILE + ".tmp", PIDS_FILE)
        for future in futures:
            future.result()
    return {}

stats.compute_stats = blocking_stats
sys.argv = ["weightaudit", *sys.argv[2:]]
from weightaudit.cli import main
main()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_exit_code_workers_stopped_no_partial_output(tmp_path: Path, signum: int, code: int) -> None:
    pids_file, out = tmp_path / "pids", tmp_path / "out" / "report.json"
    out.parent.mkdir()
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(pids_file), "audit", str(FIXTURES / "tiny-bert"),
                                "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 60
    while not (pids_file.exists() and pids_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not pids_file.exists():
        process.kill()
        pytest.fail(f"the audit never reached its statistics pass: {process.communicate(timeout=10)}")
    workers = [int(p) for p in pids_file.read_text().split()]
    assert workers
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert b"Traceback" not in stderr and b"stopped" in stderr
    time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)
    assert list(out.parent.iterdir()) == []
