"""Mutated container samples never raise out of a sniff or a load, and never leave a file verified by accident
of a crash: each mutant gives a LoadedFile (seeded, a few hundred cases; no timing asserted)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import random
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.formats.test_sevenzip import seven_zip
from weightaudit.formats import LoadOptions, read_probe, sniff

PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."


def _seeds() -> list[bytes]:
    npy = io.BytesIO()
    np.save(npy, np.arange(6, dtype=np.float32))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("pickle")
        info.size = len(PAYLOAD)
        archive.addfile(info, io.BytesIO(PAYLOAD))
    wrapper = pickle.dumps({"a": [1, 2]}, protocol=2)
    return [gzip.compress(wrapper), bz2.compress(wrapper), lzma.compress(wrapper),
            lzma.compress(wrapper, format=lzma.FORMAT_ALONE), npy.getvalue(), tar.getvalue(),
            b"\x5d" + struct.pack("<I", 0xFFFFFFFF) + b"\xff" * 8 + b"\x00" * 32,
            seven_zip({"a.pkl": PAYLOAD, "b": b"x" * 100}, encode=True)]


@pytest.mark.parametrize("seed", range(8))
def test_mutants_never_raise(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    base = _seeds()[seed]
    for case in range(40):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        if case % 5 == 0:
            data = data[: rng.randrange(1, len(data) + 1)]
        path = tmp_path / f"m{case}.pkl.gz"
        path.write_bytes(bytes(data))
        loader = sniff(read_probe(path))
        if loader is not None:
            loaded = loader.load(path, path.name, LoadOptions())
            assert loaded.verified or loaded.reason or loaded.findings
