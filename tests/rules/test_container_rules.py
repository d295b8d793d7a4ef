"""WA426: pickles hidden in safetensors __metadata__ strings and JSON side files (raw, hex, base64)."""

from __future__ import annotations

import base64
import json
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

from weightaudit.model import Severity
from weightaudit.pipeline import RunOptions, run

PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."          # os.system("id"): never loaded
DATA_ONLY = pickle.dumps(OrderedDict(a=1), protocol=2)


def _safetensors(path: Path, metadata: dict[str, str]) -> None:
    header = json.dumps({"__metadata__": metadata, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})
    raw = header.encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * 8)


def _findings(folder: Path) -> list[tuple[str, str, Severity]]:
    report = run([str(folder)], RunOptions(command="audit", select=("WA426",)))
    return [(f.rule_id, f.path, f.severity) for f in report.findings]


def test_base64_pickle_in_safetensors_metadata_is_critical(tmp_path: Path) -> None:
    _safetensors(tmp_path / "model.safetensors", {"format": "pt", "extra": base64.b64encode(PAYLOAD).decode()})
    assert _findings(tmp_path) == [("WA426", "model.safetensors", Severity.CRITICAL)]


def test_hex_and_raw_pickles_in_json_side_files_are_critical(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "init": PAYLOAD.hex()}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"hook": PAYLOAD.decode("latin-1")}))
    found = sorted(_findings(tmp_path))
    assert found == [("WA426", "config.json", Severity.CRITICAL), ("WA426", "tokenizer_config.json", Severity.CRITICAL)]


def test_data_only_pickle_is_medium_and_ordinary_values_are_silent(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"blob": base64.b64encode(DATA_ONLY).decode(),
                                                      "name": "gAJ-not-base64", "hex": "80", "text": "hello world"}))
    _safetensors(tmp_path / "model.safetensors", {"format": "pt", "note": "gAN says hi"})
    assert _findings(tmp_path) == [("WA426", "config.json", Severity.MEDIUM)]


def test_pickle_in_shard_index_metadata_is_critical(tmp_path: Path) -> None:
    _safetensors(tmp_path / "model-00001-of-00001.safetensors", {"format": "pt"})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": 8, "note": base64.b64encode(PAYLOAD).decode()},
        "weight_map": {"w": "model-00001-of-00001.safetensors"}}))
    assert _findings(tmp_path) == [("WA426", "model.safetensors.index.json", Severity.CRITICAL)]
