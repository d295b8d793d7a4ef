"""The index-style profile (availability / documentation / access, open-partial-closed with evidence) in JSON,
text and Markdown, and several scorecards side by side; compute and lineage read from card sentences."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from click.testing import CliRunner

from weightaudit.cli.scorecard import scorecard_command
from weightaudit.discover import discover
from weightaudit.openness import build_scorecard, render_markdown, render_text, scorecard_to_dict
from weightaudit.openness.profile import render_comparison

CARDS = Path(__file__).resolve().parents[1] / "data" / "model_cards"
DIMENSIONS = ["training code", "base-model weights", "end-model weights", "training data", "licences",
              "code documentation", "architecture", "preprint", "paper", "model card", "datasheet", "package", "API"]


def _folder(tmp_path: Path, name: str, card: str | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    if card is None:
        shutil.copy(CARDS / name / "README.md", folder / "README.md")
    else:
        (folder / "README.md").write_text(card, "utf-8")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return folder


def _levels(sc) -> dict[str, str]:
    return {item.dimension: item.level for item in sc.profile}


def test_profile_dimensions_and_levels(tmp_path: Path) -> None:
    olmo = build_scorecard(discover([str(_folder(tmp_path, "olmo-7b"))]))
    llama = build_scorecard(discover([str(_folder(tmp_path, "llama-2-7b-chat-mlx"))]))
    assert [item.dimension for item in olmo.profile] == DIMENSIONS
    assert {k: _levels(olmo)[k] for k in ("training code", "training data", "end-model weights", "licences")} == \
        {"training code": "open", "training data": "open", "end-model weights": "open", "licences": "open"}
    assert {k: _levels(llama)[k] for k in ("training code", "training data", "end-model weights", "licences")} == \
        {"training code": "closed", "training data": "closed", "end-model weights": "partial", "licences": "partial"}
    training = next(i for i in olmo.profile if i.dimension == "training code")
    assert training.evidence and "OLMo-7B" in training.reason


def test_profile_in_json_text_and_markdown(tmp_path: Path) -> None:
    sc = build_scorecard(discover([str(_folder(tmp_path, "mistral-7b-v0.1"))]))
    profile = scorecard_to_dict(sc)["profile"]
    assert [p["dimension"] for p in profile] == DIMENSIONS
    assert all(p["level"] in ("open", "partial", "closed") and p["group"] for p in profile)
    text = render_text(sc, width=100)
    assert "Openness profile (index view)" in text and all(len(line) <= 100 for line in text.splitlines())
    assert "| availability | training code | closed |" in render_markdown(sc)


def test_side_by_side_comparison(tmp_path: Path) -> None:
    names = ["olmo-7b", "mistral-7b-v0.1", "llama-2-7b-chat-mlx"]
    cards = [build_scorecard(discover([str(_folder(tmp_path, n))])) for n in names]
    text = render_comparison(cards, "text", 120)
    header = next(line for line in text.splitlines() if line.startswith("dimension"))
    assert all(n in header for n in names) and all(len(line) <= 120 for line in text.splitlines())
    row = next(line for line in text.splitlines() if line.startswith("availability: training code"))
    assert row.split()[3:] == ["open", "closed", "closed"]
    markdown = render_comparison(cards, "markdown")
    assert "| OSAID 1.0 | consistent | insufficient-evidence | not-compliant |" in markdown


def test_cli_prints_the_comparison_for_several_releases(tmp_path: Path) -> None:
    folders = [str(_folder(tmp_path, n)) for n in ("olmo-7b", "mistral-7b-v0.1")]
    result = CliRunner().invoke(scorecard_command, folders + ["--format", "markdown"])
    assert result.exit_code == 0 and "## Openness comparison" in result.output
    single = CliRunner().invoke(scorecard_command, folders[:1] + ["--format", "markdown"])
    assert "## Openness comparison" not in single.output


SENTENCE_TRANSFORMERS = """---
license: apache-2.0
---
# all-MiniLM-L6-v2

This model is a fine-tuned version of [nreimers/MiniLM-L6-H384-uncased](https://huggingface.co/nreimers/MiniLM-L6-H384-uncased).

## Training procedure

We trained our model on a TPU v3-8 for 100k steps using a batch size of 1024.
"""


def test_compute_and_lineage_from_sentences(tmp_path: Path) -> None:
    sc = build_scorecard(discover([str(_folder(tmp_path, "st", SENTENCE_TRANSFORMERS))]))
    assert sc.component("Compute documentation").status == "included"
    lineage = sc.component("Base-model lineage")
    assert lineage.status == "derivative" and "nreimers/MiniLM-L6-H384-uncased" in lineage.evidence[0].detail


def test_dataset_list_is_not_cut_mid_word(tmp_path: Path) -> None:
    names = [f"org/dataset-number-{i}" for i in range(20)]
    card = "---\nlicense: mit\ndatasets:\n" + "".join(f"- {n}\n" for n in names) + "---\n# M\n"
    detail = build_scorecard(discover([str(_folder(tmp_path, "many", card))])).component("Datasets").evidence[0].detail
    shown = detail.split(" (+")[0].split(", ")
    assert all(name in names for name in shown) and detail.endswith("more)")


def test_scorecard_json_validates_against_the_report_schema(tmp_path: Path) -> None:
    import jsonschema

    schema = json.loads((Path(__file__).parents[2] / "weightaudit" / "schemas" / "report.v1.schema.json").read_text())
    folders = [str(_folder(tmp_path, n)) for n in ("olmo-7b", "llama-2-7b-chat-mlx")]
    for folder in folders:
        result = CliRunner().invoke(scorecard_command, [folder, "--format", "json"])
        document = json.loads(result.output)
        jsonschema.validate(document, schema)
        assert document["scorecard"]["profile"]
