"""A torch zip with 100,000 members (issue 10): how long the zip directory, sniffing and the whole load take.

Run: ``.venv/bin/python benchmarks/bench_zip_members.py [--tensors 100000] [--path /tmp/weightaudit_100k.pt]``.
Writes the checkpoint once with torch.save (one 1-element tensor per member), then times reading the central
directory (names only, as sniffing does; full entries joined to local headers, as loading does), and
``PYTORCH_ZIP.load``; prints peak RSS. Not a unit test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from weightaudit.formats import LoadOptions
from weightaudit.formats.mapped_file import close_map, open_map
from weightaudit.formats.torch_pickle import PYTORCH_ZIP
from weightaudit.formats.zipread import read_zip_entries, read_zip_names


def make_checkpoint(path: Path, tensors: int) -> None:
    import torch
    torch.save({f"layer{i}.weight": torch.ones(1) for i in range(tensors)}, path)


def best_of(runs: int, fn) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tensors", type=int, default=100_000)
    parser.add_argument("--path", type=Path, default=Path("/tmp/weightaudit_100k.pt"))
    args = parser.parse_args()
    if not args.path.exists():
        make_checkpoint(args.path, args.tensors)
    owner, view = open_map(args.path)
    try:
        names = best_of(3, lambda: read_zip_names(view))
        entries = best_of(3, lambda: read_zip_entries(view))
    finally:
        close_map(owner, view)
    start, cpu_start = time.perf_counter(), time.process_time()
    loaded = PYTORCH_ZIP.load(args.path, args.path.name, LoadOptions())
    load, load_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"members: {loaded.facts.get('zip_members')}, tensors: {len(loaded.tensors)}, verified: {loaded.verified}")
    print(f"central directory names (sniff): {names:.2f} s; entries + local headers: {entries:.2f} s; "
          f"PYTORCH_ZIP.load: {load:.1f} s wall, {load_cpu:.1f} s CPU (load average {os.getloadavg()[0]:.1f}); "
          f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
