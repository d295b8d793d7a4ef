"""Renderers: plain text, rich text, Markdown and the SVG badge all carry the verdicts and their evidence."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from weightaudit.discover import discover
from weightaudit.openness import build_scorecard, render_badge, render_markdown, render_text

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "openness"


@pytest.fixture(scope="module")
def llama():
    folder = FIXTURES / "llama2_style"
    if not folder.exists():
        pytest.skip("run fixtures/make_openness_fixtures.py")
    return build_scorecard(discover([str(folder)]))


def test_plain_text(llama) -> None:
    text = render_text(llama)
    assert "\x1b[" not in text
    assert "Headline: restricted weights" in text
    assert "Weights" in text and "[model.safetensors]" in text
    assert "OSAID 1.0: Not OSAID 1.0 compliant" in text
    assert "Model parameters (Final)" in text and "LICENSE.txt:1" in text
    assert "n/a" in text          # a component that cannot be evaluated is never shown as a pass


def test_rich_text(llama) -> None:
    text = render_text(llama, rich=True)
    assert "Components" in text and "restricted weights" in text


def test_markdown(llama) -> None:
    text = render_markdown(llama)
    assert text.startswith("## Openness scorecard")
    assert "| Weights | restricted |" in text and "`model.safetensors`" in text
    assert "**MOF:** Unclassified" in text


def test_badge_is_svg(llama) -> None:
    svg = render_badge(llama)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "Unclassified" in svg and "restricted weights" in svg
