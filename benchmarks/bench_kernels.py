"""Statistics kernel options side by side (issue 15): numpy kernel, the C kernel's variants, numba.

    python -m benchmarks.bench_kernels [--mib 512] [--repeat 3] [--no-numba]
    python -m benchmarks.bench_kernels --mib 64 --callgrind     # instruction counts (valgrind, ~10 min)

Per dtype (F32, BF16, F16; the suite's ``kernel_<dtype>.safetensors``, generated if missing and put in the
page cache as the suite does), each in a fresh process, best of ``--repeat``:

- the limit (the suite's: memmap + XOR-reduce as uint64 in 4 MiB chunks, faults included), wall and CPU time;
- ``compute_stats(workers=1)`` with ``WEIGHTAUDIT_KERNEL`` = numpy and each C variant usable here, wall and
  CPU time (CPU time is what a busy machine distorts least);

then, in this process, the in-cache cost of one 256 KiB block per kernel (the kernel alone, no page faults),
and ``numba`` (if importable; not a dependency) running a *subset* of the work (code extremes, sum, sum of
squares for F32, the C kernel's fast loop) with ``cache=True``: its import, compile and cache-load times and
its in-cache speed. The load average is printed beside every row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
MIB = 1 << 20
BLOCK = 256 * 1024

# The suite's limit (memmap + XOR-reduce as uint64 in 4 MiB chunks, faults included), timed in CPU time as well:
# on a shared machine CPU time against CPU time is the steadier ratio.
LIMIT = r"""
import json, sys, time
import numpy as np
cpu, start = time.process_time(), time.perf_counter()
m = np.memmap(sys.argv[1], dtype=np.uint8, mode="r")
words = m[: m.size // 8 * 8].view(np.uint64)
acc = np.uint64(0)
step = (4 << 20) // 8
for i in range(0, words.size, step):
    acc ^= np.bitwise_xor.reduce(words[i:i + step])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "bytes": words.nbytes, "x": int(acc)}))
"""

PASS = r"""
import json, sys, time
from pathlib import Path
from weightaudit.formats.safetensors import LOADER
from weightaudit.formats.base import LoadOptions
from weightaudit.stats import compute_stats, kernel_name
path = Path(sys.argv[1])
loaded = LOADER.load(path, path.name, LoadOptions())
cpu, start = time.process_time(), time.perf_counter()
compute_stats(path.parent, [loaded], workers=1)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
nbytes = sum(t.nbytes or 0 for t in loaded.tensors)
print(json.dumps({"seconds": seconds, "cpu": cpu, "bytes": nbytes, "kernel": kernel_name()}))
"""

NUMBA = r"""
import json, sys, time
start = time.perf_counter()
import numba, numpy as np
imported = time.perf_counter() - start

@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def fold_f32(codes):
    umin = np.uint32(0xFFFFFFFF); umax = np.uint32(0); smin = np.int32(2**31 - 1); smax = np.int32(-2**31)
    signed = codes.view(np.int32); values = codes.view(np.float32)
    s1 = 0.0; s2 = 0.0
    for begin in range(0, codes.size, 512):
        a1 = np.float32(0); a2 = np.float32(0)
        for i in range(begin, min(begin + 512, codes.size)):
            c = codes[i]; s = signed[i]; x = values[i]
            umin = min(umin, c); umax = max(umax, c); smin = min(smin, s); smax = max(smax, s)
            a1 += x; a2 += x * x
        s1 += a1; s2 += a2
    return umin, umax, smin, smax, s1, s2

codes = np.random.default_rng(0).normal(0, 0.02, 65536).astype(np.float32).view(np.uint32)
start = time.perf_counter(); fold_f32(codes); first = time.perf_counter() - start
best = 1e9
for _ in range(5):
    cpu = time.process_time()
    for _ in range(500):
        fold_f32(codes)
    best = min(best, (time.process_time() - cpu) / 500)
print(json.dumps({"import": imported, "first": first, "block_us": best * 1e6, "version": numba.__version__}))
"""


PASSES = r"""
import sys
from pathlib import Path
from weightaudit.formats.safetensors import LOADER
from weightaudit.formats.base import LoadOptions
from weightaudit.stats import compute_stats
path = Path(sys.argv[1])
loaded = LOADER.load(path, path.name, LoadOptions())
for _ in range(int(sys.argv[2])):
    compute_stats(path.parent, [loaded], workers=1)
"""


def callgrind(root: Path, kernels: list[str]) -> None:
    """Instructions of one pass (user space): a 2-pass run minus a 1-pass run under callgrind, per kernel.
    valgrind has no AVX-512: the C kernel runs its AVX2 variant there ("c" picks the best valgrind offers)."""
    import re

    for dtype in ("F32", "BF16", "F16"):
        path = root / f"kernel_{dtype}.safetensors"
        for kernel in kernels:
            counts = []
            for passes in (1, 2):
                done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", PY, "-c",
                                       PASSES, str(path), str(passes)], capture_output=True, text=True, cwd=HERE.parent,
                                      env={**os.environ, "WEIGHTAUDIT_KERNEL": kernel})
                counts.append(int(re.search(r"Collected : (\d+)", done.stderr).group(1)))
            print(f"| {dtype} | {kernel} | {(counts[1] - counts[0]) / 1e6:.1f} M instructions / pass of "
                  f"{path.stat().st_size / MIB:.0f} MiB |", flush=True)


def child(program: str, *args: object, env: dict | None = None, script: Path | None = None) -> dict:
    """Run ``program`` in a fresh interpreter (from ``script`` when given: numba caches only functions in files)."""
    if script is not None:
        script.write_text(program)
    argv = [PY, str(script)] if script is not None else [PY, "-c", program]
    out = subprocess.run([*argv, *map(str, args)], check=True, capture_output=True, text=True,
                         cwd=HERE.parent, env={**os.environ, **(env or {})}).stdout
    return json.loads(out.strip().splitlines()[-1])


def best(program: str, repeat: int, *args: object, env: dict | None = None) -> dict:
    return min((child(program, *args, env=env) for _ in range(repeat)), key=lambda r: r["seconds"])


def variants() -> list[str]:
    try:
        from weightaudit import _kernel
    except ImportError:
        return []
    return [f"c-{name}" for name in _kernel.variants()]


def in_cache_block_us(kernel: str, dtype: str) -> float:
    """CPU µs of one 256 KiB block already in cache, folded by ``kernel`` (best of 5 x 200)."""
    import numpy as np

    from weightaudit.stats_decode import _SPECS
    from weightaudit.stats_kernels import _plan, _run_blocks, select_kernel

    values = np.random.default_rng(0).normal(0, 0.02, BLOCK // 4 * 4).astype(np.float32)
    raw = {"F32": values.tobytes(), "BF16": (values.view(np.uint32) >> 16).astype("<u2").tobytes(),
           "F16": values.astype("<f2").tobytes()}[dtype][:BLOCK]
    blocks = [memoryview(raw)] * 200
    select_kernel(kernel)
    plan = _plan(_SPECS[dtype], 10**9, False, blocks[0])
    fastest = float("inf")
    for _ in range(5):
        cpu = time.process_time()
        _run_blocks(plan, blocks, BLOCK)   # a block the histogram does not sample, as 15 in 16 are
        fastest = min(fastest, (time.process_time() - cpu) / len(blocks))
    return fastest * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-numba", action="store_true")
    parser.add_argument("--callgrind", action="store_true", help="instruction counts instead (valgrind; slow)")
    args = parser.parse_args()
    from benchmarks import suite_files
    from benchmarks.__main__ import warm

    root = HERE / "out" / "suite" / f"{args.mib}MiB"
    root.mkdir(parents=True, exist_ok=True)
    kernels = ["numpy", *variants()]
    if args.callgrind:
        for dtype in ("F32", "BF16", "F16"):
            suite_files.dtype_file(root, dtype, args.mib * MIB)
        callgrind(root, ["numpy", "c"])
        return
    print(f"kernels: {', '.join(kernels)}; load {os.getloadavg()[0]:.1f}")
    print("| dtype | limit GB/s (CPU GB/s) | kernel | wall GB/s (× limit) | CPU GB/s (× limit's CPU GB/s) "
          "| in-cache µs / 256 KiB | load |")
    print("|---|---|---|---|---|---|---|")
    for dtype in ("F32", "BF16", "F16"):
        path = suite_files.dtype_file(root, dtype, args.mib * MIB)
        warm(path)
        limit = best(LIMIT, args.repeat, path)
        limit_gbs = limit["bytes"] / limit["seconds"] / 1e9
        limit_cpu = limit["bytes"] / limit["cpu"] / 1e9
        for kernel in kernels:
            r = best(PASS, args.repeat, path, env={"WEIGHTAUDIT_KERNEL": kernel})
            gbs, cpu_gbs = r["bytes"] / r["seconds"] / 1e9, r["bytes"] / r["cpu"] / 1e9
            print(f"| {dtype} | {limit_gbs:.2f} ({limit_cpu:.2f}) | {r['kernel']} | "
                  f"{gbs:.2f} ({gbs / limit_gbs:.2f}) | "
                  f"{cpu_gbs:.2f} ({cpu_gbs / limit_cpu:.2f}) | {in_cache_block_us(kernel, dtype):.1f} | "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)
    if not args.no_numba:
        with tempfile.TemporaryDirectory(prefix="wa-numba-") as cache:
            try:
                script = Path(cache) / "numba_fold.py"
                cold = child(NUMBA, env={"NUMBA_CACHE_DIR": cache}, script=script)
                warm_run = child(NUMBA, env={"NUMBA_CACHE_DIR": cache}, script=script)
            except subprocess.CalledProcessError:
                print("numba: not importable here (not a dependency); skipped")
                return
        print(f"numba {cold['version']} (F32 subset: code extremes + sums only): import {warm_run['import']:.2f} s, "
              f"compile {cold['first']:.2f} s, cache load {warm_run['first']:.2f} s, in-cache "
              f"{warm_run['block_us']:.1f} µs / 256 KiB; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
