"""HDF5 and .keras costs (issue 10): 100,000 datasets header-only and with statistics; a deflated .keras weights
member inflated once.

Run: ``python benchmarks/bench_hdf5.py [--datasets 100000] [--chunked] [--keras-mib 512] [--dir /tmp/wa_bench_hdf5]``
(``--datasets 0`` skips the HDF5 part).
Writes the inputs once (h5py, zeros), then times, each in a fresh process (``weightaudit audit`` through the CLI):
``--no-stats`` (header-only) and with statistics, and reports wall time and peak RSS of the child.
``--keras-mib N`` also builds a .keras whose deflated model.weights.h5 inflates to N MiB of zeros (a few hundred KB
on disk) and times its audit. Not a unit test: timings depend on the machine (record them in RESULTS.md).
"""

from __future__ import annotations

import argparse
import io
import json
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
    """Wall seconds, peak RSS (MiB) of the child, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(target), "--format", "json", *extra],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return wall, peak, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--chunked", action="store_true", help="chunked datasets (streamed through h5py)")
    parser.add_argument("--keras-mib", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/wa_bench_hdf5"))
    args = parser.parse_args()
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
    for label, extra in (("header-only", ("--no-stats",)), ("statistics", ())):
        wall, peak, code = timed_audit(release, *extra)
        print(f"{args.datasets:,} {kind} datasets, {label}: {wall:.1f} s, peak RSS {peak:.0f} MiB, exit {code}")


def bench_keras(args: argparse.Namespace) -> None:
    if args.keras_mib:
        keras_dir = args.dir / f"keras-{args.keras_mib}"
        keras_dir.mkdir(parents=True, exist_ok=True)
        keras = keras_dir / "model.keras"
        if not keras.exists():
            make_deflated_keras(keras, args.keras_mib)
        wall, peak, code = timed_audit(keras_dir, "--no-stats")
        print(f".keras {keras.stat().st_size / 2**10:.0f} KiB inflating to {args.keras_mib} MiB, header-only: "
              f"{wall:.1f} s, peak RSS {peak:.0f} MiB, exit {code}")
        wall, peak, code = timed_audit(keras_dir)
        print(f"  with statistics: {wall:.1f} s, peak RSS {peak:.0f} MiB, exit {code}")


if __name__ == "__main__":
    main()
