"""Benchmark ``diff`` and ``hash``/``verify`` on a 2 GB safetensors file against the same-run memory-bandwidth limit.

    python benchmarks/bench_diff_hash.py [--out DIR] [--repeat 3]

Files (under benchmarks/out/diffhash, gitignored; written once, ~6 GB): ``a.safetensors`` (the Llama-shaped
tensors of make_release.py in one file, 2.04 GB of tensors), ``same.safetensors`` (a byte copy) and
``other.safetensors`` (the same tensors drawn from another seed: every tensor differs, every element decoded).

Every figure is measured here, now, each in a fresh process, with the files in the page cache (a warm-up read
first), timed inside the child after imports (interpreter start-up is not the tool's throughput):

- limit (issue 15): a fresh process maps the page-cached file with np.memmap and XOR-reduces it as uint64 in
  4 MiB chunks; for a diff the limit is that of both files (it must read both);
- sha256 ceiling: hashlib.sha256 over the same map in 4 MiB chunks (what any sha256 manifest costs);
- ``diff`` same / all-different: weightaudit.compare.diff_targets (GB/s counts the bytes of both sides);
- ``hash``: weightaudit.manifest.build_manifest (file sha256 + every tensor's content hash: the bytes twice);
- ``verify`` unchanged: weightaudit.manifest.verify_manifest (file sha256s only: unchanged files' tensors match
  by construction).

Peak RSS from /usr/bin/time -v. Prints a Markdown table (paste it into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_OUT = HERE / "out" / "diffhash"
PYTHON = sys.executable

LIMIT_CHILD = r"""
import json, sys, time
import numpy as np
CHUNK = 4 * 1024 * 1024 // 8
start = time.perf_counter()
acc = np.uint64(0)
for name in sys.argv[1:]:
    words = np.memmap(name, dtype=np.uint64, mode="r", shape=(__import__("os").path.getsize(name) // 8,))
    for begin in range(0, words.size, CHUNK):
        acc ^= np.bitwise_xor.reduce(words[begin:begin + CHUNK])
    del words
print(json.dumps({"seconds": time.perf_counter() - start, "xor": int(acc)}))
"""

SHA_CHILD = r"""
import hashlib, json, os, sys, time
import numpy as np
CHUNK = 4 * 1024 * 1024
start = time.perf_counter()
name = sys.argv[1]
data = np.memmap(name, dtype=np.uint8, mode="r", shape=(os.path.getsize(name),))
hasher = hashlib.sha256()
for begin in range(0, data.size, CHUNK):
    hasher.update(data[begin:begin + CHUNK])
print(json.dumps({"seconds": time.perf_counter() - start, "sha256": hasher.hexdigest()}))
"""

DIFF_CHILD = r"""
import json, sys, time
from weightaudit.compare import diff_targets
import weightaudit.stats, weightaudit.formats.safetensors, weightaudit.discover, weightaudit.pipeline
start = time.perf_counter()
report = diff_targets(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start, "summary": report.summary()}))
"""

HASH_CHILD = r"""
import json, sys, time
from weightaudit.manifest import build_manifest
import weightaudit.formats.safetensors, weightaudit.discover, weightaudit.pipeline, numpy
start = time.perf_counter()
manifest = build_manifest([sys.argv[1]])
print(json.dumps({"seconds": time.perf_counter() - start, "tensors": len(manifest.tensors)}))
"""

VERIFY_CHILD = r"""
import json, sys, time
from pathlib import Path
from weightaudit.manifest import build_manifest, verify_manifest
import weightaudit.formats.safetensors, weightaudit.discover, weightaudit.pipeline, numpy
Path(sys.argv[2]).write_text(json.dumps(build_manifest([sys.argv[1]]).to_dict()))
start = time.perf_counter()
report = verify_manifest([sys.argv[1]], Path(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - start, "verdict": report.verdict}))
"""


def make_files(out: Path) -> None:
    from make_release import HIDDEN, VOCAB, layer_tensors, write_shard

    specs = [("model.embed_tokens.weight", "F32", (VOCAB, HIDDEN))] + \
        [t for i in range(16) for t in layer_tensors(i)] + \
        [("model.norm.weight", "F32", (HIDDEN,)), ("lm_head.weight", "BF16", (VOCAB, HIDDEN))]
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "a.safetensors").exists():
        write_shard(out / "a.safetensors", specs, np.random.default_rng(0))
    if not (out / "same.safetensors").exists():
        shutil.copyfile(out / "a.safetensors", out / "same.safetensors")
    if not (out / "other.safetensors").exists():
        write_shard(out / "other.safetensors", specs, np.random.default_rng(1))


def warm(paths: list[Path]) -> None:
    buffer = bytearray(16 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def timed_child(code: str, *args: str) -> tuple[float, int, dict]:
    """(seconds the child measured, peak RSS bytes, its JSON)."""
    done = subprocess.run(["/usr/bin/time", "-v", PYTHON, "-c", code, *args], capture_output=True, text=True,
                          check=False)
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    return result["seconds"], int(match.group(1)) * 1024, result


def best(runs: list[tuple[float, int, dict]]) -> tuple[float, int, dict]:
    fastest = min(runs, key=lambda run: run[0])
    return fastest[0], max(run[1] for run in runs), fastest[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    make_files(args.out)
    a, same, other = (args.out / n for n in ("a.safetensors", "same.safetensors", "other.safetensors"))
    size = a.stat().st_size
    gb = size / 1e9
    warm([a, same, other])

    def run(code: str, *argv: str) -> tuple[float, int, dict]:
        return best([timed_child(code, *argv) for _ in range(args.repeat)])

    limit_one = run(LIMIT_CHILD, str(a))
    limit_two = run(LIMIT_CHILD, str(a), str(same))
    sha = run(SHA_CHILD, str(a))
    diff_same = run(DIFF_CHILD, str(a), str(same))
    diff_other = run(DIFF_CHILD, str(a), str(other))
    hashed = run(HASH_CHILD, str(a))
    verified = run(VERIFY_CHILD, str(a), str(args.out / "manifest.json"))
    assert diff_same[2]["summary"]["identical"] == 147 and diff_other[2]["summary"]["changed"] == 147

    rows = [
        ("limit: np.memmap XOR-reduce as uint64, 4 MiB chunks (1 file)", limit_one, gb, None),
        ("limit: the same over both files of a diff", limit_two, 2 * gb, None),
        ("sha256 ceiling: hashlib over the map, 4 MiB chunks", sha, gb, None),
        ("`diff` identical copy (byte compare)", diff_same, 2 * gb, limit_two[0]),
        ("`diff` every tensor different (decode both, max/L2/cosine)", diff_other, 2 * gb, limit_two[0]),
        ("`hash` (file sha256 + every tensor's content hash)", hashed, gb, limit_one[0]),
        ("`verify` unchanged (file sha256s)", verified, gb, limit_one[0]),
    ]
    print(f"file: {a.name} — {gb:.2f} GB, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"best of {args.repeat}\n")
    print("| measurement | seconds | GB/s | of limit | peak RSS |\n|---|---|---|---|---|")
    for label, (seconds, rss, _), nbytes, limit in rows:
        share = f"{limit / seconds:.0%}" if limit else "-"
        print(f"| {label} | {seconds:.2f} | {nbytes / seconds:.2f} | {share} | {rss / 2**20:.0f} MiB |")
    print(f"\nsha256 ceiling / limit: {limit_one[0] / sha[0]:.0%}; hash / sha256 ceiling: {sha[0] / hashed[0]:.0%} "
          f"(hash reads and hashes the bytes twice: file digest and tensor digests); "
          f"verify / sha256 ceiling: {sha[0] / verified[0]:.0%}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"run finished {started}")


if __name__ == "__main__":
    main()
