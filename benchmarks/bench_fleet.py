"""Fleet orchestration overhead and throughput (issue 14).

    python benchmarks/bench_fleet.py [--releases 500] [--jobs 2] [--large 4] [--large-mib 64] [--skip-dask]
                                     [--split-releases 1] [--split-shards 4] [--split-mib 64] [--only-split]

1. Tiny releases (the generator of tests/fleet, a few hundred bytes each, five kinds in rotation):
   - the floor: ``run_task`` (audit + scorecard through the API) called in this process, one after another;
   - ``batch`` with the local engine (``-j``) and with Dask (a LocalCluster of ``-j`` processes), each into a
     fresh database; ms per release = wall time / releases (Dask also without its cluster start-up);
   - a re-run with nothing changed (every release keyed and skipped).
2. Large releases: ``--large`` releases of one ``--large-mib`` MiB F32 safetensors each: ``batch -j`` against
   ``api.audit`` of each release alone (statistics with ``workers=-j``), one after another.
3. Split releases: ``--split-releases`` releases of ``--split-shards`` safetensors shards of ``--split-mib`` MiB
   each: ``batch -j`` with every release in one task (``--split-above never``) against split per shard
   (``--split-above 1``), best of ``--repeat``, wall and CPU time (this process and its reaped workers).

Every figure is measured in this run; the 1-minute load average is printed beside them (the machine is shared).
Prints a Markdown table to paste into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fleet.fleet_fixtures import make_fleet  # noqa: E402
from weightaudit.fleet.engine import EngineConfig  # noqa: E402
from weightaudit.fleet.runner import BatchConfig, run_batch  # noqa: E402
from weightaudit.fleet.sources import expand  # noqa: E402
from weightaudit.fleet.task import AuditOptions, Task, run_task  # noqa: E402
from weightaudit.policy import Policy  # noqa: E402


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def batch(root: Path, db: Path, engine: str, jobs: int, split_above: int | None = None) -> float:
    releases = expand([str(root)])
    config = BatchConfig(str(db), AuditOptions(policy=Policy()), engine, EngineConfig(jobs=jobs),
                         split_above_bytes=split_above)
    return timed(lambda: run_batch(releases, config, quiet=True))


def cpu_s() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def dask_startup(jobs: int) -> float:
    import distributed

    def start_stop() -> None:
        with distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=50) as cluster, distributed.Client(cluster):
            pass
    return timed(start_stop)


def write_safetensors(path: Path, name: str, mib: int, seed: int) -> None:
    import numpy as np

    count = mib * 1024 * 1024 // 4
    data = np.random.default_rng(seed).normal(0, 0.02, size=count).astype("<f4").tobytes()
    header = json.dumps({name: {"dtype": "F32", "shape": [count], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.write(data)


def large_release(folder: Path, mib: int, seed: int) -> None:
    folder.mkdir(parents=True)
    write_safetensors(folder / "model.safetensors", "w", mib, seed)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# large\n")


def tiny(args: argparse.Namespace, work: Path) -> list[str]:
    root = work / "tiny"
    make_fleet(root, args.releases)
    n = args.releases
    options = AuditOptions(policy=Policy())
    floor = timed(lambda: [run_task(Task(i, str(p), options)) for i, p in enumerate(sorted(root.iterdir()))])
    rows = [f"| in-process API, sequential (floor) | {n} | {floor:.1f} s | {1000 * floor / n:.1f} | {load()} |"]
    local = batch(root, work / "local.db", "local", args.jobs)
    rows.append(f"| batch local -j{args.jobs} | {n} | {local:.1f} s | {1000 * local / n:.1f} | {load()} |")
    rerun = batch(root, work / "local.db", "local", args.jobs)
    rows.append(f"| batch local re-run, all unchanged | {n} | {rerun:.1f} s | {1000 * rerun / n:.2f} | {load()} |")
    if not args.skip_dask:
        dask = batch(root, work / "dask.db", "dask", args.jobs)
        startup = dask_startup(args.jobs)
        rows.append(f"| batch dask -j{args.jobs} (LocalCluster start {startup:.1f} s included) | {n} | {dask:.1f} s | "
                    f"{1000 * dask / n:.1f} ({1000 * (dask - startup) / n:.1f} without start-up) | {load()} |")
    return rows


def large(args: argparse.Namespace, work: Path) -> list[str]:
    from weightaudit import api

    root = work / "large"
    for i in range(args.large):
        large_release(root / f"large{i}", args.large_mib, i)
    total_gb = args.large * args.large_mib * 1024 * 1024 / 1e9
    folders = sorted(root.iterdir())
    alone = timed(lambda: [api.audit(str(f), policy=Policy(), workers=args.jobs) for f in folders])
    fleet = batch(root, work / "large.db", "local", args.jobs)
    return [f"| api.audit each alone (stats workers={args.jobs}) | {args.large} x {args.large_mib} MiB | "
            f"{alone:.1f} s | {total_gb / alone:.2f} GB/s | {load()} |",
            f"| batch local -j{args.jobs} (one release per worker) | {args.large} x {args.large_mib} MiB | "
            f"{fleet:.1f} s | {total_gb / fleet:.2f} GB/s | {load()} |"]


def sharded_release(folder: Path, shards: int, mib: int, seed: int) -> None:
    """``shards`` safetensors shards of one ``mib`` MiB F32 tensor each, their index and a licensed card."""
    folder.mkdir(parents=True)
    weight_map = {f"w{n}": f"model-{n + 1:05d}-of-{shards:05d}.safetensors" for n in range(shards)}
    for n, (name, shard) in enumerate(weight_map.items()):
        write_safetensors(folder / shard, name, mib, seed * 100 + n)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# sharded\n")


def split(args: argparse.Namespace, work: Path) -> list[str]:
    root = work / "split"
    for i in range(args.split_releases):
        sharded_release(root / f"sharded{i}", args.split_shards, args.split_mib, i)
    gb = args.split_releases * args.split_shards * args.split_mib * 1024 * 1024 / 1e9
    size = f"{args.split_releases} x {args.split_shards} x {args.split_mib} MiB"
    rows = []
    for label, above in (("one task per release (--split-above never)", None), ("split per shard", 1)):
        best_wall = best_cpu = float("inf")
        for attempt in range(args.repeat):
            cpu_before = cpu_s()
            wall = batch(root, work / f"split-{above}-{attempt}.db", "local", args.jobs, above)
            best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu_s() - cpu_before)
        rows.append(f"| batch local -j{args.jobs}, {label} | {size} | {best_wall:.2f} s | {best_cpu:.2f} s | "
                    f"{gb / best_wall:.2f} GB/s | {load()} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--split-releases", type=int, default=1)
    parser.add_argument("--split-shards", type=int, default=4)
    parser.add_argument("--split-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only-split", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        if not args.only_split:
            print("| tiny releases | releases | wall | ms per release | load |\n|---|---|---|---|---|")
            print("\n".join(tiny(args, work)))
            print("\n| large releases | releases | wall | throughput | load |\n|---|---|---|---|---|")
            print("\n".join(large(args, work)) + "\n")
        print("| split releases | releases x shards | wall (best) | CPU (best) | throughput | load |\n"
              "|---|---|---|---|---|---|")
        print("\n".join(split(args, work)))


if __name__ == "__main__":
    main()
