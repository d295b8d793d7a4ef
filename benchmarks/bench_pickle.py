"""Cost of the symbolic pickle machine on ordinary and hostile pickles (issue 10).

Run: ``.venv/bin/python benchmarks/bench_pickle.py [--case NAME]``. Every case runs in a fresh subprocess so the
peak RSS it reports is its own. Cases:

- ``per-opcode``: a realistic protocol-2 state-dict-like pickle (600k opcodes), machine only, best of 3 (wall and CPU);
- ``torch-100k``: the ``data.pkl`` of ``torch.save`` of 100,000 one-element tensors (3.0 M opcodes), CPU per opcode;
- ``flood-10m``: 10,000,000 ``NONE``/``POP`` opcodes as a raw ``.pkl`` through the loader with the default
  ``max_opcodes`` (10M): the WA405 limit finding, the file unverified, then the bounded recovery scan;
- ``deep-200k``: a 1 MB ``data.pkl`` nesting dicts 200,000 deep inside a torch zip, through the loader;
- ``memo-2^60``: a memo graph with 2**60 paths (each level a list holding the previous one twice) in a torch zip;
- ``recovery-scan``: an error at byte 2, then 3 MB of opcodes read by the linear recovery scan (an ordinary
  state-dict-like body, and a payload-dense body with a call every six opcodes).

Not a unit test: timings depend on the machine (record them in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

CASES: dict[str, Callable[[Path], str]] = {}


def case(fn: Callable[[Path], str]) -> Callable[[Path], str]:
    CASES[fn.__name__.replace("_", "-").replace("memo-2-60", "memo-2^60")] = fn
    return fn


def _torch_zip(path: Path, data_pkl: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/.data/version", "3\n")
    return path


def _load(loader_name: str, path: Path) -> str:
    from weightaudit.formats import LoadOptions
    from weightaudit.formats.raw_pickle import RawPickleLoader
    from weightaudit.formats.torch_pickle import PYTORCH_ZIP

    loader = RawPickleLoader() if loader_name == "raw" else PYTORCH_ZIP
    start = time.perf_counter()
    loaded = loader.load(path, path.name, LoadOptions())
    elapsed = time.perf_counter() - start
    rules = sorted({f.rule_id for f in loaded.findings})
    return f"{elapsed:.2f} s, verified={loaded.verified}, findings {', '.join(rules) or '-'}" + \
        (f" ({loaded.reason[:60]})" if loaded.reason else "")


@case
def per_opcode(tmp: Path) -> str:
    from weightaudit.formats.pickle_vm import run_pickle

    data = pickle.dumps({f"layer{i}.weight": (i, [1.0, 2.0], "x" * 10) for i in range(50_000)}, protocol=2)
    best = min(_timed(lambda: run_pickle(data)) for _ in range(3))
    cpu = min(_cpu(lambda: run_pickle(data)) for _ in range(3))
    ops = sum(run_pickle(data).opcodes.values())
    return (f"{ops:,} opcodes in {best:.2f} s: {best / ops * 1e6:.2f} µs per opcode; "
            f"CPU {cpu / ops * 1e6:.2f} µs per opcode (best of 3)")


@case
def torch_100k(tmp: Path) -> str:
    """The data.pkl of ``torch.save`` of 100,000 one-element tensors (3.0 M opcodes), machine only, CPU time."""
    import torch

    from weightaudit.formats.pickle_vm import scan_stream

    path = tmp / "t.pt"
    torch.save({f"layer{i}.weight": torch.ones(1) for i in range(100_000)}, path)
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    cpu = min(_cpu(lambda: scan_stream(data)) for _ in range(3))
    ops = sum(scan_stream(data)[0][0].opcodes.values())
    return f"{ops:,} opcodes, CPU {cpu:.2f} s: {cpu / ops * 1e6:.2f} µs per opcode (best of 3, cyclic GC on)"


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


@case
def flood_10m(tmp: Path) -> str:
    path = tmp / "flood.pkl"
    path.write_bytes(b"N0" * 5_000_000 + b"N.")
    return _load("raw", path)


@case
def deep_200k(tmp: Path) -> str:
    depth = 200_000
    data = b"\x80\x02" + b"}U\x01a" * depth + b"K\x01" + b"s" * depth + b"."
    return _load("zip", _torch_zip(tmp / "deep.pt", data))


@case
def memo_2_60(tmp: Path) -> str:
    out = bytearray(b"\x80\x02]q\x00")
    for level in range(1, 61):
        out += b"]h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"\x86aq" + bytes([level])
    return _load("zip", _torch_zip(tmp / "memo.pt", bytes(out + b".")))


@case
def recovery_scan(tmp: Path) -> str:
    from weightaudit.formats.pickle_vm import run_pickle

    plain = pickle.dumps({f"layer{i}.weight": (i, [1.0, 2.0], "x" * 10) for i in range(50_000)}, protocol=2)
    dense = b"\x8c\x02os\x8c\x06system\x93N\x85R0" * 200_000 + b"."
    parts = []
    for label, body in (("state-dict-like", plain[2:]), ("a call every 6 opcodes", dense)):
        data = b"K\x01s" + body                    # SETITEM underflow at byte 2: everything after is scanned
        start = time.perf_counter()
        result = run_pickle(data)
        elapsed = time.perf_counter() - start
        parts.append(f"{label}: {len(data) / 2**20:.1f} MiB in {elapsed:.2f} s "
                     f"({len(data) / 2**20 / elapsed:.1f} MiB/s, {len(result.calls):,} calls)")
    return "; ".join(parts)


def run_case(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        text = CASES[name](Path(tmp))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:14} {text}; peak RSS {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=sorted(CASES))
    args = parser.parse_args()
    if args.case:
        run_case(args.case)
        return
    for name in CASES:
        subprocess.run([sys.executable, __file__, "--case", name], check=True)


if __name__ == "__main__":
    main()
