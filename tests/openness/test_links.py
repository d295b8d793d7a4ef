"""Links classified by structure (image, citation, licence note, known artifact, repository name), URLs cleaned
of markup, papers ranked (own report vs related work), and the knowledge base (bundled, user rows, schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weightaudit.errors import UsageError
from weightaudit.openness.card import parse_model_card
from weightaudit.openness.expressions import scancode_spdx_ids
from weightaudit.openness.knowledge import KINDS, clean_url, load_knowledge, target_key
from weightaudit.openness.links import classify_links

CARD = """---
license: apache-2.0
---
# OLMo-7B

![banner](https://example.org/banner.png)

## Model Details

- **Repository:** https://github.com/allenai/OLMo
- **Paper:** https://arxiv.org/abs/2402.00838

<!-- - **Demo:** https://github.com/placeholder/demo -->

## Uses

Serve it with https://github.com/vllm-project/vllm or [our chat demo](https://github.com/someone/olmo-chat-ui).

## Training Data

Trained on [Dolma](https://huggingface.co/datasets/allenai/dolma). Related work: https://arxiv.org/abs/2307.09288

## Evaluation

Run with https://github.com/someone/our-eval-suite on https://huggingface.co/datasets/cais/mmlu

## License

See https://github.com/allenai/OLMo/blob/main/LICENSE.

## Citation

```bibtex
@article{groeneveld2024olmo, url={https://arxiv.org/abs/2402.00838}}
```
"""


def _roles(card_text: str = CARD) -> dict[str, str]:
    card = parse_model_card(card_text)
    return {r.link.url: r.role for r in classify_links(card, load_knowledge(), ("OLMo-7B",))}


def test_link_roles_by_structure() -> None:
    roles = _roles()
    assert "https://example.org/banner.png" not in roles or roles["https://example.org/banner.png"] == "image"
    assert roles["https://github.com/allenai/OLMo"] == "training"                   # a known training repository
    assert roles["https://arxiv.org/abs/2402.00838"] == "own-paper"                 # the model's own report
    assert roles["https://arxiv.org/abs/2307.09288"] == "related-paper"             # another model's report
    assert roles["https://github.com/vllm-project/vllm"] == "inference"
    assert roles["https://github.com/someone/olmo-chat-ui"] == "inference"          # repository name
    assert roles["https://github.com/someone/our-eval-suite"] == "evaluation"
    assert roles["https://huggingface.co/datasets/allenai/dolma"] == "dataset"
    assert roles["https://huggingface.co/datasets/cais/mmlu"] == "eval-dataset"
    assert roles["https://github.com/allenai/OLMo/blob/main/LICENSE"] == "license-note"
    assert "https://github.com/placeholder/demo" not in roles                       # commented out


def test_image_link_is_never_evidence() -> None:
    card = parse_model_card("# M\n\n## Training data\n\n![data](https://huggingface.co/datasets/x/y/resolve/main/a.png)\n")
    roles = classify_links(card, load_knowledge(), ())
    assert [r.role for r in roles] == ["image"]


@pytest.mark.parametrize("raw, cleaned", [
    ("https://github.com/allenai/OLMo}", "https://github.com/allenai/OLMo"),
    ("https://github.com/allenai/OLMo).", "https://github.com/allenai/OLMo"),
    ("https://arxiv.org/abs/2402.00838},", "https://arxiv.org/abs/2402.00838"),
    ("https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"),
    ("https://example.org/x\"", "https://example.org/x"),
])
def test_urls_cleaned_of_markup(raw: str, cleaned: str) -> None:
    assert clean_url(raw) == cleaned


def test_bibtex_brace_is_not_part_of_the_url() -> None:
    card = parse_model_card("# M\n\n```bibtex\n@misc{x, url={https://arxiv.org/abs/2402.00838}}\n```\n")
    assert [link.url for link in card.links] == ["https://arxiv.org/abs/2402.00838"]


@pytest.mark.parametrize("url, key", [
    ("https://github.com/EleutherAI/gpt-neox.git", "github.com/eleutherai/gpt-neox"),
    ("https://github.com/EleutherAI/gpt-neox/tree/main/configs", "github.com/eleutherai/gpt-neox"),
    ("https://huggingface.co/datasets/allenai/dolma/blob/main/README.md", "huggingface.co/datasets/allenai/dolma"),
    ("https://arxiv.org/pdf/2402.00838v3.pdf", "arxiv.org/abs/2402.00838"),
    ("https://huggingface.co/papers/2402.00838", "arxiv.org/abs/2402.00838"),
])
def test_target_keys(url: str, key: str) -> None:
    assert target_key(url) == key


def test_framework_is_not_training_code() -> None:
    roles = _roles("# M\n\n## Training\n\nTrained with https://github.com/huggingface/transformers\n")
    assert roles["https://github.com/huggingface/transformers"] == "framework"


def test_megatron_deepspeed_and_repository_line() -> None:
    roles = _roles("# M\n\n- Repository: https://github.com/microsoft/Megatron-DeepSpeed\n")
    assert roles["https://github.com/microsoft/Megatron-DeepSpeed"] == "training"


def test_bundled_rows_are_valid_and_sourced() -> None:
    knowledge = load_knowledge()
    assert len(knowledge.artifacts) > 100 and len(knowledge.models) > 273
    for artifact in knowledge.artifacts.values():
        assert artifact.kind in KINDS and artifact.source
        for part in (artifact.license or "").split():
            if part.startswith("LicenseRef-scancode-"):
                assert part in scancode_spdx_ids()
    model, matched = knowledge.model(["allenai/OLMo-7B"])
    assert model.name == "OLMo-7B" and model.source.startswith("MOT record OLMo-7B")
    assert model.components["Training code"]["license"] == "Apache-2.0"


def test_mot_rows_keep_attribution() -> None:
    data = json.loads((Path(__file__).parents[2] / "weightaudit" / "data" / "knowledge_mot.json").read_text("utf-8"))
    assert data["license"] == "MIT" and "model_openness_tool" in data["attribution"]
    assert len(data["models"]) == 273 and all(row["source"].startswith("MOT record ") for row in data["models"])


def test_user_knowledge_rows_win(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text("artifacts:\n  - {id: github.com/acme/trainer, kind: training, license: MIT, source: our audit}\n")
    knowledge = load_knowledge(user)
    assert knowledge.lookup("https://github.com/acme/trainer/tree/main").license == "MIT"
    assert load_knowledge().lookup("https://github.com/acme/trainer") is None


@pytest.mark.parametrize("text", ["artifacts:\n  - {id: x, kind: rocket, source: s}\n", "- just a list\n",
                                  "artifacts: [{id: github.com/a/b, kind: training}]\n", "a: &a [*a]\n"])
def test_bad_user_knowledge_is_a_usage_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError):
        load_knowledge(path)


def test_every_bundled_licence_is_a_recognised_id() -> None:
    from weightaudit.openness.licenses import normalise_license

    knowledge = load_knowledge()
    licences = {a.license for a in knowledge.artifacts.values() if a.license}
    licences |= {m.license for m in knowledge.models.values() if m.license}
    for licence in licences:
        assert normalise_license(licence).id == licence, licence
