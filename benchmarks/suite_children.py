"""The programs the suite (``python -m benchmarks``) runs in fresh processes; each prints one JSON line.

Every child imports what it needs *before* starting its timer (the naive baselines included: a user's script
pays its imports once, and our own statistics rows are timed after imports too). The end-to-end audit row is
the exception on our side: it is the CLI's wall time, interpreter start-up and imports included, and the suite
prints its ratios both with and without that start-up.
"""

# The limit: a fresh process maps the page-cached file with np.memmap and XOR-reduces it as uint64 in
# 4 MiB chunks, mapping and first-touch faults included. Minor faults and PMD-mapped MiB are read after the timer:
# they tell how the page cache held the file (2 MiB folios map with one fault per 2 MiB, small ones per 64 KiB).
LIMIT = r"""
import json, resource, sys, time
import numpy as np
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
m = np.memmap(sys.argv[1], dtype=np.uint8, mode="r")
n = m.size // 8 * 8
words = m[:n].view(np.uint64)
acc = np.uint64(0)
step = (4 << 20) // 8
for i in range(0, words.size, step):
    acc ^= np.bitwise_xor.reduce(words[i:i + step])
seconds = time.perf_counter() - start
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
pmd, inside = 0, False
for line in open("/proc/self/smaps"):
    head = line.split()[0]
    if not head.endswith(":"):
        inside = line.rstrip().endswith(sys.argv[1])
    elif inside and head == "FilePmdMapped:":
        pmd += int(line.split()[1])
print(json.dumps({"seconds": seconds, "bytes": n, "x": int(acc), "faults": faults, "pmd_bytes": pmd * 1024}))
"""

# The limit over every weight file of a folder, one after the other in one process (the same XOR-reduce): the
# reference for a many-shard release, whose small files the page cache may hold in smaller folios than one big file.
LIMIT_FILES = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
paths = sorted(Path(sys.argv[1]).glob("*.safetensors"))
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start, total = time.perf_counter(), 0
for path in paths:
    m = np.memmap(path, dtype=np.uint8, mode="r")
    n = m.size // 8 * 8
    words = m[:n].view(np.uint64)
    acc = np.uint64(0)
    for i in range(0, words.size, (4 << 20) // 8):
        acc ^= np.bitwise_xor.reduce(words[i:i + (4 << 20) // 8])
    total += n
    del words, m
seconds = time.perf_counter() - start
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"seconds": seconds, "bytes": total, "faults": faults}))
"""

# Our statistics pass alone: compute_stats after the header is parsed and the loaders are imported.
STATS = r"""
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

# What a user writes with numpy alone: parse the safetensors header with json, memmap the file, and per tensor
# min/max/mean/std (BF16 widened to float32 by a shift, as numpy has no bfloat16). Imports before the timer.
NAIVE_NUMPY = r"""
import json, struct, sys, time
import numpy as np
start = time.perf_counter()
with open(sys.argv[1], "rb") as handle:
    size = struct.unpack("<Q", handle.read(8))[0]
    header = json.loads(handle.read(size))
base = 8 + size
m = np.memmap(sys.argv[1], dtype=np.uint8, mode="r")
for name, info in header.items():
    if name == "__metadata__":
        continue
    begin, end = info["data_offsets"]
    raw = m[base + begin:base + end]
    if info["dtype"] == "BF16":
        x = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        x = raw.view({"F32": np.float32, "F16": np.float16, "F64": np.float64}[info["dtype"]])
    _ = (float(x.min()), float(x.max()), float(x.mean()), float(x.std()))
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

# What a user writes with torch: load_file, then per tensor (as float32) min/max/mean/std and the NaN, Inf and
# zero counts. torch keeps its default thread count; torch and safetensors are imported before the timer.
NAIVE_TORCH = r"""
import json, sys, time
import torch
from safetensors.torch import load_file
start = time.perf_counter()
for t in load_file(sys.argv[1]).values():
    t = t.float()
    _ = (t.min().item(), t.max().item(), t.mean().item(), t.std().item(),
         torch.isnan(t).sum().item(), torch.isinf(t).sum().item(), (t == 0).sum().item())
print(json.dumps({"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}))
"""

JSON_RENDER = r"""
import json, sys, time
from weightaudit import api
from weightaudit.render import json_report
report = api.audit([sys.argv[1]])
start = time.perf_counter()
text = json_report.render(report, None)
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": len(text.encode())}))
"""

BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end: pass\n"
