"""Kernel options side by side (issue 15): our fused-numpy block kernel vs a one-pass compiled C loop.

    python -m benchmarks.bench_kernels [--mib 256]

Each figure is one core, in this process, over the page-cached files ``python -m benchmarks`` generates
(``benchmarks/out/suite/<mib>MiB/kernel_<dtype>.safetensors``), beside the same-run limit (memmap XOR-reduce
as uint64 in 4 MiB chunks). The C loop computes count, min, max, sum, sum of squares (float64), zeros and
NaN/Inf in one branchless pass per element (F32, BF16, F16 via bit manipulation; vectorisable with
reassociation), compiled here with ``gcc -O3
-march=native`` into a temporary shared library (ctypes): what a compiled extension could give at best, without
histogram/position/fingerprint. Not shipped: it only informs the choice (see RESULTS.md).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

C_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>
typedef struct { double mn, mx, s1, s2; int64_t zeros, nonfinite; } acc_t;
static inline float f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0x1f) bits = sign | 0x7f800000 | (m << 13);
    else if (e == 0) { float f = (float)m * (1.0f / 16777216.0f); return sign ? -f : f; }
    else bits = sign | ((e + 112) << 23) | (m << 13);
    float f; memcpy(&f, &bits, 4); return f;
}
#define BODY(DECODE) \
    float mn = INFINITY, mx = -INFINITY; double s1 = 0, s2 = 0; int64_t z = 0, nf = 0; \
    for (int64_t i = 0; i < n; i++) { float x = DECODE; uint32_t b; memcpy(&b, &x, 4); \
        int fin = (b & 0x7f800000u) != 0x7f800000u; float y = fin ? x : 0.0f; \
        mn = fin && x < mn ? x : mn; mx = fin && x > mx ? x : mx; s1 += y; s2 += (double)y * y; \
        z += (y == 0.0f) & fin; nf += !fin; } \
    a->mn = mn; a->mx = mx; a->s1 = s1; a->s2 = s2; a->zeros = z; a->nonfinite = nf;
void k_f32(const float *p, int64_t n, acc_t *a) { BODY(p[i]) }
void k_bf16(const uint16_t *p, int64_t n, acc_t *a) { BODY(({ uint32_t b = (uint32_t)p[i] << 16; float f; memcpy(&f, &b, 4); f; })) }
void k_f16(const uint16_t *p, int64_t n, acc_t *a) { BODY(f16(p[i])) }
"""


class Acc(ctypes.Structure):
    _fields_ = [("mn", ctypes.c_double), ("mx", ctypes.c_double), ("s1", ctypes.c_double), ("s2", ctypes.c_double),
                ("zeros", ctypes.c_int64), ("nonfinite", ctypes.c_int64)]


def compile_c() -> ctypes.CDLL:
    folder = Path(tempfile.mkdtemp(prefix="wa-kernel-"))
    (folder / "k.c").write_text(C_SOURCE)
    subprocess.run(["gcc", "-O3", "-march=native", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros", "-shared", "-fPIC",
                    "-o", str(folder / "k.so"), str(folder / "k.c")], check=True)
    return ctypes.CDLL(str(folder / "k.so"))


def limit(path: Path) -> float:
    start = time.perf_counter()
    m = np.memmap(path, dtype=np.uint8, mode="r")
    words = m[: m.size // 8 * 8].view(np.uint64)
    acc = np.uint64(0)
    for i in range(0, words.size, 1 << 19):
        acc ^= np.bitwise_xor.reduce(words[i:i + (1 << 19)])
    return m.size / (time.perf_counter() - start) / 1e9


def c_pass(lib: ctypes.CDLL, path: Path, dtype: str) -> float:
    func = {"F32": lib.k_f32, "BF16": lib.k_bf16, "F16": lib.k_f16}[dtype]
    start = time.perf_counter()
    m = np.memmap(path, dtype=np.uint8, mode="r")
    header = 8 + int.from_bytes(m[:8].tobytes(), "little")
    data = m[header:]
    itemsize = 4 if dtype == "F32" else 2
    acc = Acc()
    step = 4 << 20
    for i in range(0, data.size, step):
        block = np.ascontiguousarray(data[i:i + step])
        func(block.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(block.size // itemsize), ctypes.byref(acc))
    return data.size / (time.perf_counter() - start) / 1e9


def numpy_pass(path: Path) -> float:
    from weightaudit.formats.base import LoadOptions
    from weightaudit.formats.safetensors import LOADER
    from weightaudit.stats import compute_stats

    loaded = LOADER.load(path, path.name, LoadOptions())
    start = time.perf_counter()
    compute_stats(path.parent, [loaded], workers=1)
    return sum(t.nbytes or 0 for t in loaded.tensors) / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    args = parser.parse_args()
    root = HERE / "out" / "suite" / f"{args.mib}MiB"
    lib = compile_c()
    print("| dtype | limit GB/s | numpy kernel GB/s (× limit) | C one-pass GB/s (× limit) | load |\n|---|---|---|---|---|")
    for dtype in ("F32", "BF16", "F16"):
        path = root / f"kernel_{dtype}.safetensors"
        if not path.exists():
            print(f"| {dtype} | run `python -m benchmarks --mib {args.mib}` first | | | |")
            continue
        lim = limit(path)
        ours = numpy_pass(path)
        c = c_pass(lib, path, dtype)
        print(f"| {dtype} | {lim:.2f} | {ours:.2f} ({ours / lim:.2f}) | {c:.2f} ({c / lim:.2f}) | {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
