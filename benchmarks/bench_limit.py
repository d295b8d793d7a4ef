"""Why the issue-15 limit moves: variants of the memory-bandwidth limit, side by side, on one page-cached file.

    python -m benchmarks.bench_limit FILE [--repeat 3]

Each variant runs in a fresh Python process (numpy imported before the timer), best of ``--repeat``, with the
1-minute load average beside it, the minor page faults taken inside the timed region and how the mapping ended
up (``FilePmdMapped`` from ``/proc/self/smaps``: file pages mapped by 2 MiB PMD entries, one fault per 2 MiB,
instead of 4 KiB PTEs):

- ``issue``: **the limit of issue 15** -- ``np.memmap`` the file, XOR-reduce it as ``uint64`` in 4 MiB chunks,
  mapping and first-touch faults included (what ``python -m benchmarks`` reports);
- ``issue, 2nd pass``: the same loop again over the already-faulted map (no faults: the memory read alone);
- ``old: maximum.reduce f32``: the earlier benchmarks' variant (bench_audit.py): one ``np.maximum.reduce`` over
  the whole map as float32 (NaN-aware compare, one call);
- ``issue + MADV_HUGEPAGE`` / ``issue + MADV_POPULATE_READ``: the issue's loop after an ``madvise`` on the map.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PRELUDE = r"""
import json, mmap, resource, sys, time
import numpy as np
def pmd_kib(path):
    inside, total = False, 0
    for line in open("/proc/self/smaps"):
        if "-" in line.split()[0] and not line.split()[0].endswith(":"):
            inside = line.rstrip().endswith(path)
        elif inside and line.startswith("FilePmdMapped:"):
            total += int(line.split()[1])
    return total
def xor(m):
    n = m.size // 8 * 8
    words = m[:n].view(np.uint64)
    acc = np.uint64(0)
    step = (4 << 20) // 8
    for i in range(0, words.size, step):
        acc ^= np.bitwise_xor.reduce(words[i:i + step])
    return n, acc
path, variant = sys.argv[1], sys.argv[2]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
"""

VARIANTS = {
    "issue": "m = np.memmap(path, dtype=np.uint8, mode='r'); n, _ = xor(m)",
    "issue, 2nd pass": "m = np.memmap(path, dtype=np.uint8, mode='r'); xor(m)\n"
                       "faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
                       "start = time.perf_counter(); n, _ = xor(m)",
    "old: maximum.reduce f32": "h = open(path, 'rb'); m = mmap.mmap(h.fileno(), 0, access=mmap.ACCESS_READ)\n"
                               "v = np.frombuffer(m, np.uint8, count=len(m) // 4 * 4).view(np.float32)\n"
                               "np.maximum.reduce(v); n = v.nbytes",
    "issue + MADV_HUGEPAGE": "m = np.memmap(path, dtype=np.uint8, mode='r'); m._mmap.madvise(mmap.MADV_HUGEPAGE)\n"
                             "n, _ = xor(m)",
    "issue + MADV_POPULATE_READ": "m = np.memmap(path, dtype=np.uint8, mode='r')\n"
                                  "m._mmap.madvise(getattr(mmap, 'MADV_POPULATE_READ', 22))\nn, _ = xor(m)",
}

EPILOGUE = r"""
seconds = time.perf_counter() - start
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"seconds": seconds, "bytes": int(n), "faults": faults, "pmd_mib": pmd_kib(path) / 1024}))
"""


def measure(path: Path, variant: str, repeat: int) -> dict:
    code = PRELUDE + VARIANTS[variant] + EPILOGUE
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code, str(path.resolve()), variant], check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), help="variants to run")
    args = parser.parse_args()
    with open(args.file, "rb") as handle:       # page cache, as the suite does
        while handle.read(16 << 20):
            pass
    print(f"{args.file} ({args.file.stat().st_size / 2**20:.0f} MiB), best of {args.repeat}")
    for variant in args.only:
        r = measure(args.file, variant, args.repeat)
        print(f"{variant:30s} {r['seconds']:.3f} s {r['bytes'] / r['seconds'] / 1e9:6.2f} GB/s  "
              f"{r['faults']:7d} faults  {r['pmd_mib']:6.0f} MiB PMD-mapped  load {os.getloadavg()[0]:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
