"""Hostile-size benchmarks (issue 10): cost linear in tensors, memory a constant plus a small per-tensor inventory.

    python benchmarks/bench_hostile.py                 # every case below, one subprocess each
    python benchmarks/bench_hostile.py --case st-1m    # one case

Cases (budgets from the issue):
- ``st-100k-stats``: a safetensors file with 100,000 tensors, audited WITH statistics: < 10 s, < 500 MB;
- ``st-1m``: a safetensors file with 1,000,000 tensors, header-only: < 30 s, < 2 GB;
- ``gguf-1m``: a GGUF file with 1,000,000 tensors, header-only: < 30 s, < 2 GB;
- ``torch-100k-stats``: a torch zip (``torch.save`` of a dict of 100,000 one-element tensors, 100,000 stored
  members), audited WITH statistics: < 10 s, < 500 MB (needs torch to write the file once).

Each case runs ``weightaudit audit`` in-process in a fresh subprocess (``run`` + JSON rendering, as the CLI does)
and reports wall time and peak RSS (``ru_maxrss`` of the child). The files are generated under
``benchmarks/out/hostile`` (streamed, so generating them costs little memory). The same run also measures the
machine's memory-bandwidth limit as bench_audit.py does (``np.maximum.reduce`` over an mmap of a 1 GiB file), so
figures from a loaded machine can be read against it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "hostile"

CASES = {
    "st-100k-stats": ("safetensors", 100_000, True, 10.0, 500),
    "st-1m": ("safetensors", 1_000_000, False, 30.0, 2048),
    "gguf-1m": ("gguf", 1_000_000, False, 30.0, 2048),
    "torch-100k-stats": ("torch", 100_000, True, 10.0, 500),
}
SUFFIXES = {"safetensors": ".safetensors", "gguf": ".gguf", "torch": ".pt"}


def write_safetensors(path: Path, count: int, elements: int = 4) -> None:
    """``count`` F32 tensors of ``elements`` values each (distinct names, offsets in order), streamed to disk."""
    nbytes = 4 * elements
    parts = ['{"__metadata__":{"format":"pt"}']
    for i in range(count):
        parts.append(f',"layers.{i}.weight":{{"dtype":"F32","shape":[{elements}],'
                     f'"data_offsets":[{i * nbytes},{(i + 1) * nbytes}]}}')
    header = "".join(parts) + "}"
    header += " " * (-len(header) % 8)
    raw = header.encode()
    values = struct.pack(f"<{elements}f", *(0.01 * (k + 1) for k in range(elements)))
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        chunk = values * 65536
        full, rest = divmod(count, 65536)
        for _ in range(full):
            handle.write(chunk)
        handle.write(values * rest)


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path, count: int) -> None:
    """A GGUF v3 file with ``count`` one-element F32 tensors (32-byte aligned), streamed to disk."""
    kvs = [("general.architecture", "llama"), ("general.name", "hostile")]
    with open(path, "wb") as handle:
        handle.write(b"GGUF" + struct.pack("<IQQ", 3, count, len(kvs)))
        size = 24
        for key, value in kvs:
            item = _gguf_string(key) + struct.pack("<I", 8) + _gguf_string(value)
            handle.write(item)
            size += len(item)
        batch = []
        for i in range(count):
            batch.append(_gguf_string(f"blk.{i}.w") + struct.pack("<IQIQ", 1, 1, 0, 32 * i))
            if len(batch) == 65536:
                blob = b"".join(batch)
                handle.write(blob)
                size += len(blob)
                batch = []
        blob = b"".join(batch)
        handle.write(blob)
        size += len(blob)
        handle.write(b"\0" * (-size % 32))
        block = struct.pack("<f", 0.5) + b"\0" * 28
        full, rest = divmod(count, 65536)
        for _ in range(full):
            handle.write(block * 65536)
        handle.write(block * rest)


def write_torch(path: Path, count: int) -> None:
    """``torch.save`` of ``count`` one-element F32 tensors in a dict (one storage record each), as issue 10 built it."""
    import torch

    torch.save({f"layer{i}.weight": torch.ones(1) for i in range(count)}, path)


WRITERS = {"safetensors": write_safetensors, "gguf": write_gguf, "torch": write_torch}


def make(case: str) -> Path:
    fmt, count, _stats, _secs, _mb = CASES[case]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{case}{SUFFIXES[fmt]}"
    if not path.exists():
        WRITERS[fmt](path, count)
    return path


def child(case: str) -> None:
    """Runs in the subprocess: one audit, timed, with the JSON rendering the CLI would do."""
    from weightaudit.pipeline import RunOptions, run
    from weightaudit.policy import Policy
    from weightaudit.model import Severity
    from weightaudit.render import RenderOptions, render

    path = make(case)
    stats = CASES[case][2]
    start = time.perf_counter()
    report = run([str(path)], RunOptions(command="audit", stats=stats, policy=Policy(fail_on=Severity.HIGH)))
    text = render(report, "json", RenderOptions())
    seconds = time.perf_counter() - start
    rss_mb, workers_mb = _peak_rss_mb()
    cpu = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for field in ("ru_utime", "ru_stime"))
    tensors = sum(len(f.tensors) for f in report.files)
    print(json.dumps({"case": case, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                      "peak_rss_mb": round(rss_mb), "workers_peak_rss_mb": round(workers_mb),
                      "tensors": tensors, "findings": len(report.findings), "json_mb": round(len(text) / 1e6, 1),
                      "exit": int(report.exit_code)}))


def _peak_rss_mb() -> tuple[float, float]:
    """VmHWM of this process: ru_maxrss is inherited from the parent across fork+exec on Linux (the parent maps
    the 1 GiB bandwidth file), so it would over-report; VmHWM is this address space's own high-water mark.
    Statistics workers are forked children; their largest peak is returned apart (it includes the pages they
    share copy-on-write with this process)."""
    with open("/proc/self/status") as handle:
        own = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:")) / 1024
    return own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def bandwidth_limit() -> float:
    """GB/s of one np.maximum.reduce over a 1 GiB mmap (page cache): the machine's memory-bandwidth limit."""
    import mmap

    import numpy as np

    path = OUT / "bandwidth.bin"
    if not path.exists() or path.stat().st_size != 1 << 30:
        with open(path, "wb") as handle:
            block = np.arange(1 << 20, dtype=np.float32).tobytes()
            for _ in range(256):
                handle.write(block)
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        array = np.frombuffer(mapped, dtype=np.float32)
        np.maximum.reduce(array)
        best = min(_timed(lambda: np.maximum.reduce(array)) for _ in range(3))
        del array
        mapped.close()
    return (1 << 30) / best / 1e9


def _timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"memory-bandwidth limit: {bandwidth_limit():.2f} GB/s (np.maximum.reduce over a 1 GiB mmap)")
    for case in args.case or sorted(CASES):
        make(case)
        done = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            print(f"{case}: FAILED\n{done.stderr}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        _fmt, _n, _stats, seconds, megabytes = CASES[case]
        ok = result["seconds"] < seconds and result["peak_rss_mb"] < megabytes
        print(f"{case}: {result['seconds']} s wall, {result['cpu_seconds']} s CPU, peak RSS {result['peak_rss_mb']} MB "
              f"(largest statistics worker {result['workers_peak_rss_mb']} MB), {result['tensors']:,} tensors, "
              f"{result['findings']} findings, JSON {result['json_mb']} MB, exit {result['exit']} "
              f"(budget < {seconds:g} s, < {megabytes} MB: {'met' if ok else 'NOT MET'})")


if __name__ == "__main__":
    main()
