"""Start-up stays lazy (issue 15): ``inspect`` of a small safetensors file, or of a release folder holding one,
imports neither the heavy dependencies (numpy, h5py, jinja2, license-expression, dask, PyYAML) nor weightaudit's
own heavy machinery (the pickle machine, the openness scorer, the SavedModel reader, the statistics engine), and
``--help`` imports no command at all. Checked by the modules a fresh interpreter holds afterwards, not by timing."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("numpy", "h5py", "jinja2", "license_expression", "dask", "yaml", "tomllib", "onnx", "torch",
         "weightaudit.formats.pickle_vm", "weightaudit.formats.pickle_machine", "weightaudit.rules.pickle_rules",
         "weightaudit.rules.pickle_allowlist", "weightaudit.formats.torch_pickle", "weightaudit.formats.keras_h5",
         "weightaudit.formats.onnx", "weightaudit.formats.savedmodel", "weightaudit.formats.savedmodel_graph",
         "weightaudit.openness.scorecard", "weightaudit.openness.licenses", "weightaudit.openness.knowledge",
         "weightaudit.templates.parse", "weightaudit.stats", "weightaudit.rules.keras_rules",
         "weightaudit.formats.keras_config")
COMMANDS = ("weightaudit.api", "weightaudit.pipeline", "weightaudit.rules", "weightaudit.report", "rich")

_CHILD = """
import json, sys
from weightaudit.cli import main
out, sys.argv = sys.argv[1], ["weightaudit", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
with open(out, "w") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""


def _safetensors(path: Path) -> Path:
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "F32", "shape": [4064], "data_offsets": [0, 16256]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16256))
    return path


def _modules_after(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", _CHILD, str(out), *args], check=False, capture_output=True, timeout=120,
                   cwd=tmp_path)   # weightaudit as installed, as the console script finds it
    result = json.loads(out.read_text())
    return result["code"], set(result["modules"])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_inspect_of_a_small_safetensors_file_imports_nothing_heavy(tmp_path: Path, fmt: str) -> None:
    code, modules = _modules_after(tmp_path, "inspect", "-f", fmt, str(_safetensors(tmp_path / "small.safetensors")))
    assert code == 0
    assert "weightaudit.formats.safetensors" in modules
    assert sorted(modules.intersection(HEAVY)) == []


def test_inspect_of_a_release_folder_imports_nothing_heavy(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    _safetensors(release / "model.safetensors")
    code, modules = _modules_after(tmp_path, "inspect", str(release))
    assert code == 0
    assert sorted(modules.intersection(HEAVY)) == []


def test_a_json_side_file_is_sniffed_without_the_pickle_and_hdf5_loaders(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    _safetensors(release / "model.safetensors")
    (release / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 4}))
    code, modules = _modules_after(tmp_path, "inspect", str(release))
    assert code == 0
    assert sorted(modules.intersection(set(HEAVY) - {"yaml"})) == []   # PyYAML: the side-file check's error type


@pytest.mark.parametrize("args", [("--help",), ("inspect", "--help"), ("audit", "--help"), ("--version",)])
def test_help_imports_no_command_machinery(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, modules = _modules_after(tmp_path, *args)
    assert code == 0
    assert sorted(modules.intersection(HEAVY + COMMANDS)) == []
