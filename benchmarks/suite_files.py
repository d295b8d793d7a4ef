"""Generated inputs for the benchmark suite (``python -m benchmarks``): written once, streamed, re-used.

Every file lives under ``benchmarks/out/suite/<size>`` (gitignored) and is regenerated only when missing.
Values: normal(0, 0.02) like trained matrices; BF16 by truncation of float32, F16 by numpy's cast.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

MIB = 1 << 20
_ITEMSIZE = {"F32": 4, "BF16": 2, "F16": 2}


def _values(dtype: str, count: int, rng: np.random.Generator) -> bytes:
    data = rng.standard_normal(count, dtype=np.float32)
    data *= 0.02
    if dtype == "F32":
        return data.astype("<f4").tobytes()
    if dtype == "F16":
        return data.astype("<f2").tobytes()
    return data.view("<u2")[1::2].tobytes()     # the high half of each little-endian word: 7x faster than >> 16


def write_safetensors(path: Path, specs: list[tuple[str, str, int]], seed: int = 0) -> Path:
    """A safetensors file of 1-D tensors (name, dtype, elements), values streamed tensor by tensor."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, count in specs:
        nbytes = count * _ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": [count], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        for _, dtype, count in specs:
            done = 0
            while done < count:          # 16 Mi elements at a time: little memory for any size
                step = min(count - done, 16 * MIB)
                handle.write(_values(dtype, step, rng))
                done += step
    tmp.replace(path)
    return path


def write_pooled(path: Path, specs: list[tuple[str, str, int]], seed: int = 0, pool_bytes: int = 64 * MIB) -> Path:
    """Like write_safetensors for BF16 tensors, but fast for many GiB: each tensor is a window of one random pool.

    The pool (normal(0, 0.02) BF16, ``pool_bytes``) is drawn once; every tensor starts at its own random offset in
    it and wraps around, so tensors of less than the pool's size differ (the duplicate check sees distinct
    tensors) and writing is bound by the disk, not the generator. Memory: the pool, whatever the file size.
    """
    assert all(dtype == "BF16" and count * 2 < pool_bytes for _, dtype, count in specs), "BF16 tensors < pool"
    rng = np.random.default_rng(seed)
    pool = memoryview(_values("BF16", pool_bytes // 2, rng))
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, count in specs:
        header[name] = {"dtype": dtype, "shape": [count], "data_offsets": [offset, offset + count * 2]}
        offset += count * 2
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        for _, _, count in specs:
            start, left = int(rng.integers(0, len(pool) // 2)) * 2, count * 2
            while left:
                step = min(left, len(pool) - start)
                handle.write(pool[start:start + step])
                start, left = 0, left - step
    tmp.replace(path)
    return path


def sized_file(root: Path, total: int) -> Path:
    """A BF16 file of ``total`` bytes of 32 MiB tensors for the RSS sweep, written from a pool (disk-bound)."""
    return ensure(root / "rss" / f"{total // MIB}MiB.safetensors", lambda p: write_pooled(p, matrices(total, "BF16")))


def matrices(total_bytes: int, dtype: str, tensor_bytes: int = 32 * MIB, prefix: str = "w") -> list[tuple[str, str, int]]:
    """Tensors of ``tensor_bytes`` (the last one shorter) adding up to ``total_bytes``."""
    specs, left, i = [], total_bytes, 0
    while left > 0:
        nbytes = min(left, tensor_bytes)
        specs.append((f"{prefix}.{i}", dtype, nbytes // _ITEMSIZE[dtype]))
        left -= nbytes
        i += 1
    return specs


def ensure(path: Path, make) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    return path


def dtype_file(root: Path, dtype: str, total: int) -> Path:
    if dtype == "BF16":                 # the same tensors, seed and bytes as one_file: write them once
        return one_file(root, total)
    return ensure(root / f"kernel_{dtype}.safetensors", lambda p: write_safetensors(p, matrices(total, dtype)))


def one_file(root: Path, total: int) -> Path:
    return ensure(root / "one" / "model.safetensors", lambda p: write_safetensors(p, matrices(total, "BF16")))


def shards(root: Path, total: int, count: int = 200) -> tuple[Path, Path]:
    """``count`` shards of one tensor each, and one file holding the same tensors (same bytes, same names)."""
    specs = matrices(total, "BF16", tensor_bytes=max(total // count, 64 * 1024))
    folder = root / f"shards{count}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        weight_map = {}
        for i, spec in enumerate(specs):
            name = f"model-{i + 1:05d}-of-{len(specs):05d}.safetensors"
            write_safetensors(folder / name, [spec], seed=i)
            weight_map[spec[0]] = name
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        (folder / "done").write_text("")
    single = ensure(root / f"one_of_{count}" / "model.safetensors", lambda p: write_safetensors(p, specs))
    return folder, single


def many_tensors(root: Path, count: int = 20_000) -> Path:
    """``count`` small F32 tensors (1,024 elements each: 4 KiB), like a huge MoE's norms and biases."""
    return ensure(root / f"tensors{count}" / "model.safetensors",
                  lambda p: write_safetensors(p, [(f"t.{i}", "F32", 1024) for i in range(count)]))


def hdf5_and_safetensors(root: Path, total: int) -> tuple[Path, Path]:
    """The same F32 tensors as one HDF5 file (contiguous, uncompressed datasets) and one safetensors file."""
    specs = matrices(total, "F32")
    st = ensure(root / "same_bytes" / "model.safetensors", lambda p: write_safetensors(p, specs, seed=7))

    def make_h5(path: Path) -> None:
        import h5py

        rng = np.random.default_rng(7)
        with h5py.File(path, "w") as handle:
            for name, _, count in specs:
                handle.create_dataset(name, data=np.frombuffer(_values("F32", count, rng), "<f4"))

    h5 = ensure(root / "same_bytes_h5" / "model.h5", make_h5)
    return h5, st


def tiny(root: Path) -> Path:
    """A 16 KiB safetensors file (start-up cost)."""
    return ensure(root / "tiny.safetensors", lambda p: write_safetensors(p, [("w", "F32", 4096 - 32)]))
