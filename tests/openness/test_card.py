"""Model card parsing as the Hub does it: front matter compared with huggingface_hub's own reader on odd cards;
section topics; the model-card score follows the key sections it covers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from huggingface_hub import metadata_load

from weightaudit.openness.card import parse_model_card

ODD_CARDS = {
    "bom": "\ufeff---\nlicense: apache-2.0\ntags: [a]\n---\n# Model\n",
    "leading-blank-lines": "\n\n\n---\nlicense: mit\n---\n# Model\n",
    "indented-opening": "  ---\nlicense: mit\n---\nbody\n",
    "closing-with-spaces": "---\nlicense: mit\n---   \nbody\n",
    "dots-do-not-close": "---\nlicense: mit\n...\nx: 1\n---\nbody\n",
    "crlf": "---\r\nlicense: gemma\r\nbase_model: google/gemma-2b\r\n---\r\n# M\r\n",
    "no-front-matter": "# Model\n\nlicense: mit\n",
    "text-before-fence": "intro\n---\nlicense: mit\n---\n",
    "opening-with-trailing-space": "--- \nlicense: mit\n---\n",
    "empty-block": "---\n---\nbody\n",
    "blank-block": "---\n\n---\nbody\n",
    "closing-not-at-column-0": "---\nlicense: mit\n ---\nx: 2\n---\n",
}


@pytest.mark.parametrize("name", sorted(ODD_CARDS))
def test_front_matter_matches_huggingface_hub(name: str, tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_bytes(ODD_CARDS[name].encode("utf-8"))
    ours = parse_model_card(path.read_text("utf-8"))
    try:
        expected = metadata_load(path) or {}
    except yaml.YAMLError:   # the Hub rejects the card's metadata: we keep the error and read no fields
        assert ours.front_matter_error and not ours.front_matter, name
        return
    assert dict(ours.front_matter) == expected and ours.front_matter_error is None, name


def test_bom_card_fields_have_lines() -> None:
    card = parse_model_card("\ufeff\n---\nlicense: apache-2.0\n---\n# Title\n")
    assert card.field_lines["license"] == 3 and card.body_line == 5


@pytest.mark.parametrize("title, topic", [
    ("Data Protection and Copyright Requests", None), ("License", None), ("Training Data", "training-data"),
    ("Data", "training-data"), ("Pretraining data mixture", "training-data"), ("Hardware", "environmental"),
    ("Metadata", None),
])
def test_section_topics(title: str, topic: str | None) -> None:
    card = parse_model_card(f"# M\n\n## {title}\n\n" + "Some words about this part of the model. " * 3 + "\n")
    assert card.sections[1].topic == topic
