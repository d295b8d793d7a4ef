"""Baselines: a versioned JSON list of finding fingerprints (rule + relative path + tensor name).

``--write-baseline FILE`` records the current findings; ``--baseline FILE`` suppresses those findings in later
runs (they are still counted as suppressed in the report), so CI fails only on new problems.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from weightaudit.errors import UsageError
from weightaudit.model import Finding

BASELINE_VERSION = 1


def read_baseline(path: Path) -> frozenset[str]:
    """The fingerprints recorded in a baseline file; UsageError (exit 2) when it is missing or invalid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read baseline ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: baseline is not valid JSON") from exc
    if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION:
        raise UsageError(f"{path}: not a weightaudit baseline (expected 'version': {BASELINE_VERSION})")
    entries = data.get("findings")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("fingerprint"), str)
                                                for e in entries):
        raise UsageError(f"{path}: baseline 'findings' must be a list of objects with a 'fingerprint'")
    return frozenset(e["fingerprint"] for e in entries)


def baseline_document(findings: Iterable[Finding]) -> dict:
    unique = {f.fingerprint: f for f in sorted(findings, key=Finding.sort_key)}
    return {
        "version": BASELINE_VERSION,
        "tool": "weightaudit",
        "findings": [
            {"fingerprint": fp, "rule_id": f.rule_id, "path": f.path, "tensor": f.tensor}
            for fp, f in sorted(unique.items(), key=lambda item: item[1].sort_key())
        ],
    }


def write_baseline(path: Path, findings: Iterable[Finding]) -> None:
    try:
        path.write_text(json.dumps(baseline_document(findings), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write baseline ({exc.strerror or exc})") from exc
