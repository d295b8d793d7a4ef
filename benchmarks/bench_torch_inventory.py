"""Inventory of a ~1 GiB torch.save zip: reads only the zip directory, local headers and data.pkl.

Run: ``.venv/bin/python benchmarks/bench_torch_inventory.py [--size-mib 1024] [--path /tmp/bench_1g.pt]``.
Writes the checkpoint once (torch, random-free zeros), then times ``PYTORCH_ZIP.load`` (best of 5) and reports
peak RSS growth. Not a unit test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from weightaudit.formats import LoadOptions
from weightaudit.formats.torch_pickle import PYTORCH_ZIP


def make_checkpoint(path: Path, size_mib: int) -> None:
    import torch
    per_tensor = 64 * 1024 * 1024 // 4                       # 64 MiB of float32 each
    count = max(1, size_mib // 64)
    torch.save({f"layer{i}.weight": torch.zeros(per_tensor) for i in range(count)}, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--path", type=Path, default=Path("/tmp/weightaudit_bench_1g.pt"))
    args = parser.parse_args()
    if not args.path.exists():
        make_checkpoint(args.path, args.size_mib)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        loaded = PYTORCH_ZIP.load(args.path, args.path.name, LoadOptions())
        timings.append(time.perf_counter() - start)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"file: {args.path} ({args.path.stat().st_size / 2**30:.2f} GiB), tensors: {len(loaded.tensors)}, "
          f"status: {loaded.status.value}")
    print(f"inventory: best {min(timings) * 1000:.1f} ms, worst {max(timings) * 1000:.1f} ms; "
          f"peak RSS growth {(rss_after - rss_before) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
