"""Listing a SavedModel whose data shard is 1 GiB reads only the index and the graph.

Run: ``.venv/bin/python benchmarks/bench_savedmodel_index.py`` (Linux: uses /proc/self/io).
Copies fixtures/keras_tf/sm_keras to a temp folder, grows its data shard to 1 GiB (sparse: the variables keep
their offsets, the rest is a hole), then loads it three ways and prints wall time, bytes read by this process
(``rchar``) and the files opened. Not a unit test: numbers depend on the machine.
"""

from __future__ import annotations

import builtins
import os
import shutil
import tempfile
import time
from pathlib import Path

from weightaudit.formats.base import LoadOptions
from weightaudit.formats.savedmodel import SAVEDMODEL_LOADER

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "keras_tf" / "sm_keras"
SHARD_BYTES = 1 << 30


def read_chars() -> int:
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))


def measure(folder: Path, options: LoadOptions) -> tuple[float, int, list[str]]:
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(Path(str(file)).name)
        return real_open(file, *args, **kwargs)

    builtins.open = spy
    try:
        before, start = read_chars(), time.perf_counter()
        loaded = SAVEDMODEL_LOADER.load(folder, folder.name, options)
        elapsed, read = time.perf_counter() - start, read_chars() - before
    finally:
        builtins.open = real_open
    assert loaded.verified and loaded.tensors, loaded.reason
    return elapsed, read, sorted(set(n for n in opened if n != "io"))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "big_savedmodel"
        shutil.copytree(FIXTURE, folder)
        shard = folder / "variables" / "variables.data-00000-of-00001"
        os.truncate(shard, SHARD_BYTES)
        graph = (folder / "saved_model.pb").stat().st_size
        index = (folder / "variables" / "variables.index").stat().st_size
        print(f"data shard {shard.stat().st_size:,} bytes; saved_model.pb {graph:,} bytes; index {index:,} bytes")
        for label, options in (("list (default)", LoadOptions()),
                               ("list + verify checksums", LoadOptions(verify_checksums=True))):
            elapsed, read, opened = measure(folder, options)
            print(f"{label:<26} {elapsed * 1000:8.1f} ms  read {read:>12,} bytes  opened {opened}")
        print("saved_model.pb is memory-mapped, so its pages are not counted in rchar.")


if __name__ == "__main__":
    main()
