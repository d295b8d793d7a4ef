"""The peers' security corpus (../shared/corpus/security/MANIFEST.csv) against the pickle-family loaders.

- every MALICIOUS pickle/torch/numpy/archive file gets a high or critical finding;
- no BENIGN file gets high or above;
- MALFORMED and NOT_A_MODEL files end in a clear one-line error (status error); UNSCANNABLE ones are never
  reported verified;
- running every malicious sample through the loaders and through ``weightaudit audit`` never runs its payload.

Files are used by path and never copied into the repo.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.model import FileStatus, LoadedFile, Severity

PICKLE_FAMILY = {"pytorch-zip", "torchscript", "pickle-archive", "pytorch-legacy", "numpy", "pickle"}
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".zip", ".npy", ".npz", ".7z", ".joblib"}
PEERS = ("rc_picklescan_1_0_5", "rc_modelscan_0_8_8", "rc_fickling_0_1_12", "rc_modelaudit_0_2_54")

pytestmark = pytest.mark.corpus


def _rows() -> list[dict[str, str]]:
    manifest = CORPUS / "MANIFEST.csv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as handle:
        return [row for row in csv.DictReader(handle) if Path(row["path"]).suffix.lower() in PICKLE_SUFFIXES]


ROWS = _rows()


def _load(row: dict[str, str]) -> LoadedFile | None:
    path = CORPUS / row["path"]
    if not path.exists():
        pytest.skip(f"corpus file {row['path']} missing")
    loader = sniff(read_probe(path))
    if loader is None or loader.name not in PICKLE_FAMILY:
        return None
    return loader.load(path, row["path"], LoadOptions())


def _worst(loaded: LoadedFile | None) -> Severity | None:
    if loaded is None or not loaded.findings:
        return None
    return max(f.severity for f in loaded.findings)


def _ids(label: str) -> list[dict[str, str]]:
    return [r for r in ROWS if r["expected"] == label]


@pytest.fixture(autouse=True)
def _need_corpus() -> None:
    if not ROWS:
        pytest.skip("security corpus not available")


@pytest.mark.parametrize("row", _ids("MALICIOUS"), ids=lambda r: r["path"].split("/")[-1])
def test_malicious_is_high_or_critical(row: dict[str, str]) -> None:
    loaded = _load(row)
    assert loaded is not None, "no pickle-family loader claimed a malicious pickle file"
    worst = _worst(loaded)
    assert worst is not None and worst >= Severity.HIGH, (loaded.status, loaded.reason, loaded.findings)


@pytest.mark.parametrize("row", _ids("BENIGN"), ids=lambda r: r["path"].split("/")[-1])
def test_benign_is_below_high(row: dict[str, str]) -> None:
    loaded = _load(row)
    worst = _worst(loaded)
    assert worst is None or worst < Severity.HIGH, [f.message for f in loaded.findings]
    if loaded is not None:
        assert loaded.status is FileStatus.OK, loaded.reason


@pytest.mark.parametrize("row", _ids("MALFORMED") + _ids("NOT_A_MODEL"), ids=lambda r: r["path"].split("/")[-1])
def test_malformed_and_not_a_model_are_clear_errors(row: dict[str, str]) -> None:
    loaded = _load(row)
    assert loaded is not None
    assert loaded.status is FileStatus.ERROR and not loaded.verified
    assert loaded.reason and "\n" not in loaded.reason and row["path"] in loaded.reason


@pytest.mark.parametrize("row", _ids("UNSCANNABLE"), ids=lambda r: r["path"].split("/")[-1])
def test_unscannable_is_never_verified(row: dict[str, str]) -> None:
    loaded = _load(row)
    assert loaded is not None and not loaded.verified and loaded.status is FileStatus.ERROR


def _ours_correct(row: dict[str, str]) -> bool:
    loaded = _load(row)
    worst = _worst(loaded)
    label = row["expected"]
    if label == "MALICIOUS":
        return worst is not None and worst >= Severity.HIGH
    if label == "BENIGN":
        return worst is None or worst < Severity.HIGH
    if label in ("MALFORMED", "NOT_A_MODEL", "UNSCANNABLE"):
        return loaded is not None and not loaded.verified
    return worst is not None and worst >= Severity.MEDIUM       # SUSPICIOUS: at least a warning


def _peer_correct(row: dict[str, str], column: str) -> bool:
    rc = row[column]
    label = row["expected"]
    if label in ("MALICIOUS", "SUSPICIOUS"):
        return rc == "1"
    if label == "BENIGN":
        return rc == "0"
    return rc not in ("0", "")                     # must not be reported clean


def comparison_table() -> str:
    """Markdown: files right per label, ours beside the peers' recorded exit codes."""
    labels = sorted({r["expected"] for r in ROWS})
    lines = ["| label | files | weightaudit | picklescan 1.0.5 | ModelScan 0.8.8 | fickling 0.1.12 | ModelAudit 0.2.54 |",
             "|---|---|---|---|---|---|---|"]
    totals = [0] * 6
    for label in labels:
        rows = [r for r in ROWS if r["expected"] == label]
        counts = [len(rows), sum(_ours_correct(r) for r in rows)] + [sum(_peer_correct(r, c) for r in rows) for c in PEERS]
        totals = [a + b for a, b in zip(totals, counts)]
        lines.append(f"| {label} | " + " | ".join(str(c) for c in counts) + " |")
    lines.append("| **all** | " + " | ".join(f"**{c}**" for c in totals) + " |")
    return "\n".join(lines)


def test_we_beat_every_peer_on_the_corpus() -> None:
    ours = sum(_ours_correct(r) for r in ROWS)
    for column in PEERS:
        assert ours >= sum(_peer_correct(r, column) for r in ROWS), column
    print("\n" + comparison_table())


_SIDE_EFFECT_PROBE = r"""
import builtins, os, subprocess, socket, sys, importlib
from pathlib import Path
from weightaudit.formats import LoadOptions, all_loaders, read_probe, sniff
from weightaudit.rules import all_rules
all_loaders(), all_rules()          # import everything first: dataclasses legitimately use exec at import time
import ast, base64, binascii, codecs, numpy, numpy.lib.stride_tricks, zlib
for codec in ("raw-unicode-escape", "latin-1", "utf-8", "ascii"):
    codecs.lookup(codec)
calls = []
def trap(name):
    def fail(*args, **kwargs):
        calls.append(name)
        raise RuntimeError(f"payload tried {name}")
    return fail
for mod, names in ((os, ("system", "popen", "execv", "execve", "spawnv", "fork", "remove", "unlink")),
                   (subprocess, ("Popen", "run", "call", "check_output")), (builtins, ("eval", "exec")),
                   (socket, ("socket", "create_connection"))):
    for name in names:
        if hasattr(mod, name):
            setattr(mod, name, trap(f"{mod.__name__}.{name}"))
before_modules = set(sys.modules)
for path in sys.argv[1:]:
    loader = sniff(read_probe(Path(path)))
    if loader is not None:
        loader.load(Path(path), Path(path).name, LoadOptions())
new = sorted(m for m in set(sys.modules) - before_modules
             if m.split(".")[0] in {"requests", "aiohttp", "pip", "runpy", "pty", "pdb", "bdb", "idlelib", "webbrowser",
                                    "cProfile", "profile", "timeit", "trace", "pydoc", "doctest", "lib2to3", "venv",
                                    "ensurepip", "ctypes", "dill", "cloudpickle", "http", "urllib", "ssl", "imaplib",
                                    "_osx_support", "_aix_support", "_pyrepl", "torch", "distutils", "code", "asyncio"})
print("CALLS", calls)
print("NEWMODULES", new)
"""


def test_malicious_samples_never_run(tmp_path: Path) -> None:
    paths = [str(CORPUS / r["path"]) for r in _ids("MALICIOUS") if (CORPUS / r["path"]).exists()]
    env = {**os.environ, "HOME": str(tmp_path)}
    before = set(os.listdir(tmp_path))
    done = subprocess.run([sys.executable, "-c", _SIDE_EFFECT_PROBE, *paths], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CALLS []" in done.stdout, done.stdout
    assert "NEWMODULES []" in done.stdout, done.stdout
    assert set(os.listdir(tmp_path)) == before           # nothing created in the working directory


def test_cli_audit_flags_every_malicious_sample_and_runs_nothing(tmp_path: Path) -> None:
    pytest.importorskip("weightaudit.pipeline")
    release = tmp_path / "release"
    release.mkdir()
    for row in _ids("MALICIOUS"):
        source = CORPUS / row["path"]
        if source.exists():
            shutil.copyfile(source, release / source.name)      # a temporary copy, never into the repo
    work = tmp_path / "cwd"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "weightaudit", "audit", str(release), "--format", "json"],
                          cwd=work, env={**os.environ, "HOME": str(work)}, capture_output=True, text=True, timeout=600)
    assert done.returncode in (1, 3), done.stderr[-2000:]
    assert os.listdir(work) == []
    import json
    report = json.loads(done.stdout)
    flagged = {f["path"] for f in report["findings"] if f["severity"] in ("high", "critical")}
    scanned = {f["path"] for f in report["files"]}
    assert scanned and scanned <= flagged | {p for p in scanned if not p}, sorted(scanned - flagged)
