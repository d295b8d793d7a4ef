"""HDF5 and .keras costs (issue 10): 100,000 datasets header-only and with statistics; a deflated .keras weights
member inflated once.

Run: ``python benchmarks/bench_hdf5.py [--datasets 100000] [--chunked] [--keras-mib 512] [--repeat 3] [--loader]
[--dir /tmp/wa_bench_hdf5]`` (``--datasets 0`` skips the HDF5 part).
Writes the inputs once (h5py), then times, each in a fresh process (``weightaudit audit --format json -o /dev/null``):
``--no-stats`` (header-only) and with statistics, and reports wall and CPU time (the child and its statistics
workers; best of ``--repeat``), the audit process's own peak RSS (VmHWM) and the load average. ``--loader`` also
times the HDF5 loader alone in-process with the native reader (hdf5_native.py) and with the h5py path.
``--keras-mib N`` also builds a .keras whose deflated model.weights.h5 inflates to N MiB of zeros (a few hundred KB
on disk) and times its audit. Not a unit test: timings depend on the machine (record them in RESULTS.md).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np


def make_many(path: Path, count: int, chunked: bool) -> None:
    with h5py.File(path, "w") as handle:
        data = np.arange(16, dtype=np.float32)
        for index in range(count):
            handle.create_dataset(f"g{index // 1000}/t{index}", data=data, chunks=(16,) if chunked else None)


def make_deflated_keras(path: Path, mib: int) -> None:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=np.zeros((mib, 1024 * 256), np.float32))
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "s", "layers": [{"module": "keras.layers", "class_name": "Dense",
                                                  "config": {"name": "dense", "units": 1}, "registered_name": None}]}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", buffer.getvalue())


def timed_audit(target: Path, *extra: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (the child and its statistics workers), exit code of one CLI audit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(target), "--format", "json",
                           "-o", "/dev/null", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def peak_rss(target: Path, *extra: str) -> float:
    """Peak RSS (MiB) of the audit process itself (VmHWM, read by a wrapper in the child; ``ru_maxrss`` of
    children is inherited across fork+exec and over-reports)."""
    script = ("import sys, runpy, atexit\n"
              "def _hwm():\n"
              "    for line in open('/proc/self/status'):\n"
              "        if line.startswith('VmHWM'): sys.stderr.write('VMHWM ' + line.split()[1] + '\\n')\n"
              "atexit.register(_hwm)\n"
              "sys.argv = ['weightaudit', *sys.argv[1:]]\n"
              "runpy.run_module('weightaudit', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", script, "audit", str(target), "--format", "json", "-o", "/dev/null",
                           *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [line for line in done.stderr.splitlines() if line.startswith("VMHWM ")]
    return int(lines[-1].split()[1]) / 1024 if lines else float("nan")


def loader_cpu(path: Path, native: bool, repeat: int) -> float:
    """Best-of-``repeat`` CPU seconds of the HDF5 loader alone, in this process (``native=False``: the h5py path)."""
    from weightaudit.formats import hdf5_read, hdf5_stream
    from weightaudit.formats.base import LoadOptions
    from weightaudit.formats.keras_h5 import HDF5_LOADER
    original = hdf5_read._native_scan
    hdf5_read._native_scan = original if native else (lambda handle, source: None)
    try:
        best = float("inf")
        for _ in range(repeat):
            hdf5_stream.close_cached()
            start = time.process_time()
            HDF5_LOADER.load(path, path.name, LoadOptions())
            best = min(best, time.process_time() - start)
        return best
    finally:
        hdf5_read._native_scan = original


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--chunked", action="store_true", help="chunked datasets (streamed through h5py)")
    parser.add_argument("--keras-mib", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for the times (default 3)")
    parser.add_argument("--loader", action="store_true",
                        help="also time the loader alone in-process, native reader vs the h5py path")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/wa_bench_hdf5"))
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.datasets:
        bench_many(args)
    if args.keras_mib:
        bench_keras(args)


def bench_many(args: argparse.Namespace) -> None:
    kind = "chunked" if args.chunked else "contiguous"
    release = args.dir / f"{kind}-{args.datasets}"
    release.mkdir(parents=True, exist_ok=True)
    target = release / "many.h5"
    if not target.exists():
        start = time.perf_counter()
        make_many(target, args.datasets, args.chunked)
        print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    if args.loader:
        for native in (True, False):
            label = "native reader" if native else "h5py path"
            print(f"  loader alone ({label}): {loader_cpu(target, native, args.repeat):.2f} s CPU, best of "
                  f"{args.repeat}")
    for label, extra in (("header-only", ("--no-stats",)), ("statistics", ())):
        runs = [timed_audit(release, *extra) for _ in range(args.repeat)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"{args.datasets:,} {kind} datasets, {label}: {wall:.1f} s wall, {cpu:.1f} s CPU (best of "
              f"{args.repeat}), peak RSS {peak_rss(release, *extra):.0f} MiB, exit {runs[-1][2]}, "
              f"load {os.getloadavg()[0]:.2f}")


def bench_keras(args: argparse.Namespace) -> None:
    keras_dir = args.dir / f"keras-{args.keras_mib}"
    keras_dir.mkdir(parents=True, exist_ok=True)
    keras = keras_dir / "model.keras"
    if not keras.exists():
        make_deflated_keras(keras, args.keras_mib)
    for label, extra in (("header-only", ("--no-stats",)), ("statistics", ())):
        wall, cpu, code = timed_audit(keras_dir, *extra)
        print(f".keras {keras.stat().st_size / 2**10:.0f} KiB inflating to {args.keras_mib} MiB, {label}: "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak_rss(keras_dir, *extra):.0f} MiB, exit {code}")


if __name__ == "__main__":
    main()
