"""Issue 11: the pre-commit hook covers every weight format and template file weightaudit reads and prints only
findings (no tensor table, no summary box, no release-level openness findings).

``pre-commit try-repo`` builds the hook's virtualenv with pip, which needs a package index (setuptools and the
dependencies): offline it cannot run, so by default the hook's own entry command is run on the files pre-commit
would pass it (its ``files`` pattern applied to a scratch repository). With WEIGHTAUDIT_TEST_TRY_REPO=1 and an
index reachable, the real ``pre-commit try-repo`` runs too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURES, ROOT

HOOK = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
READ = ["model.gguf", "arr.npy", "arrays.npz", "model.onnx", "saved_model.pb", "graph.pbtxt", "tokenizer_config.json",
        "chat_template.jinja", "chat_template.json", "model.keras", "model.h5", "weights.hdf5", "model.safetensors",
        "pytorch_model.bin", "model.pt", "model.pth", "last.ckpt", "obj.pkl", "obj.pickle", "model.joblib",
        "sub/dir/MODEL.SafeTensors", "variables/variables.index", "variables/variables.data-00000-of-00001"]
NOT_READ = ["README.md", "config.json", "train.py", "notes.txt", "my_chat_template.jinja.bak"]
MALICIOUS_TEMPLATE = "{{ ''.__class__.__mro__[1].__subclasses__() }}\n"


def _selected(names: list[str]) -> list[str]:
    pattern = re.compile(HOOK["files"])
    return [n for n in names if pattern.search(n)]


def test_files_pattern_covers_every_format_and_template_file() -> None:
    assert _selected(READ) == READ
    assert _selected(NOT_READ) == []
    assert HOOK["language"] == "python" and HOOK["pass_filenames"] is True


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git missing")
    repo = tmp_path / "scratch"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copy(FIXTURES / "tiny-bert" / "model.safetensors", repo / "model.safetensors")
    (repo / "README.md").write_text("# no licence, no card metadata: openness findings would fire on a folder\n")
    return repo


def _run_hook(repo: Path, files: list[str]) -> subprocess.CompletedProcess:
    entry = shlex.split(HOOK["entry"])
    executable = Path(sys.executable).parent / entry[0]
    command = [str(executable) if executable.exists() else entry[0], *entry[1:], *_selected(files)]
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env, timeout=300)


def test_hook_entry_passes_a_clean_commit_and_prints_only_the_verdict(scratch: Path) -> None:
    done = _run_hook(scratch, ["model.safetensors", "README.md"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["No findings.", "PASS (exit 0): nothing at or above high"]
    assert done.stderr == ""


def test_hook_entry_refuses_a_malicious_gguf_template_with_findings_only(scratch: Path) -> None:
    shutil.copy(FIXTURES / "gguf" / "malicious-template.gguf", scratch / "model.gguf")
    (scratch / "chat_template.jinja").write_text(MALICIOUS_TEMPLATE)
    done = _run_hook(scratch, ["model.safetensors", "model.gguf", "chat_template.jinja", "README.md"])
    assert done.returncode == 1
    out = done.stdout
    assert re.search(r"critical\W+WA460\W+model\.gguf", out) and re.search(r"WA460\W+chat_template", out)
    for absent in ("Tensors", "Verdict", "Parameters", "WA5", "encoder.layer"):
        assert absent not in out, absent
    assert out.rstrip().splitlines()[-1].startswith("FAIL (exit 1)")


@pytest.mark.skipif(os.environ.get("WEIGHTAUDIT_TEST_TRY_REPO") != "1",
                    reason="pre-commit try-repo installs the hook with pip: needs a package index "
                           "(set WEIGHTAUDIT_TEST_TRY_REPO=1 where one is reachable)")
def test_pre_commit_try_repo(scratch: Path, tmp_path: Path) -> None:
    pre_commit = Path(sys.executable).parent / "pre-commit"
    if not pre_commit.exists():
        pytest.skip("pre-commit missing (pip install -e '.[test]')")
    shutil.copy(FIXTURES / "gguf" / "malicious-template.gguf", scratch / "model.gguf")
    subprocess.run(["git", "add", "."], cwd=scratch, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    done = subprocess.run([str(pre_commit), "try-repo", str(ROOT), HOOK["id"], "--all-files"], cwd=scratch,
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "WA460" in done.stdout and "model.gguf" in done.stdout and "Tensors" not in done.stdout
