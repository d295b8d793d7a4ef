"""The benchmark suite of issue 15, in one run: ``python -m benchmarks [--mib 512] [--torch] [--busy]``.

Every figure is set against **the limit** measured in the same run: a fresh Python process maps the page-cached
file with ``np.memmap`` and XOR-reduces it as ``uint64`` in 4 MiB chunks, timed inside that process (mapping and
first-touch page faults included, as for any audit). Throughputs are printed as a ratio to it; the 1-minute load
average is recorded beside every row, because on a shared machine absolute times mean little.

Rows: the limit; the statistics pass per core per dtype (F32, BF16, F16; ``compute_stats(workers=1)`` in a fresh
process, timed after the header is parsed); the same with all cores; with a busy second core (``--busy``);
end-to-end ``weightaudit audit`` (CLI wall time, start-up included) against a naive numpy-memmap
min/max/mean/std loop (and the naive ``load_file``+torch path with ``--torch``); 20,000 tiny tensors (audit
vs ``--no-stats``); 200 shards vs one file of the same bytes; HDF5 vs safetensors of the same F32 bytes;
start-up (``inspect`` of a 16 KiB file); JSON rendering of the 20,000-tensor report.
The table is printed and written between the suite markers of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import suite_files as files

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
PY = sys.executable

LIMIT_CHILD = r"""
import json, sys, time
import numpy as np
start = time.perf_counter()
m = np.memmap(sys.argv[1], dtype=np.uint8, mode="r")
n = m.size // 8 * 8
words = m[:n].view(np.uint64)
acc = np.uint64(0)
step = (4 << 20) // 8
for i in range(0, words.size, step):
    acc ^= np.bitwise_xor.reduce(words[i:i + step])
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": n, "x": int(acc)}))
"""

STATS_CHILD = r"""
import json, sys, time
from pathlib import Path
from weightaudit.formats import read_probe, sniff, all_loaders
from weightaudit.formats.base import LoadOptions
from weightaudit.stats import compute_stats, kernel_name
target = Path(sys.argv[1])
paths = sorted(p for p in target.iterdir() if p.suffix in (".safetensors", ".h5")) if target.is_dir() else [target]
root = target if target.is_dir() else target.parent
loaded = [sniff(read_probe(p)).load(p, p.name, LoadOptions()) for p in paths]
all_loaders()
start = time.perf_counter()
stats = compute_stats(root, loaded, workers=int(sys.argv[2]) or None)
seconds = time.perf_counter() - start
nbytes = sum(t.nbytes or 0 for f in loaded for t in f.tensors)
print(json.dumps({"seconds": seconds, "bytes": nbytes, "tensors": len(stats), "kernel": kernel_name()}))
"""

NAIVE_NUMPY_CHILD = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from pathlib import Path
from weightaudit.formats.safetensors import LOADER
from weightaudit.formats.base import LoadOptions
p = Path(sys.argv[1]); loaded = LOADER.load(p, p.name, LoadOptions())
m = np.memmap(p, dtype=np.uint8, mode="r")
for t in loaded.tensors:
    b, e = t.data_offsets
    raw = m[b:e]
    x = raw.view(np.float32) if t.dtype == "F32" else (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    _ = (float(x.min()), float(x.max()), float(x.mean()), float(x.std()))
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

NAIVE_TORCH_CHILD = r"""
import json, sys, time
import torch
from safetensors.torch import load_file
start = time.perf_counter()
for t in load_file(sys.argv[1]).values():
    t = t.float()
    _ = (t.min().item(), t.max().item(), t.mean().item(), t.std().item(), torch.isnan(t).sum().item())
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

JSON_CHILD = r"""
import json, sys, time
from weightaudit import api
from weightaudit.render import json_report
report = api.audit([sys.argv[1]])
start = time.perf_counter()
text = json_report.render(report, None)
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": len(text.encode())}))
"""

BUSY_CHILD = "import time\nend = time.time() + 600\nwhile time.time() < end: pass\n"


def child(code: str, *args: object) -> dict:
    out = subprocess.run([PY, "-c", code, *map(str, args)], check=True, capture_output=True, text=True,
                         cwd=HERE.parent).stdout
    return json.loads(out.strip().splitlines()[-1])


def wall(argv: list[str], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE.parent)
        best = min(best, time.perf_counter() - start)
    return best


def warm(path: Path) -> None:
    """Read every file into the page cache (the suite measures CPU and memory, not the disk)."""
    for p in ([path] if path.is_file() else sorted(path.rglob("*"))):
        if p.is_file():
            with open(p, "rb") as handle:
                while handle.read(16 << 20):
                    pass


def load() -> float:
    return os.getloadavg()[0]


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str, str]] = []
        self.limit_gbs = 0.0

    def add(self, name: str, seconds: float, nbytes: int | None = None, note: str = "") -> None:
        gbs = nbytes / seconds / 1e9 if nbytes else None
        ratio = f"{gbs / self.limit_gbs:.2f}" if gbs and self.limit_gbs else "—"
        row = (name, f"{seconds:.3f}", f"{gbs:.2f}" if gbs else "—", ratio, f"{load():.1f}", note)
        self.rows.append(row)
        print(" | ".join(row), flush=True)

    def markdown(self) -> str:
        head = "| measurement | seconds | GB/s | × limit | load (1 min) | note |\n|---|---|---|---|---|---|\n"
        return head + "\n".join("| " + " | ".join(r) + " |" for r in self.rows) + "\n"


def best(code: str, repeat: int, *args: object) -> dict:
    runs = [child(code, *args) for _ in range(repeat)]
    return min(runs, key=lambda r: r["seconds"])


def run(args: argparse.Namespace) -> Table:
    root = HERE / "out" / "suite" / f"{args.mib}MiB"
    total = args.mib * files.MIB
    table = Table()
    big = files.one_file(root, total)
    warm(big)
    limit = best(LIMIT_CHILD, args.repeat, big)
    table.limit_gbs = limit["bytes"] / limit["seconds"] / 1e9
    table.add(f"limit: memmap XOR-reduce, {args.mib} MiB", limit["seconds"], limit["bytes"], "same-run reference")
    for dtype in ("F32", "BF16", "F16"):
        path = files.dtype_file(root, dtype, total)
        warm(path)
        r = best(STATS_CHILD, args.repeat, path, 1)
        table.add(f"statistics pass {dtype}, 1 worker", r["seconds"], r["bytes"], f"kernel {r['kernel']}, {r['tensors']} tensors")
    r = best(STATS_CHILD, args.repeat, big, 0)
    table.add("statistics pass BF16, all cores", r["seconds"], r["bytes"], f"{os.cpu_count()} cores, {r['tensors']} tensors")
    if args.busy:
        spinner = subprocess.Popen([PY, "-c", BUSY_CHILD])
        try:
            r = best(STATS_CHILD, args.repeat, big, 0)
        finally:
            spinner.kill()
            spinner.wait()
        table.add("statistics pass BF16, all cores, one core kept busy", r["seconds"], r["bytes"], "busy loop beside")
    audit = [PY, "-m", "weightaudit", "audit", "--format", "json", "--fail-on", "never"]
    seconds = wall(audit + [str(big)], args.repeat)
    table.add("end-to-end audit (CLI, start-up included)", seconds, total)
    naive = best(NAIVE_NUMPY_CHILD, 1, big)
    table.add("naive numpy-memmap min/max/mean/std", naive["seconds"], total, f"audit is {naive['seconds'] / seconds:.1f}× faster")
    if args.torch:
        naive = best(NAIVE_TORCH_CHILD, 1, big)
        table.add("naive load_file + torch", naive["seconds"], total, f"audit is {naive['seconds'] / seconds:.1f}× faster")
    many = files.many_tensors(root.parent)
    warm(many)
    with_stats = wall(audit + [str(many)], args.repeat)
    header_only = wall(audit + ["--no-stats", str(many)], args.repeat)
    table.add("20,000 tensors: audit", with_stats, None, f"--no-stats {header_only:.2f} s; "
              f"{(with_stats - header_only) / 20_000 * 1e6:.0f} µs/tensor")
    folder, single = files.shards(root, total)
    warm(folder)
    warm(single)
    one = best(STATS_CHILD, args.repeat, single, 0)
    split = best(STATS_CHILD, args.repeat, folder, 0)
    table.add("one file, statistics", one["seconds"], one["bytes"])
    table.add("200 shards, statistics", split["seconds"], split["bytes"], f"{split['seconds'] / one['seconds']:.2f}× one file")
    h5, st = files.hdf5_and_safetensors(root, total // 2)
    warm(h5.parent)
    warm(st.parent)
    a = best(STATS_CHILD, args.repeat, st, 0)
    b = best(STATS_CHILD, args.repeat, h5, 0)
    table.add("safetensors F32, statistics", a["seconds"], a["bytes"])
    table.add("HDF5 same F32 bytes, statistics", b["seconds"], b["bytes"], f"{b['seconds'] / a['seconds']:.2f}× safetensors")
    tiny = files.tiny(root.parent)
    table.add("start-up: inspect of a 16 KiB safetensors", wall([PY, "-m", "weightaudit", "inspect", str(tiny)], 5), None,
              "best of 5, CLI wall")
    r = child(JSON_CHILD, many)
    table.add("JSON render, 20,000-tensor report", r["seconds"], None, f"{r['bytes'] / 1e6:.1f} MB")
    return table


def write_results(table: Table, args: argparse.Namespace) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    section = (f"{BEGIN}\n## Suite run of {stamp} (`{command}`)\n\n"
               f"Same-run limit {table.limit_gbs:.2f} GB/s; load average before the run {args.load_before:.1f}.\n\n"
               + table.markdown() + END)
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n# Benchmark suite (issue 15)\n\n" + section + "\n"
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="size of the generated release (MiB)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per figure")
    parser.add_argument("--torch", action="store_true", help="also time the naive load_file + torch path")
    parser.add_argument("--busy", action="store_true", help="also run the pass beside a busy loop")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    args.load_before = load()
    table = run(args)
    print(table.markdown())
    if not args.no_write:
        write_results(table, args)


if __name__ == "__main__":
    main()
