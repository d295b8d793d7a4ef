"""Mutation fuzzing of every format (issue 10): hypothesis mutates a seed of each format and the whole pipeline
(discover -> load -> statistics -> rules) runs on every case in a forked child with a time cap (SIGALRM) and a
memory cap (RLIMIT_AS). A case fails on an internal error (WA130), a multi-line reason, an exception escaping
``run``, a hang or a blow-up.

CI runs a bounded, deterministic pass (``derandomize``, a few examples per seed: about a minute on two cores):
    pytest -m fuzz
A longer run (still deterministic unless FUZZ_RANDOM=1):
    FUZZ_EXAMPLES=2000 pytest -m fuzz tests/test_fuzz_formats.py
Every crasher found becomes a regression test in tests/test_hostile_*.py.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import struct
import traceback
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.conftest import FIXTURES  # noqa: E402

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
SECONDS_PER_CASE = int(os.environ.get("FUZZ_SECONDS", "20"))
MEMORY_PER_CASE = int(os.environ.get("FUZZ_MEMORY_MB", "1536")) << 20   # on top of what the test process maps
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize=os.environ.get("FUZZ_RANDOM") != "1",
                         suppress_health_check=list(HealthCheck))
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1, 100_000_000)


# ------------------------------------------------------------------------------------------------- seeds

def _npy() -> bytes:
    out = io.BytesIO()
    np.save(out, np.arange(24, dtype=np.float32).reshape(4, 6))
    return out.getvalue()


def _npz() -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, w=np.arange(12, dtype=np.float16), b=np.ones(3, dtype=np.int64))
    return out.getvalue()


def _shard_index() -> bytes:
    return (FIXTURES / "sharded" / "model.safetensors.index.json").read_bytes()


def _card() -> bytes:
    return b"---\nlicense: apache-2.0\ntags: &t [a, b]\nmore: *t\ndatasets: [x]\n---\n# Model\nText.\n"


def _tokenizer_config() -> bytes:
    return json.dumps({"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
                       "model_max_length": 2048, "added_tokens_decoder": {"0": {"content": "<s>"}}}).encode()


def _file(relative: str) -> Callable[[], bytes]:
    return lambda: (FIXTURES / relative).read_bytes()


# name in the release -> bytes of the seed. Each case is the seed, mutated, alone in a folder (plus, for side
# files, a small valid model so the rules that read side files run).
FILE_SEEDS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "safetensors": ("model.safetensors", _file("tiny-bert/model.safetensors")),
    "torch-zip": ("pytorch_model.bin", _file("torch/training_zip.pt")),
    "torch-legacy": ("model.pt", _file("torch/training_legacy.pt")),
    "torchscript": ("script.pt", _file("torch/torchscript.pt")),
    "npy": ("weights.npy", _npy),
    "npz": ("weights.npz", _npz),
    "keras-h5": ("model.h5", _file("keras_tf/functional.h5")),
    "keras-v3": ("model.keras", _file("keras_tf/functional.keras")),
    "gguf": ("model.gguf", _file("gguf/quantized-q8_0-q4_0.gguf")),
    "shard-index": ("model.safetensors.index.json", _shard_index),
    "config": ("config.json", _file("tiny-bert/config.json")),
    "card": ("README.md", _card),
    "tokenizer-config": ("tokenizer_config.json", _tokenizer_config),
}
SAVEDMODEL = FIXTURES / "keras_tf" / "sm_keras"
SIDE_FILE_SEEDS = {"shard-index", "config", "card", "tokenizer-config"}


# ------------------------------------------------------------------------------------------------- mutations

@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple]:
    """A short list of edits: byte flips, random runs, truncation, insertion, repeated slices, boundary ints."""
    kinds = st.sampled_from(("flip", "run", "truncate", "insert", "repeat", "integer"))
    position = st.integers(0, max(0, size - 1))
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(kinds)
        if kind == "flip":
            edits.append((kind, draw(position), draw(st.integers(0, 255))))
        elif kind == "run":
            edits.append((kind, draw(position), draw(st.binary(min_size=1, max_size=32))))
        elif kind == "truncate":
            edits.append((kind, draw(position)))
        elif kind == "insert":
            edits.append((kind, draw(position), draw(st.binary(min_size=1, max_size=64))))
        elif kind == "repeat":
            edits.append((kind, draw(position), draw(st.integers(1, 64)), draw(st.integers(2, 2000))))
        else:
            edits.append((kind, draw(position), draw(st.sampled_from(INTERESTING)), draw(st.sampled_from((4, 8)))))
    return edits


def mutate(data: bytes, edits: list[tuple]) -> bytes:
    buf = bytearray(data)
    for edit in edits:
        kind, at = edit[0], min(edit[1], len(buf))
        if kind == "flip" and at < len(buf):
            buf[at] = edit[2]
        elif kind == "run":
            buf[at:at + len(edit[2])] = edit[2]
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = edit[2]
        elif kind == "repeat":
            piece = bytes(buf[at:at + edit[2]])
            buf[at:at] = piece * edit[3]
        elif kind == "integer":
            width = edit[3]
            buf[at:at + width] = (edit[2] & (2 ** (8 * width) - 1)).to_bytes(width, "little")
    return bytes(buf)


# ------------------------------------------------------------------------------------------------- runner

def _mapped_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _check_in_child(folder: Path) -> str | None:
    """The audit of one case; None when it gave a clean verdict, else what went wrong (one line)."""
    from weightaudit.pipeline import RunOptions, run

    report = run([str(folder)], RunOptions(command="audit", stats=True, workers=1))
    internal = [f.message for f in report.findings if f.rule_id == "WA130"]
    if internal:
        return f"internal error: {internal[0]}"
    bad = [f.path for f in report.files if not f.verified and (not f.reason or "\n" in f.reason)]
    return f"unverified file without a one-line reason: {bad[0]}" if bad else None


def audit_in_child(folder: Path) -> str | None:
    """Fork; the child runs the audit under the caps and reports through a pipe. Returns the problem or None."""
    read_end, write_end = os.pipe()
    budget = _mapped_bytes() + MEMORY_PER_CASE
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        code = 0
        try:
            resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
            signal.alarm(SECONDS_PER_CASE)
            problem = _check_in_child(folder)
        except BaseException as exc:  # noqa: BLE001 - everything escaping run() is a finding of the fuzzer
            problem = f"{type(exc).__name__} escaped run(): {exc} | {traceback.format_exc()[-600:]}"
        if problem:
            os.write(write_end, problem.encode("utf-8", "replace")[:4000])
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        what = "no verdict within the time cap" if signum == signal.SIGALRM else f"killed by signal {signum}"
        return f"{what} ({SECONDS_PER_CASE} s, {MEMORY_PER_CASE >> 20} MB)"
    return message or (None if os.WEXITSTATUS(status) == 0 else f"child exited {os.WEXITSTATUS(status)}")


def _case_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "case"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    return folder


@pytest.mark.parametrize("seed", sorted(FILE_SEEDS))
def test_mutated_seed_gets_a_clean_verdict(seed: str, tmp_path: Path) -> None:
    name, build = FILE_SEEDS[seed]
    data = build()

    @FUZZ_SETTINGS
    @given(edits=mutations(len(data)))
    def case(edits: list[tuple]) -> None:
        folder = _case_folder(tmp_path, name)
        if seed in SIDE_FILE_SEEDS:
            shutil.copy(FIXTURES / "malformed" / "valid.safetensors", folder / "model.safetensors")
        (folder / name).write_bytes(mutate(data, edits))
        problem = audit_in_child(folder)
        assert problem is None, f"{seed} {edits}: {problem}"

    case()


@pytest.mark.parametrize("member", ["saved_model.pb", "variables/variables.index"])
def test_mutated_savedmodel_gets_a_clean_verdict(member: str, tmp_path: Path) -> None:
    data = (SAVEDMODEL / member).read_bytes()

    @FUZZ_SETTINGS
    @given(edits=mutations(len(data)))
    def case(edits: list[tuple]) -> None:
        folder = tmp_path / "case"
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(SAVEDMODEL, folder)
        (folder / member).write_bytes(mutate(data, edits))
        problem = audit_in_child(folder)
        assert problem is None, f"savedmodel/{member} {edits}: {problem}"

    case()


def test_the_runner_reports_a_hang_and_an_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness itself: a case that never ends or raises is a failure, not a silent pass."""
    import tests.test_fuzz_formats as me

    monkeypatch.setattr(me, "SECONDS_PER_CASE", 1)
    monkeypatch.setattr(me, "_check_in_child", lambda folder: [0 for _ in iter(int, 1)])   # never returns
    assert "no verdict within the time cap" in (audit_in_child(tmp_path) or "")
    monkeypatch.setattr(me, "_check_in_child", lambda folder: 1 / 0)
    assert "ZeroDivisionError escaped run()" in (audit_in_child(tmp_path) or "")


def test_mutations_are_applied_as_described() -> None:
    assert mutate(b"abcdef", [("flip", 0, 0x41)]) == b"Abcdef"
    assert mutate(b"abcdef", [("truncate", 2)]) == b"ab"
    assert mutate(b"abcdef", [("repeat", 1, 2, 3)]) == b"abcbcbcbcdef"
    assert mutate(b"\0" * 8, [("integer", 0, 2**64 - 1, 4)]) == b"\xff" * 4 + b"\0" * 4
    assert struct.unpack("<Q", mutate(b"\0" * 8, [("integer", 0, 2**63 - 1, 8)]))[0] == 2**63 - 1
    assert zipfile.is_zipfile(io.BytesIO(_npz()))
