"""Bounded SavedModel walks on hostile inputs, and CRC32C speed (issue 10).

Run: ``python benchmarks/bench_savedmodel.py`` (Linux: peak memory from ``resource``). Builds, in a temporary
folder, without TensorFlow:

- a 200 MB ``saved_model.pb`` of tiny nodes (18 M NodeDefs): the walk must stop at ``max_nodes`` with
  finding WA175, in seconds, never hang;
- 50 M empty meta-graphs (100 MB): stops at ``max_meta_graphs``;
- 200,000 tiny nodes (under every limit): the full linear walk;
- the same 200,000 nodes as text format (``saved_model.pbtxt``);
- a 60 MB SSTable block: CRC32C with ``google-crc32c`` vs the pure-Python fallback (the fallback timed on
  4 MB and scaled).

Prints wall time, peak RSS and the findings. Not a unit test: numbers depend on the machine.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))

import savedmodel_proto as sm  # noqa: E402

from weightaudit.formats import tensorbundle as tb  # noqa: E402
from weightaudit.formats.base import LoadOptions  # noqa: E402
from weightaudit.formats.savedmodel import SAVEDMODEL_LOADER  # noqa: E402


def tiny_node_graph(count: int) -> bytes:
    node_field = sm.encode([(1, "node", sm.node("n", "NoOp"))])
    graph = node_field * count
    meta = sm.varint(2 << 3 | 2) + sm.varint(len(graph)) + graph
    return sm.varint(2 << 3 | 2) + sm.varint(len(meta)) + meta


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(folder: Path) -> None:
    start = time.perf_counter()
    loaded = SAVEDMODEL_LOADER.load(folder, folder.name, LoadOptions())
    elapsed = time.perf_counter() - start
    facts = loaded.facts.get("saved_model", {})
    rules = sorted({f.rule_id for f in loaded.findings})
    print(f"{folder.name:<28} {elapsed:7.2f} s  peak {peak_mb():7.0f} MB  nodes {facts.get('nodes', 0):>9,}  "
          f"meta-graphs {facts.get('meta_graphs', 0):>4}  verified {loaded.verified!s:<5}  findings {rules}")


def write(root: Path, name: str, data: bytes, text: bool = False) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / ("saved_model.pbtxt" if text else "saved_model.pb")).write_bytes(data)
    return folder


def crc_speed() -> None:
    block = bytes(range(256)) * (60 * 1024 * 1024 // 256)
    start = time.perf_counter()
    fast = tb.crc32c_extend(0, block)
    fast_s = time.perf_counter() - start
    sample = block[: 4 * 1024 * 1024]
    start = time.perf_counter()
    tb._crc32c_python(0, sample)
    slow_s = (time.perf_counter() - start) * len(block) / len(sample)
    assert tb._crc32c_python(0, block[:65536]) == tb.crc32c_extend(0, block[:65536])
    print(f"CRC32C of a 60 MB block: {tb.CRC32C_BACKEND} {fast_s * 1000:.1f} ms "
          f"({len(block) / fast_s / 1e9:.1f} GB/s); pure Python ~{slow_s:.1f} s (crc {fast:#010x})")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run(write(root, "200MB_tiny_nodes", tiny_node_graph(200_000_000 // 11)))
        run(write(root, "50M_empty_meta_graphs", b"\x12\x00" * 50_000_000))
        run(write(root, "200k_tiny_nodes", tiny_node_graph(200_000)))
        model = sm.saved_model(sm.meta_graph(sm.graph([sm.node(f"n{i}", "NoOp") for i in range(200_000)])))
        run(write(root, "200k_tiny_nodes_pbtxt", sm.to_text(model).encode(), text=True))
    crc_speed()


if __name__ == "__main__":
    main()
