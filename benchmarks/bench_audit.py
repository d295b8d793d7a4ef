"""Benchmark the statistics pass against the machine's limit and the naive way, in one run.

    python benchmarks/make_release.py          # once: ~2 GB under benchmarks/out/release
    python benchmarks/bench_audit.py [--release DIR] [--repeat 3] [--skip-naive]

Every figure is measured here, now, from the page cache (a warm-up read runs first):

- limit: one numpy reduction (``np.maximum.reduce``) streaming over the memory-mapped shards, one thread;
- ours: ``weightaudit.stats.compute_stats`` in a child process under ``/usr/bin/time -v`` (peak RSS), timed
  from after the headers are parsed and the loader registry is imported (as the CLI has them by then);
- end-to-end: ``weightaudit audit`` (JSON to /dev/null) minus ``weightaudit audit --no-stats``, when the CLI
  exists; the statistics throughput is bytes / (audit time - header-only time), the end-to-end figure too;
- naive: ``safetensors.torch.load_file`` then per-tensor torch min/max/mean/std/isnan/isinf/==0 (timed inside
  its child after ``import torch``, so interpreter and import time are not counted against it).

Each measurement is the best of ``--repeat`` runs (naive included); peak RSS is the largest of those runs.

Prints a Markdown table (paste it into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_RELEASE = HERE / "out" / "release"
PYTHON = sys.executable

OURS_CHILD = r"""
import json, sys, time
from pathlib import Path
from weightaudit.formats.base import LoadOptions
from weightaudit.formats.safetensors import LOADER
from weightaudit.formats import all_loaders
from weightaudit.stats import compute_stats
root = Path(sys.argv[1])
files = [LOADER.load(p, p.name, LoadOptions()) for p in sorted(root.glob("*.safetensors"))]
all_loaders()  # import the loader registry first, as the CLI has by then (start-up, not statistics: ~0.15 s)
start = time.perf_counter()
stats = compute_stats(root, files, workers=int(sys.argv[2]) or None)
print(json.dumps({"seconds": time.perf_counter() - start, "tensors": len(stats)}))
"""

NAIVE_CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from safetensors.torch import load_file
start = time.perf_counter()
count = 0
for shard in sorted(Path(sys.argv[1]).glob("*.safetensors")):
    for name, t in load_file(str(shard)).items():
        t = t.float()
        _ = (t.min().item(), t.max().item(), t.mean().item(), t.std().item(),
             torch.isnan(t).sum().item(), torch.isinf(t).sum().item(), (t == 0).sum().item())
        count += 1
print(json.dumps({"seconds": time.perf_counter() - start, "tensors": count}))
"""


# The same statistics our report carries (±Inf apart, fp16 overflow, max |x| and where, a 16-bin histogram, a
# fingerprint of the bytes), computed the way a person would with torch. The subset variant above leaves
# those out, so it produces less than we do; both are reported.
NAIVE_SAME_CHILD = r"""
import hashlib, json, sys, time
from pathlib import Path
import torch
from safetensors.torch import load_file
start = time.perf_counter()
count = 0
for shard in sorted(Path(sys.argv[1]).glob("*.safetensors")):
    for name, raw in load_file(str(shard)).items():
        t = raw.float()
        a = t.abs()
        finite = t[torch.isfinite(t)]
        _ = (t.min().item(), t.max().item(), t.mean().item(), t.std().item(),
             torch.isnan(t).sum().item(), torch.isposinf(t).sum().item(), torch.isneginf(t).sum().item(),
             (t == 0).sum().item(), (a > 65504).sum().item(), a.max().item(), a.argmax().item(),
             torch.histc(finite, bins=16).tolist(),
             hashlib.sha256(raw.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest())
        count += 1
print(json.dumps({"seconds": time.perf_counter() - start, "tensors": count}))
"""


def tensor_bytes(release: Path) -> int:
    """Bytes of tensor data (file sizes minus the safetensors headers)."""
    total = 0
    for shard in sorted(release.glob("*.safetensors")):
        with open(shard, "rb") as handle:
            header = int.from_bytes(handle.read(8), "little")
        total += shard.stat().st_size - 8 - header
    return total


def warm(release: Path) -> None:
    """Read every shard once so all measurements start from the page cache."""
    buffer = bytearray(16 << 20)
    for shard in sorted(release.glob("*.safetensors")):
        with open(shard, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def limit_seconds(release: Path) -> float:
    """One numpy reduction over each memory-mapped shard (a fresh map each time, so pages fault in)."""
    start = time.perf_counter()
    for shard in sorted(release.glob("*.safetensors")):
        with open(shard, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        values = np.frombuffer(mapped, np.uint8, count=len(mapped) // 4 * 4).view(np.float32)
        np.maximum.reduce(values)
        del values
        mapped.close()
    return time.perf_counter() - start


def timed_child(argv: list[str]) -> tuple[float, int, str]:
    """Run under /usr/bin/time -v: (wall seconds, peak RSS bytes, stdout)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode not in (0, 1) or match is None:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, int(match.group(1)) * 1024, done.stdout


def best(runs: list[tuple[float, int, str]]) -> tuple[float, int, str]:
    """The fastest run by wall time, with the largest peak RSS of all runs (the conservative figure)."""
    fastest = min(runs, key=lambda run: run[0])
    return fastest[0], max(run[1] for run in runs), fastest[2]


def best_reported(runs: list[tuple[float, int, str]]) -> tuple[float, int, str]:
    """Like ``best`` but by the seconds the child measured itself (interpreter and import time left out)."""
    fastest = min(runs, key=lambda run: json.loads(run[2])["seconds"])
    return fastest[0], max(run[1] for run in runs), fastest[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (best is reported)")
    parser.add_argument("--workers", type=int, default=0, help="stats workers (0 = cores)")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    if not any(args.release.glob("*.safetensors")):
        sys.exit(f"no release at {args.release}: run benchmarks/make_release.py first")
    nbytes = tensor_bytes(args.release)
    gb = nbytes / 1e9
    warm(args.release)
    rows: list[tuple[str, str, str, str]] = []

    limit = min(limit_seconds(args.release) for _ in range(args.repeat))
    rows.append(("machine limit: np.maximum.reduce over the mmap (1 thread)", f"{limit:.2f}", f"{gb / limit:.2f}", "-"))

    ours = best_reported([timed_child([PYTHON, "-c", OURS_CHILD, str(args.release), str(args.workers)])
                          for _ in range(args.repeat)])
    ours_s = json.loads(ours[2])["seconds"]
    rows.append(("weightaudit.stats.compute_stats (statistics pass)", f"{ours_s:.2f}", f"{gb / ours_s:.2f}",
                 f"{ours[1] / 2**20:.0f} MiB"))

    cli = Path(PYTHON).with_name("weightaudit")
    pass_s = None
    if cli.exists():
        base = [str(cli), "audit", str(args.release), "--format", "json", "-o", os.devnull, "--no-progress",
                "--fail-on", "never"]
        header = best([timed_child(base + ["--no-stats"]) for _ in range(args.repeat)])
        full = best([timed_child(base) for _ in range(args.repeat)])
        pass_s = max(full[0] - header[0], 1e-9)
        rows.append(("`weightaudit audit --no-stats` (header-only)", f"{header[0]:.2f}", "-", f"{header[1] / 2**20:.0f} MiB"))
        rows.append(("`weightaudit audit` end-to-end", f"{full[0]:.2f}", f"{gb / full[0]:.2f}", f"{full[1] / 2**20:.0f} MiB"))
        rows.append(("`weightaudit audit` statistics pass (audit - header-only)", f"{pass_s:.2f}", f"{gb / pass_s:.2f}", "-"))

    naive_s = same_s = None
    if not args.skip_naive:  # best of --repeat as well: a single run on a loaded machine flatters us
        naive = best_reported([timed_child([PYTHON, "-c", NAIVE_CHILD, str(args.release)]) for _ in range(args.repeat)])
        naive_s = json.loads(naive[2])["seconds"]
        rows.append(("naive (subset): safetensors.torch.load_file + torch min/max/mean/std/NaN/Inf/zeros",
                     f"{naive_s:.2f}", f"{gb / naive_s:.2f}", f"{naive[1] / 2**20:.0f} MiB"))
        same = best_reported([timed_child([PYTHON, "-c", NAIVE_SAME_CHILD, str(args.release)])
                              for _ in range(args.repeat)])
        same_s = json.loads(same[2])["seconds"]
        rows.append(("naive (same statistics as ours: + ±Inf, fp16 overflow, max|x| and where, histogram, sha256)",
                     f"{same_s:.2f}", f"{gb / same_s:.2f}", f"{same[1] / 2**20:.0f} MiB"))

    print(f"release: {args.release} — {gb:.2f} GB of tensors, {os.cpu_count()} CPUs, best of {args.repeat}\n")
    print("| measurement | seconds | GB/s | peak RSS |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nstatistics pass = {100 * limit / ours_s:.0f}% of the machine limit (target >= 25%)")
    if pass_s is not None:
        print(f"audit statistics pass (audit - header-only) = {100 * limit / pass_s:.0f}% of the machine limit")
    if naive_s is not None:
        print(f"statistics pass is {same_s / ours_s:.1f}x faster than naive with the same statistics "
              f"(target >= 30x); {naive_s / ours_s:.1f}x faster than the subset")
        if pass_s is not None:
            print(f"audit statistics pass is {same_s / pass_s:.1f}x faster than naive with the same statistics; "
                  f"{naive_s / pass_s:.1f}x faster than the subset")
    print(f"peak RSS of the statistics child: {ours[1] / 2**20:.0f} MiB (target < 400 MiB)")


if __name__ == "__main__":
    main()
