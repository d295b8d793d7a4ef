"""Differential test: our safetensors header verdict (would the reference loader accept the file?) agrees with the
reference loader itself — ``safetensors.safe_open`` reading every tensor, and ``safetensors.numpy.load_file`` — on
every committed fixture and on mutated headers.

Choice (issue 12): ``safetensors`` is a *test* dependency, not a runtime one. weightaudit never loads weights
with a third-party loader; it parses the header itself and is stricter than the reference. The reference crate
enforces the rules in ``REFERENCE_REFUSES``; the others (duplicate keys WA106, unknown tensor fields WA116,
non-canonical header WA117, misalignment WA118, metadata format WA119) are our own flags on files the reference
accepts — parser differentials and hygiene, not refusals. Loading a safetensors file never executes code, so
calling the reference loader on files these tests built is safe.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from weightaudit.formats.safetensors import parse  # noqa: E402
from weightaudit.model import FileStatus  # noqa: E402

from tests.conftest import FIXTURES  # noqa: E402

REFERENCE_REFUSES = frozenset({"WA101", "WA102", "WA103", "WA104", "WA105", "WA107", "WA108", "WA109", "WA110",
                               "WA111", "WA112", "WA113", "WA114", "WA115"})
OURS_ONLY = frozenset({"WA106", "WA116", "WA117", "WA118", "WA119"})
FIXTURE_FILES = sorted(FIXTURES.rglob("*.safetensors"))


def our_verdict(path: Path) -> bool:
    """True when our parser says the reference loader would accept the file."""
    loaded = parse(path, path.name)
    return loaded.status is FileStatus.OK and not {f.rule_id for f in loaded.findings} & REFERENCE_REFUSES


def reference_accepts(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():
                handle.get_tensor(key)
        load_file(str(path))
    except Exception:  # noqa: BLE001 - any refusal (SafetensorError, ValueError ...) counts
        return False
    return True


def test_every_safetensors_rule_is_classified() -> None:
    from weightaudit.rules import all_rules

    header_rules = {r.id for r in all_rules() if "safetensors" in r.tags}
    assert REFERENCE_REFUSES | OURS_ONLY == header_rules and not REFERENCE_REFUSES & OURS_ONLY


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_verdict_agrees_with_the_reference_loader_on_every_fixture(path: Path) -> None:
    assert our_verdict(path) == reference_accepts(path)


def test_both_verdicts_occur_among_the_fixtures() -> None:
    verdicts = {reference_accepts(p) for p in FIXTURE_FILES}
    assert verdicts == {True, False} and len(FIXTURE_FILES) >= 20


def test_verdict_agrees_on_mutated_headers(tmp_path: Path) -> None:
    base = (FIXTURES / "malformed" / "valid.safetensors").read_bytes()
    header_end = 8 + struct.unpack("<Q", base[:8])[0]
    rng = np.random.default_rng(2026)
    target = tmp_path / "mutated.safetensors"
    outcomes = set()
    for index in range(300):
        mutated = bytearray(base)
        for position in rng.integers(0, header_end + (16 if index % 3 == 0 else 0), int(rng.integers(1, 3))):
            if position < len(mutated):
                mutated[position] = int(rng.integers(32, 127)) if position >= 8 else int(rng.integers(0, 256))
        target.write_bytes(bytes(mutated))
        ours, theirs = our_verdict(target), reference_accepts(target)
        assert ours == theirs, bytes(mutated[:header_end])
        outcomes.add(theirs)
    assert outcomes == {True, False}
