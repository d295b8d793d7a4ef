"""The benchmark suite of issue 15, in one run: ``python -m benchmarks [--mib 512] [--torch] [--busy]``.

Every figure is set against **the limit** measured in the same run: a fresh Python process maps the page-cached
file with ``np.memmap`` and XOR-reduces it as ``uint64`` in 4 MiB chunks, timed inside that process (mapping and
first-touch page faults included, as for any audit). Throughputs are printed as a ratio to it; the 1-minute load
average is recorded beside every row, because on a shared machine absolute times mean little. Every file is put
in the page cache the same way before it is measured: its cached pages are dropped and it is read back
sequentially, so the kernel's readahead holds it in large folios, whatever wrote it (a file still cached from
being written sits in small folios and faults in ~2x slower; see RESULTS.md, "The limit").

Rows: the limit; the statistics pass per core per dtype (F32, BF16, F16; ``compute_stats(workers=1)`` in a fresh
process, timed after the header is parsed); the same with all cores; with a busy second core (``--busy``);
end-to-end ``weightaudit audit`` (CLI wall time, start-up included, and without it) against a naive numpy-memmap
min/max/mean/std loop and (``--torch``) the naive ``load_file`` + torch min/max/mean/std/NaN/Inf/zeros path;
peak RSS of the audit and of its statistics workers over a sweep of file sizes (``--rss-sweep``); 20,000 tiny
tensors (audit vs ``--no-stats``); 200 shards vs one file of the same bytes; HDF5 vs safetensors of the same F32
bytes; start-up (``inspect`` of a 16 KiB file); JSON rendering of the 20,000-tensor report; the limit again
(drift check).
The table is printed and written between the suite markers of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import peak_rss
from benchmarks import suite_children as code
from benchmarks import suite_files as files

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
PY = sys.executable
AUDIT = [PY, "-m", "weightaudit", "audit", "--format", "json", "--fail-on", "never"]
GIB = 1 << 30


def child(program: str, *args: object) -> dict:
    out = subprocess.run([PY, "-c", program, *map(str, args)], check=True, capture_output=True, text=True,
                         cwd=HERE.parent).stdout
    return json.loads(out.strip().splitlines()[-1])


def best(program: str, repeat: int, *args: object) -> dict:
    runs = [child(program, *args) for _ in range(repeat)]
    return min(runs, key=lambda r: r["seconds"])


def wall(argv: list[str], repeat: int = 1, env: dict[str, str] | None = None) -> float:
    """Best wall time of a CLI run; an exit other than 0 (pass) or 1 (fail) means the run is not a measurement.
    Every CLI run has a bytecode cache, as an installed copy has (see ``bytecode_env``)."""
    env = env or bytecode_env()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE.parent, env=env)  # compiles
    fastest = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE.parent, env=env)
        fastest = min(fastest, time.perf_counter() - start)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(argv[2:])} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return fastest


_WARM: set[Path] = set()


def warm(path: Path) -> None:
    """Put every file in the page cache the same way, whatever its size: drop its cached pages, then fault it
    back in through a map advised ``MADV_HUGEPAGE``, so the kernel caches it in 2 MiB folios where it can.
    Read back with ``read()``, a big file ramps up to 2 MiB folios but a 10 MiB shard stays in 64 KiB ones
    (32,800 faults for 2 GiB in 200 shards against ~1,700), and the limit itself was 1.9x slower on the shards:
    a comparison of layouts would then measure the page cache, not the audit."""
    for p in ([path] if path.is_file() else sorted(path.rglob("*"))):
        if p.is_file() and p not in _WARM:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)                    # written pages must be clean before they can be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                size = os.fstat(fd).st_size
                if size:
                    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
                        if hasattr(mmap, "MADV_HUGEPAGE"):
                            mapped.madvise(mmap.MADV_HUGEPAGE)
                        for offset in range(0, size, mmap.PAGESIZE):
                            mapped[offset]
            finally:
                os.close(fd)
            _WARM.add(p)


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


@dataclass(frozen=True)
class Inputs:
    """Every generated file a run needs (see suite_files; each is written once and re-used)."""

    total: int
    big: Path
    kernels: dict[str, Path]
    many: Path
    shards: Path
    single: Path
    hdf5: Path
    same_bytes: Path
    tiny: Path
    sweep: dict[float, Path]


def prepare(args: argparse.Namespace) -> Inputs:
    root = HERE / "out" / "suite" / f"{args.mib}MiB"
    total = args.mib * files.MIB
    folder, single = files.shards(root, total)
    h5, st = files.hdf5_and_safetensors(root, total // 2)
    return Inputs(total=total, big=files.one_file(root, total),
                  kernels={d: files.dtype_file(root, d, total) for d in ("F32", "BF16", "F16")},
                  many=files.many_tensors(root.parent), shards=folder, single=single, hdf5=h5, same_bytes=st,
                  tiny=files.tiny(root.parent),
                  sweep={gib: files.sized_file(root.parent, int(gib * GIB)) for gib in args.rss_sweep})


def rows_limit_and_kernel(table: Table, inputs: Inputs, args: argparse.Namespace) -> None:
    warm(inputs.big)
    limit = best(code.LIMIT, args.repeat, inputs.big)
    table.limit_gbs = limit["bytes"] / limit["seconds"] / 1e9
    table.add(f"limit: memmap XOR-reduce, {args.mib} MiB", limit["seconds"], limit["bytes"],
              f"same-run reference; {limit['faults']} faults, {limit['pmd_bytes'] / limit['bytes']:.0%} PMD-mapped")
    for dtype, path in inputs.kernels.items():
        warm(path)
        r = best(code.STATS, args.repeat, path, 1)
        table.add(f"statistics pass {dtype}, 1 worker", r["seconds"], r["bytes"], f"kernel {r['kernel']}, {r['tensors']} tensors")
    r = best(code.STATS, args.repeat, inputs.big, 0)
    table.add("statistics pass BF16, all cores", r["seconds"], r["bytes"], f"{os.cpu_count()} cores, {r['tensors']} tensors")
    if args.busy:
        spinner = subprocess.Popen([PY, "-c", code.BUSY])
        try:
            r = best(code.STATS, args.repeat, inputs.big, 0)
        finally:
            spinner.kill()
            spinner.wait()
        table.add("statistics pass BF16, all cores, one core kept busy", r["seconds"], r["bytes"], "busy loop beside")


def rows_end_to_end(table: Table, inputs: Inputs, args: argparse.Namespace) -> None:
    """Our CLI audit against the naive baselines; ratios with and without our start-up (naive: imports untimed)."""
    warm(inputs.tiny)
    startup = wall(AUDIT + [str(inputs.tiny)], max(args.repeat, 3))
    seconds = wall(AUDIT + [str(inputs.big)], args.repeat)
    table.add(f"end-to-end audit of {args.mib} MiB (CLI wall, start-up included)", seconds, inputs.total,
              f"start-up {startup:.2f} s = CLI audit of a 16 KiB file (interpreter, imports, rules, report)")
    net = max(seconds - startup, 1e-3)
    table.add("end-to-end audit minus start-up", net, inputs.total, "what the naive rows are set against too")
    baselines = [("naive numpy-memmap min/max/mean/std", code.NAIVE_NUMPY, 8)]
    if args.torch:
        baselines.append(("naive load_file + torch min/max/mean/std/NaN/Inf/zeros", code.NAIVE_TORCH, 30))
    for name, program, target in baselines:
        naive = best(program, args.repeat, inputs.big)
        threads = f", torch {naive['threads']} threads" if "threads" in naive else ""
        table.add(name, naive["seconds"], inputs.total,
                  f"audit is {naive['seconds'] / seconds:.1f}× faster ({naive['seconds'] / net:.1f}× without "
                  f"start-up; target ≥ {target}×); imports not timed{threads}")


def rows_rss(table: Table, inputs: Inputs, args: argparse.Namespace) -> None:
    """Peak RSS of the CLI audit and of each process it starts, file by file (target < 100 MB, flat)."""
    runs = {}
    for gib, path in inputs.sweep.items():
        warm(path)
        runs[gib] = peak_rss.measure(AUDIT + [str(path)], cwd=str(HERE.parent))
        if runs[gib]["exit"] not in (0, 1):
            raise RuntimeError(f"audit of {path} exited {runs[gib]['exit']}")
    tops = {gib: max([r["main_kib"], r["tree_maxrss_kib"], *r["children_kib"]]) * 1024 / 1e6 for gib, r in runs.items()}
    for gib, r in runs.items():
        workers = "/".join(f"{kib * 1024 / 1e6:.0f}" for kib in r["children_kib"]) or "none"
        flat = f"; sweep {min(tops.values()):.0f}-{max(tops.values()):.0f} MB (target < 100 MB, flat)" \
            if gib == list(runs)[-1] and len(runs) > 1 else ""
        table.add(f"peak RSS, audit of {gib:g} GiB", r["seconds"], inputs.sweep[gib].stat().st_size,
                  f"max {tops[gib]:.0f} MB: audit process {r['main_kib'] * 1024 / 1e6:.0f} MB (VmHWM), "
                  f"workers {workers} MB, tree ru_maxrss {r['tree_maxrss_kib'] * 1024 / 1e6:.0f} MB{flat}")


def rows_layout(table: Table, inputs: Inputs, args: argparse.Namespace) -> None:
    """Costs that depend on how the bytes are laid out: many tensors, many shards, HDF5."""
    warm(inputs.many)
    with_stats = wall(AUDIT + [str(inputs.many)], args.repeat)
    header_only = wall(AUDIT + ["--no-stats", str(inputs.many)], args.repeat)
    table.add("20,000 tensors: audit", with_stats, None, f"--no-stats {header_only:.2f} s; "
              f"{(with_stats - header_only) / 20_000 * 1e6:.0f} µs/tensor")
    warm(inputs.shards)
    warm(inputs.single)
    one = best(code.STATS, args.repeat, inputs.single, 0)
    split = best(code.STATS, args.repeat, inputs.shards, 0)
    table.add("one file, statistics", one["seconds"], one["bytes"])
    limit_one = best(code.LIMIT, args.repeat, inputs.single)
    limit_split = best(code.LIMIT_FILES, args.repeat, inputs.shards)
    layout = limit_split["seconds"] / limit_one["seconds"]
    table.add("200 shards, statistics", split["seconds"], split["bytes"],
              f"{split['seconds'] / one['seconds']:.2f}× one file; the limit itself is {layout:.2f}× slower on the "
              f"shards ({limit_split['faults']:,} vs {limit_one['faults']:,} page faults): "
              f"{split['seconds'] / one['seconds'] / layout:.2f}× one file against the same-layout limit")
    warm(inputs.hdf5.parent)
    warm(inputs.same_bytes.parent)
    a = best(code.STATS, args.repeat, inputs.same_bytes, 0)
    b = best(code.STATS, args.repeat, inputs.hdf5, 0)
    table.add("safetensors F32, statistics", a["seconds"], a["bytes"])
    table.add("HDF5 same F32 bytes, statistics", b["seconds"], b["bytes"], f"{b['seconds'] / a['seconds']:.2f}× safetensors")


def bytecode_env() -> dict[str, str]:
    """This environment with a bytecode cache, as after ``pip install`` (which compiles every module): with
    PYTHONDONTWRITEBYTECODE=1 a checkout compiles weightaudit from source at every start (~0.07 s more)."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(HERE / "out" / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def rows_startup_and_json(table: Table, inputs: Inputs, args: argparse.Namespace) -> None:
    argv = [PY, "-m", "weightaudit", "inspect", str(inputs.tiny)]
    wall(argv, 1, bytecode_env())   # fills the bytecode cache
    table.add("start-up: inspect of a 16 KiB safetensors", wall(argv, 5, bytecode_env()), None,
              "best of 5, CLI wall, bytecode cached (benchmarks/bench_startup.py: floor, folder, no-cache)")
    r = child(code.JSON_RENDER, inputs.many)
    table.add("JSON render, 20,000-tensor report", r["seconds"], None, f"{r['bytes'] / 1e6:.1f} MB")


def row_limit_again(table: Table, inputs: Inputs, args: argparse.Namespace) -> None:
    """The limit once more at the end: if it moved, the machine's load changed during the run."""
    limit = best(code.LIMIT, args.repeat, inputs.big)
    drift = limit["bytes"] / limit["seconds"] / 1e9 / table.limit_gbs
    table.add("limit again, end of run", limit["seconds"], limit["bytes"], f"{drift:.2f}× the first (drift check)")


ROWS = (rows_limit_and_kernel, rows_end_to_end, rows_rss, rows_layout, rows_startup_and_json, row_limit_again)


def run(args: argparse.Namespace, inputs: Inputs) -> Table:
    table = Table()
    for rows in ROWS:
        start = time.perf_counter()
        rows(table, inputs, args)
        print(f"[{rows.__name__}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    return table


def write_results(table: Table, args: argparse.Namespace, minutes: float) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    section = (f"{BEGIN}\n## Suite run of {stamp} (`{command}`)\n\n"
               f"Same-run limit {table.limit_gbs:.2f} GB/s; load average before the run {args.load_before:.1f}; "
               f"measurements took {minutes:.1f} min (files already generated).\n\n"
               + table.markdown() + END)
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n# Benchmark suite (issue 15)\n\n" + section + "\n"
    RESULTS.write_text(text)


def sizes(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="size of the generated release (MiB)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per figure")
    parser.add_argument("--torch", action="store_true", help="also time the naive load_file + torch path")
    parser.add_argument("--busy", action="store_true", help="also run the pass beside a busy loop")
    parser.add_argument("--rss-sweep", type=sizes, default=sizes("0.5,1,2"), metavar="GIB,...",
                        help="file sizes (GiB) whose audit peak RSS is measured; the issue's full sweep is "
                             "0.5,1,2,4,8 (15.5 GiB of files, written once); '' skips it (default 0.5,1,2)")
    parser.add_argument("--generate-only", action="store_true", help="write the input files, measure nothing")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    start = time.perf_counter()
    inputs = prepare(args)
    print(f"[inputs ready: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    if args.generate_only:
        return
    args.load_before = load()
    start = time.perf_counter()
    table = run(args, inputs)
    minutes = (time.perf_counter() - start) / 60
    print(table.markdown())
    print(f"[measurements: {minutes:.1f} min]", file=sys.stderr)
    if not args.no_write:
        write_results(table, args, minutes)


if __name__ == "__main__":
    main()
