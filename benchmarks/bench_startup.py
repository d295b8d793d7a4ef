"""Start-up cost of the CLI (issue 15 item 4): ``inspect`` of a 16 KiB safetensors file, a release folder, the
JSON output and ``--help``, beside the floor of what every run pays (the interpreter, click, rich).

    python -m benchmarks.bench_startup [--repeat 15] [--instructions]

Each command runs in a fresh interpreter, best of ``--repeat`` for wall and for CPU (user+sys of the child), in
two modes: with a bytecode cache (as after ``pip install``, which compiles every module; here a private
``PYTHONPYCACHEPREFIX``, warmed once) and with ``PYTHONDONTWRITEBYTECODE=1`` (the interpreter's and
site-packages' bytecode is read, but every module of a checkout without ``__pycache__`` is compiled from source
on every run: this environment's setting).
``--instructions`` adds valgrind's instruction count per command (deterministic, unlike times on a shared
machine). Load average printed beside the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def _safetensors(path: Path, floats: int = 4096 - 32) -> Path:
    """The suite's tiny file (benchmarks/suite_files.tiny): one F32 tensor, 16 KiB."""
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4 * floats))
    return path


def _commands(root: Path) -> list[tuple[str, list[str]]]:
    tiny = _safetensors(root / "tiny.safetensors")
    release = root / "release"
    release.mkdir()
    _safetensors(release / "model.safetensors")
    (release / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 4}))
    (release / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    wa = [PY, "-m", "weightaudit"]
    return [
        ("floor: python -c pass", [PY, "-c", "pass"]),
        ("floor: import click", [PY, "-c", "import click"]),
        ("floor: import click + rich table", [PY, "-c", "import click, rich.console, rich.table, rich.panel"]),
        ("weightaudit --help", wa + ["--help"]),
        ("inspect 16 KiB safetensors (text)", wa + ["inspect", str(tiny)]),
        ("inspect 16 KiB safetensors (-f json)", wa + ["inspect", "-f", "json", str(tiny)]),
        ("inspect folder (+config.json, README.md)", wa + ["inspect", str(release)]),
    ]


def _best(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(walls), min(cpus)


def _instructions(argv: list[str], env: dict[str, str]) -> float | None:
    if shutil.which("valgrind") is None:
        return None
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1]) / 1e6
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--instructions", action="store_true", help="also count instructions with valgrind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wa-startup-") as tmp:
        root = Path(tmp)
        cached = dict(os.environ, PYTHONPYCACHEPREFIX=str(root / "pycache"))
        cached.pop("PYTHONDONTWRITEBYTECODE", None)
        uncached = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        uncached.pop("PYTHONPYCACHEPREFIX", None)
        rows = []
        for label, argv in _commands(root):
            subprocess.run(argv, env=cached, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            wall, cpu = _best(argv, cached, args.repeat)
            _, cpu_src = _best(argv, uncached, max(3, args.repeat // 3))
            count = _instructions(argv, cached) if args.instructions else None
            rows.append((label, wall, cpu, cpu_src, count))
    load = os.getloadavg()
    print(f"Start-up, best of {args.repeat} (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} cores)\n")
    print("| command | wall (bytecode cached) | CPU (cached) | CPU (no bytecode) |"
          + (" instructions (cached) |" if args.instructions else ""))
    print("|---|---|---|---|" + ("---|" if args.instructions else ""))
    for label, wall, cpu, cpu_src, count in rows:
        extra = f" {count:.0f} M |" if args.instructions and count is not None else (" - |" if args.instructions else "")
        print(f"| {label} | {wall:.3f} s | {cpu:.3f} s | {cpu_src:.3f} s |{extra}")


if __name__ == "__main__":
    main()
