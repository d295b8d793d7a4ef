"""Generates a fleet of tiny releases of five kinds (clean, malicious pickle, NaN tensors, no licence, a
malformed file), each a few hundred bytes, in milliseconds. The malicious pickle is built from opcode bytes by
hand and is never loaded."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

KINDS = ("clean", "pickle", "nan", "nolicence", "malformed")
LICENSED_CARD = "---\nlicense: apache-2.0\n---\n# {name}\n\nA tiny test release.\n"
UNLICENSED_CARD = "# {name}\n\nA tiny test release with no licence.\n"
# GLOBAL posix.system, a one-string tuple, REDUCE: a full unpickle would run `id`.
MALICIOUS_PICKLE = b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03."


def safetensors_bytes(values: np.ndarray) -> bytes:
    data = values.astype("<f4").tobytes()
    header = {"weight": {"dtype": "F32", "shape": list(values.shape), "data_offsets": [0, len(data)]}}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write_release(folder: Path, kind: str, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    rows = 2 + seed % 5
    values = np.random.default_rng(seed).normal(0, 0.02, size=(rows, 4)).astype("f4")
    card = UNLICENSED_CARD if kind == "nolicence" else LICENSED_CARD
    (folder / "README.md").write_text(card.format(name=name), encoding="utf-8")
    if kind == "pickle":
        (folder / "model.pkl").write_bytes(MALICIOUS_PICKLE)
        return folder
    if kind == "nan":
        values[0, 0] = np.nan
    blob = safetensors_bytes(values)
    if kind == "malformed":
        blob = struct.pack("<Q", 1 << 40) + blob[8:]      # header length far past the end of the file
    (folder / "model.safetensors").write_bytes(blob)
    return folder


def make_fleet(root: Path, count: int) -> list[Path]:
    """``count`` releases under ``root``, kinds in rotation: root/r000-clean, root/r001-pickle, ..."""
    return [write_release(root / f"r{i:03d}-{KINDS[i % len(KINDS)]}", KINDS[i % len(KINDS)], i)
            for i in range(count)]


def cache_repo(release: Path, root: Path, repo_id: str, commits: tuple[str, ...], main: str | None) -> Path:
    """Lay ``release`` out as huggingface_hub does (blobs by hash, snapshot links into blobs, refs/main), once
    per commit."""
    import hashlib
    import os

    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for commit in commits:
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for item in sorted(release.iterdir()):
            data = item.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            os.symlink(os.path.relpath(blob, snapshot), snapshot / item.name)
    if main is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(main)
    return repo
