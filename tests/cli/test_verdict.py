"""Issue 11: one verdict from which the exit code, the last text line, JSON ``summary.verdict``, the Markdown heading
and the SARIF invocation are derived; ``inspect`` fails at high like ``audit``; the summary box shows the verdict
first; the -o extension picks the format; a file target is judged as that file; several releases, several
reports; consistent options; human numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, invoke, invoke_json

TINY = FIXTURES / "tiny-bert"
EXIT_OF = {"pass": 0, "fail": 1, "incomplete": 3}


def _last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def _unverifiable_targets(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x04onnx")
    keras = tmp_path / "model.keras"
    keras.write_bytes(b"PK\x03\x04 not really a keras zip")
    return {"empty folder": empty, "text file": text, "onnx file": onnx, "keras file": keras}


@pytest.mark.parametrize("command", ["audit", "inspect"])
@pytest.mark.parametrize("what", ["empty folder", "text file", "onnx file", "keras file"])
def test_last_line_agrees_with_the_exit_code(runner, tmp_path: Path, command: str, what: str) -> None:
    target = _unverifiable_targets(tmp_path)[what]
    text = invoke(runner, command, target, "--fail-on", "never")
    code, report = invoke_json(runner, command, target, "--fail-on", "never")
    verdict = report["summary"]["verdict"]
    assert text.exit_code == code == EXIT_OF[verdict] == 3
    assert _last_line(text.stdout).startswith(f"{verdict.upper()} (exit {code})")
    assert "PASS" not in text.stdout


@pytest.mark.parametrize("what", ["empty folder", "text file", "onnx file", "keras file"])
def test_every_output_format_carries_the_same_verdict(runner, tmp_path: Path, what: str) -> None:
    target = _unverifiable_targets(tmp_path)[what]
    outputs = {fmt: invoke(runner, "audit", target, "--no-stats", "-f", fmt) for fmt in ("json", "markdown", "sarif")}
    codes = {r.exit_code for r in outputs.values()}
    verdict = json.loads(outputs["json"].stdout)["summary"]["verdict"]
    assert codes == {EXIT_OF[verdict]}
    assert outputs["markdown"].stdout.splitlines()[0].endswith(f"— {verdict.upper()}")
    invocation = json.loads(outputs["sarif"].stdout)["runs"][0]["invocations"][0]
    assert invocation["exitCode"] == EXIT_OF[verdict] and invocation["properties"]["verdict"] == verdict
    assert invocation["executionSuccessful"] is (verdict != "incomplete")


def _summary_rows(stdout: str) -> list[str]:
    return [line.strip("|+ ").strip() for line in stdout.splitlines()[1:4]]


def test_inspect_fails_on_a_truncated_safetensors(runner, tmp_path: Path) -> None:
    truncated = tmp_path / "model.safetensors"
    data = (TINY / "model.safetensors").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = invoke(runner, "inspect", truncated)
    assert result.exit_code == 1
    assert _summary_rows(result.stdout)[0].startswith("Verdict     BROKEN: model.safetensors:")
    assert "Verified    yes" not in result.stdout     # the old box said all was well, the finding further down
    assert _last_line(result.stdout).startswith("FAIL (exit 1)")


def test_inspect_fails_when_the_index_names_a_missing_shard(runner, tmp_path: Path) -> None:
    release = tmp_path / "sharded"
    shutil.copytree(FIXTURES / "sharded", release)
    (release / "model-00002-of-00003.safetensors").unlink()
    code, report = invoke_json(runner, "inspect", release)
    assert code == 1 and report["summary"]["verdict"] == "fail"
    assert [(f["rule_id"], f["severity"]) for f in report["findings"]] == [("WA125", "high")]
    text = invoke(runner, "inspect", release)
    assert _summary_rows(text.stdout)[0].startswith("Verdict     BROKEN:")


def test_unsafe_pickle_headline_says_unsafe(runner) -> None:
    pickles = sorted((FIXTURES / "torch").glob("*.pt"))
    for path in pickles:
        code, report = invoke_json(runner, "inspect", path, "--fail-on", "critical")
        if code == 1 and any(f["rule_id"].startswith("WA4") and f["severity"] == "critical"
                             for f in report["findings"]):
            first = _summary_rows(invoke(runner, "inspect", path, "--fail-on", "critical").stdout)[0]
            assert first.startswith("Verdict     UNSAFE:")
            return
    pytest.skip("no fixture with a critical code-execution finding")


def test_clean_release_passes_everywhere(runner) -> None:
    result = invoke(runner, "audit", TINY, "--no-stats")
    assert result.exit_code == 0 and _last_line(result.stdout).startswith("PASS (exit 0)")
    assert _summary_rows(result.stdout)[0].startswith("Verdict     OK:")


def test_output_format_follows_the_extension(runner, tmp_path: Path) -> None:
    for name, check in (("r.sarif", lambda t: json.loads(t)["version"] == "2.1.0"),
                        ("r.json", lambda t: json.loads(t)["schema_version"] == "1"),
                        ("r.md", lambda t: t.startswith("# weightaudit audit")),
                        ("r.txt", lambda t: "Verdict" in t and "PASS (exit 0)" in t)):
        out = tmp_path / name
        result = invoke(runner, "audit", TINY, "--no-stats", "-o", out)
        assert result.exit_code == 0 and check(out.read_text()), name
    explicit = tmp_path / "forced.sarif"
    assert invoke(runner, "audit", TINY, "--no-stats", "-f", "json", "-o", explicit).exit_code == 0
    assert json.loads(explicit.read_text())["schema_version"] == "1"     # -f wins over the extension


@pytest.mark.parametrize("command", ["audit", "inspect", "scorecard"])
def test_unknown_output_extension_is_a_usage_error(runner, tmp_path: Path, command: str) -> None:
    out = tmp_path / "report.xml"
    result = invoke(runner, command, TINY, "-o", out)
    assert result.exit_code == 2 and "cannot tell the format" in result.stderr and not out.exists()


def test_interrupt_exits_130_and_leaves_no_output_file(runner, tmp_path: Path, monkeypatch) -> None:
    import weightaudit.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(weightaudit.pipeline, "run", interrupted)
    out = tmp_path / "report.json"
    result = invoke(runner, "audit", TINY, "-o", out)
    assert result.exit_code == 130 and not out.exists() and list(tmp_path.iterdir()) == []


def test_output_file_is_never_left_half_written(tmp_path: Path, monkeypatch) -> None:
    from weightaudit.cli import common
    from weightaudit.cli.signals import Interrupted

    out = tmp_path / "report.json"
    out.write_text("previous\n")

    def broken_replace(src, dst):
        raise Interrupted(15)

    monkeypatch.setattr(common.os, "replace", broken_replace)
    with pytest.raises(Interrupted):
        common.write_output("new report", str(out))
    assert out.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_file_target_is_judged_as_that_file(runner, tmp_path: Path) -> None:
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    shutil.copy(TINY / "model.safetensors", folder / "model.safetensors")   # no card, no licence beside it
    target = folder / "model.safetensors"
    result = invoke(runner, "audit", target, "--no-stats", "-f", "json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["target"] == str(target)
    assert [f["rule_id"] for f in report["findings"] if f["rule_id"].startswith("WA5")] == []
    assert str(target) in result.stderr and f"in {folder.parent}\n" not in result.stderr
    folder_report = json.loads(invoke(runner, "audit", folder, "--no-stats", "-f", "json").stdout)
    assert any(f["rule_id"].startswith("WA5") for f in folder_report["findings"])   # the folder is a release


@pytest.fixture
def two_releases(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(TINY, first)
    shutil.copytree(FIXTURES / "defects", second)
    return first, second


@pytest.mark.parametrize("command", ["audit", "inspect", "scorecard"])
def test_several_releases_give_several_reports(runner, two_releases, command: str) -> None:
    first, second = two_releases
    result = invoke(runner, command, first, second, "-f", "json")
    document = json.loads(result.stdout)
    assert [r["target"] for r in document["reports"]] == [str(first), str(second)]
    if command != "scorecard":
        assert [r["summary"]["files"] for r in document["reports"]] == [1, 1]
        verdicts = [r["summary"]["verdict"] for r in document["reports"]]
        assert document["verdict"] == ("fail" if "fail" in verdicts else verdicts[0])
        assert result.exit_code == EXIT_OF[document["verdict"]]
    single = json.loads(invoke(runner, command, first, "-f", "json").stdout)
    assert "reports" not in single and single["target"] == str(first)


def test_several_reports_validate_against_the_schema(runner, two_releases) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    document = json.loads(invoke(runner, "audit", *two_releases, "--no-stats", "-f", "json").stdout)
    jsonschema.Draft202012Validator(schema).validate(document)
    assert all(r["summary"]["verdict"] in EXIT_OF for r in document["reports"])


def test_several_releases_text_ends_with_the_combined_verdict(runner, two_releases) -> None:
    result = invoke(runner, "audit", *two_releases)
    assert result.exit_code == 1 and _last_line(result.stdout).startswith("FAIL (exit 1): 2 releases")
    assert result.stdout.count("Verdict ") == 2


def test_scorecard_has_quiet_and_inspect_has_workers_and_progress(runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("release: {name: x}\n")
    noisy = invoke(runner, "scorecard", TINY, "--min-score", "9")
    quiet = invoke(runner, "scorecard", TINY, "--min-score", "9", "-q")
    assert noisy.exit_code == quiet.exit_code == 1 and noisy.stderr and quiet.stderr == ""
    result = invoke(runner, "inspect", TINY, "--stats", "--workers", "1", "--progress")
    assert result.exit_code == 0 and "computing statistics" in result.stderr
    assert invoke(runner, "inspect", TINY, "--stats", "-q").stderr == ""


@pytest.mark.parametrize("command", ["audit", "inspect", "scorecard"])
def test_shared_options_have_the_same_help(runner, command: str) -> None:
    from weightaudit.cli import cli

    text = invoke(runner, command, "--help").stdout
    for option in ("-f, --format", "-o, --output", "-q, --quiet", "--color / --no-color"):
        assert option in text, (command, option)
    if command != "scorecard":
        for option in ("--fail-on", "--workers", "--progress / --no-progress"):
            assert option in text, (command, option)
    assert cli is not None


def test_inspect_help_promises_only_columns_that_exist(runner) -> None:
    help_text = invoke(runner, "inspect", "--help").stdout
    assert "bytes" not in help_text.lower().replace("\n", " ").split("show every tensor")[1][:120]
    table = invoke(runner, "inspect", TINY).stdout
    header = next(line for line in table.splitlines() if "Tensor" in line and "DType" in line)
    assert "(name, dtype, shape, parameters;" in help_text.replace("\n", " ").replace("  ", " ")
    assert [c.strip() for c in header.strip("|").split("|")] == ["Tensor", "DType", "Shape", "Params", "Count"]


def test_human_numbers_as_the_hub_shows_them() -> None:
    from weightaudit.render.common import human_count

    assert [human_count(n) for n in (999_999, 22_713_216, 8_030_261_248, 56_256, 999, 1_100_048_384)] == \
        ["1M", "22.7M", "8.03B", "56.3K", "999", "1.1B"]


def test_repeated_per_file_lines_collapse(runner, tmp_path: Path) -> None:
    release = tmp_path / "shards"
    release.mkdir()
    sample = next(p for p in sorted((FIXTURES / "torch").glob("*.pt"))
                  if json.loads(invoke(runner, "inspect", p, "-f", "json", "--fail-on", "never").stdout)
                  ["files"][0].get("torch_load"))
    for i in range(12):
        shutil.copy(sample, release / f"pytorch_model-{i:05d}.bin")
    result = invoke(runner, "inspect", release, "--fail-on", "never")
    lines = [line for line in result.stdout.splitlines() if "torch.load" in line and "weights_only" in line]
    assert len(lines) == 1 and "12 files:" in lines[0]
    markdown = invoke(runner, "inspect", release, "--fail-on", "never", "-f", "markdown").stdout
    assert len([line for line in markdown.splitlines() if line.startswith("- ") and "weights_only" in line]) == 1
    assert "- 12 files: torch.load" in markdown


@pytest.mark.parametrize("columns", ["80", "120", "200"])
def test_names_are_printed_verbatim_never_as_markup(runner, tmp_path: Path, monkeypatch, columns: str) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    monkeypatch.setenv("COLUMNS", columns)
    release = tmp_path / "release"
    release.mkdir()
    name = "w [v2] [bold red]x[red].safetensors"
    shutil.copy(FIXTURES / "malformed" / "WA106-duplicate-key.safetensors", release / name)
    save_file({"layer.[red]weight[/red]": np.zeros(2, dtype=np.float32)}, str(release / "t.safetensors"))
    text = invoke(runner, "audit", release, "--no-stats").stdout
    flat = "".join(line.strip("|+ ") for line in text.splitlines())
    assert flat.count(name) >= 2 or text.count(name) >= 2      # verdict row and findings, whatever the layout
    assert "[red]weight[/red]" in text


def test_also_write_renders_the_same_run_in_more_formats(runner, tmp_path: Path) -> None:
    sarif, report, summary = tmp_path / "r.sarif", tmp_path / "r.json", tmp_path / "summary.md"
    result = invoke(runner, "audit", TINY, "--no-stats", "-o", sarif, "--also-write", report, "--also-write", summary)
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(sarif.read_text())["runs"][0]["invocations"][0]["exitCode"] == 0
    assert json.loads(report.read_text())["summary"]["verdict"] == "pass"
    assert summary.read_text().splitlines()[0].endswith("— PASS")
    bad = invoke(runner, "audit", TINY, "--no-stats", "--also-write", tmp_path / "r.xml")
    assert bad.exit_code == 2 and not (tmp_path / "r.xml").exists()
