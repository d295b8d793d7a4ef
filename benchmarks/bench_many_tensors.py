"""Per-tensor cost of an audit of many tiny tensors (issue 15 item 2, issue 10's 100k budget), stage by stage.

``python benchmarks/bench_many_tensors.py [--count 20000] [--repeat 5] [--no-stats] [FILE]``

Generates (once) the suite's 20,000 x 4 KiB F32 safetensors file (``suite_files.many_tensors``; with
``--count 100000`` the 100,000-tensor file of the same shape), then in ONE fresh process, after every import is
warm (rules registered, numpy, stats and renderers imported), runs ``api.audit`` + JSON rendering ``--repeat``
times and prints the CPU time (``time.process_time`` plus the reaped statistics workers' ``os.times``) of each
stage, best of N, with the 1-minute load average. Stages are timed by wrapping the
pipeline's own functions (load_file, _compute_stats, _run_rules) and the JSON renderer (report dicts and encoding):
the remainder of ``run`` (findings, policy, copies, sorting) is "other".
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (the statistics workers)."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


def _timed(stage: str, spent: dict[str, float], func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        start = _cpu()
        try:
            return func(*args, **kwargs)
        finally:
            spent[stage] = spent.get(stage, 0.0) + _cpu() - start
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-stats", action="store_true")
    args = parser.parse_args()
    from benchmarks import suite_files

    path = Path(args.file) if args.file else suite_files.many_tensors(HERE / "out" / "suite", args.count)

    from weightaudit import api, pipeline, report as report_module, stats  # noqa: F401 - warm imports
    from weightaudit.render import json_report
    from weightaudit.rules import all_rules

    all_rules()
    spent: dict[str, float] = {}
    pipeline.load_file = _timed("load", spent, pipeline.load_file)
    pipeline._compute_stats = _timed("stats", spent, pipeline._compute_stats)
    rules = pipeline._run_rules
    pipeline._run_rules = _timed("rules", spent, lambda *a, **k: list(rules(*a, **k)))   # a generator: drain it
    render = _timed("render", spent, json_report.render)   # to_dict + encoding (interleaved above 5,000 tensors)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        spent.clear()
        start = _cpu()
        result = api.audit([str(path)], stats=not args.no_stats, fail_on="high")
        text = render(result, None)
        spent["total"] = _cpu() - start
        spent["other"] = spent["total"] - sum(v for k, v in spent.items() if k != "total")
        for key, value in spent.items():
            best[key] = min(best.get(key, float("inf")), value)
    count = len(result.tensors)
    order = ["load", "stats", "rules", "other", "render", "total"]
    print(f"{path.name}: {count:,} tensors, stats={'no' if args.no_stats else 'yes'}, best of {args.repeat} "
          f"(CPU s), load average {os.getloadavg()[0]:.2f}, report {len(text.encode()) / 1e6:.1f} MB")
    for key in order:
        print(f"  {key:8s} {best.get(key, 0.0):7.3f} s  {best.get(key, 0.0) / max(count, 1) * 1e6:6.1f} µs/tensor")


if __name__ == "__main__":
    main()
