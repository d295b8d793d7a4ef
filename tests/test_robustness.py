"""Hostile input: truncated and bit-flipped copies of every kind of fixture must give a clean verdict —
findings or an unverified file with a one-line reason — never an internal error, a traceback or a hang."""

from __future__ import annotations

import os
import random
import shutil
import signal
from pathlib import Path

import pytest

from weightaudit.pipeline import RunOptions, run

from tests.conftest import FIXTURES

SEEDS = [
    FIXTURES / "tiny-bert" / "model.safetensors",
    FIXTURES / "torch" / "training_zip.pt",
    FIXTURES / "torch" / "training_legacy.pt",
    FIXTURES / "torch" / "protocol4_zip.pt",
    FIXTURES / "torch" / "torchscript.pt",
    FIXTURES / "keras_tf" / "functional.keras",
    FIXTURES / "keras_tf" / "functional.h5",
    FIXTURES / "keras_tf" / "sequential.weights.h5",
    FIXTURES / "gguf" / "quantized-q8_0-q4_0.gguf",
    FIXTURES / "torch" / "all_dtypes_legacy.pt",
]
SAVEDMODEL = FIXTURES / "keras_tf" / "sm_keras"
MUTATIONS_PER_SEED = int(os.environ.get("WEIGHTAUDIT_FUZZ_CASES", "12"))  # more: a longer local run
SECONDS_PER_CASE = 20


def _mutants(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    out = []
    for i in range(MUTATIONS_PER_SEED):
        kind = i % 3
        if kind == 0:
            cut = rng.randrange(0, len(data))
            out.append((f"truncate@{cut}", data[:cut]))
        elif kind == 1:
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(0, len(buf))
                buf[pos] = rng.randrange(256)
            out.append(("flip", bytes(buf)))
        else:
            start = rng.randrange(0, max(1, min(len(data), 4096)))
            buf = bytearray(data)
            buf[start:start + 16] = bytes(rng.randrange(256) for _ in range(16))
            out.append((f"smash@{start}", bytes(buf)))
    return out


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Timeout()


def _audit_one(folder: Path) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS_PER_CASE)
    try:
        report = run([str(folder)], RunOptions(command="audit", stats=True, workers=1))
    finally:
        signal.alarm(0)
    internal = [f for f in report.findings if f.rule_id == "WA130"]
    assert internal == [], internal
    for loaded in report.files:
        if not loaded.verified:
            assert loaded.reason and "\n" not in loaded.reason


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mutated_files_never_crash_or_hang(seed: Path, tmp_path: Path) -> None:
    rng = random.Random(seed.name)
    data = seed.read_bytes()
    for i, (label, mutant) in enumerate(_mutants(data, rng)):
        folder = tmp_path / f"{i}_{label.replace('@', '_')}"
        folder.mkdir()
        (folder / seed.name).write_bytes(mutant)
        try:
            _audit_one(folder)
        except _Timeout:
            pytest.fail(f"{seed.name} {label}: no verdict within {SECONDS_PER_CASE} s")
        shutil.rmtree(folder)


def test_mutated_savedmodel_never_crashes(tmp_path: Path) -> None:
    rng = random.Random("savedmodel")
    for target in ("saved_model.pb", "variables/variables.index"):
        data = (SAVEDMODEL / target).read_bytes()
        for i, (label, mutant) in enumerate(_mutants(data, rng)[:6]):
            folder = tmp_path / f"{target.replace('/', '_')}_{i}_{label.replace('@', '_')}"
            shutil.copytree(SAVEDMODEL, folder)
            (folder / target).write_bytes(mutant)
            _audit_one(folder)
