"""Benchmark: `weightaudit inspect` on a release of 200 small shards (header reads only), end to end.

    python benchmarks/bench_inspect_shards.py [--shards 200] [--runs 5]

Target (issue 2): under 3 seconds including interpreter start-up. Prints the median of several runs of the
real console script in a subprocess, so start-up and imports are counted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
from make_fixtures import encode  # noqa: E402


def make_release(folder: Path, shards: int, tensors_per_shard: int = 20) -> None:
    weight_map = {}
    rng = np.random.default_rng(0)
    for s in range(1, shards + 1):
        name = f"model-{s:05d}-of-{shards:05d}.safetensors"
        arrays = {f"model.layers.{s}.t{i}.weight": rng.standard_normal((8, 8)).astype(np.float32)
                  for i in range(tensors_per_shard)}
        (folder / name).write_bytes(encode(arrays, {"format": "pt"}))
        weight_map.update({k: name for k in arrays})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("weightaudit") or f"{sys.executable} -m weightaudit"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_release(folder, args.shards)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            proc = subprocess.run([*exe.split(), "inspect", str(folder), "-f", "json"], capture_output=True)
            times.append(time.perf_counter() - start)
            assert proc.returncode == 0, proc.stderr.decode()
        report = json.loads(proc.stdout)
        help_start = time.perf_counter()
        subprocess.run([*exe.split(), "--help"], capture_output=True, check=True)
        help_time = time.perf_counter() - help_start
    print(f"inspect {args.shards} shards, {report['summary']['tensor_count']} tensors: "
          f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}) over {args.runs} runs")
    print(f"weightaudit --help: {help_time:.2f} s")


if __name__ == "__main__":
    main()
