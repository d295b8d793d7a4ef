"""Model card parsing (README.md): YAML front matter with the line of each top-level field, markdown sections
with their topic, and the links in the text with their line numbers. Pure text in, records out; no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from weightaudit.safe_read import UnsafeDocument, load_yaml

PLACEHOLDER = "[more information needed]"

# Section topic -> words that, found in a heading, give the section that topic (first hit wins, in order).
SECTION_TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("environmental", ("environmental impact", "carbon", "compute infrastructure", "hardware", "compute")),
    ("preprocessing", ("preprocessing", "pre-processing", "data processing", "filtering", "deduplication")),
    ("training-data", ("training data", "pretraining data", "pre-training data", "dataset", "data sources",
                       "data mixture", "training corpus", "corpus", "data card", "datasheet")),
    ("training-procedure", ("training procedure", "training details", "hyperparameters", "training")),
    ("evaluation", ("evaluation", "results", "benchmark", "performance")),
    ("limitations", ("limitation", "bias", "risks", "out-of-scope")),
    ("uses", ("how to get started", "how to use", "usage", "quickstart", "intended use", "uses", "inference")),
    ("samples", ("example output", "sample output", "samples", "examples")),
    ("citation", ("citation", "bibtex")),
)

# Headings that name data or training without documenting them (legal notices, contact requests).
NOT_A_TOPIC = ("protection", "copyright", "privacy", "request", "takedown", "contact", "license", "licence")

MAX_LINKS = 5_000        # links read from one card
MAX_URL_CHARS = 2_000    # a longer "URL" is cut here
CONTEXT_CHARS = 300      # characters kept either side of a link (its anchor text, label, "Repository:" ...)

_URL = re.compile(r"https?://[^\s)\]>\"'`<|]+")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FIELD = re.compile(r"^([A-Za-z0-9_\-]+)\s*:")


@dataclass(frozen=True)
class Section:
    title: str
    level: int
    line: int
    topic: str | None
    text: str

    @property
    def substantive(self) -> bool:
        """Has real content: not empty and not the template's "[More Information Needed]"."""
        body = re.sub(r"\s+", " ", self.text).strip()
        return len(body) >= 40 and PLACEHOLDER not in body.lower()[:60]


@dataclass(frozen=True)
class Link:
    url: str
    line: int
    context: str          # the line the link is on, lower-cased
    section: str | None   # title of the enclosing section
    anchor: str | None = None   # the Markdown / HTML link text, when the URL is a link target
    block: str | None = None    # the fenced block's info string ("bibtex", "python", "" ...) when inside one


@dataclass(frozen=True)
class ModelCard:
    path: str
    front_matter: Mapping[str, Any]
    field_lines: Mapping[str, int]
    sections: tuple[Section, ...]
    links: tuple[Link, ...]
    body: str
    front_matter_error: str | None = None
    lines: tuple[str, ...] = field(default=(), repr=False)
    body_line: int = 1   # 1-based line of the card where the body (after the front matter) starts

    def field_source(self, name: str) -> str:
        line = self.field_lines.get(name)
        return f"{self.path}:{line} {name}" if line else f"{self.path} {name}"

    def sections_about(self, topic: str) -> tuple[Section, ...]:
        return tuple(s for s in self.sections if s.topic == topic)

    def find_line(self, pattern: str) -> int | None:
        """1-based line of the first match of a case-insensitive regex in the card, or None."""
        rx = re.compile(pattern, re.IGNORECASE)
        for number, line in enumerate(self.lines, 1):
            if rx.search(line):
                return number
        return None


def _split_front_matter(lines: list[str]) -> tuple[int, int] | None:
    """(first, last) 0-based line indexes of the YAML between the fences, or None, exactly as the Hub reads it
    (huggingface_hub ``REGEX_YAML_BLOCK``): blank lines may come first, the opening line is ``---`` after optional
    indentation, the closing line starts with ``---`` followed only by spaces or tabs, and at least one line lies
    between them. ``...`` does not close it."""
    opening = next((index for index, line in enumerate(lines) if line.strip()), None)
    if opening is None or lines[opening].lstrip() != "---":
        return None
    for index in range(opening + 2, len(lines)):
        if lines[index].startswith("---") and not lines[index][3:].strip(" \t"):
            return opening + 1, index
    return None


def _topic(title: str) -> str | None:
    lowered = title.lower()
    if any(word in lowered for word in NOT_A_TOPIC):
        return None
    if re.sub(r"[^a-z ]", "", lowered).strip() in ("data", "the data", "our data"):
        return "training-data"
    for topic, words in SECTION_TOPICS:
        if any(re.search(rf"(?<![a-z]){re.escape(word)}", lowered) for word in words):
            return topic
    return None


def _sections(lines: list[str], start: int) -> tuple[Section, ...]:
    heads: list[tuple[int, int, str]] = []
    in_fence = False
    for index in range(start, len(lines)):
        if lines[index].lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING.match(lines[index])
        if match:
            heads.append((index, len(match.group(1)), match.group(2).strip()))
    sections = []
    for position, (index, level, title) in enumerate(heads):
        end = len(lines)
        for later_index, later_level, _ in heads[position + 1:]:
            if later_level <= level:
                end = later_index
                break
        text = "\n".join(lines[index + 1:end])
        sections.append(Section(title, level, index + 1, _topic(title), text))
    return tuple(sections)


def _anchor(line: str, start: int) -> str | None:
    """The text of ``[text](url)`` or ``<a href="url">text</a>`` whose URL starts at ``start``."""
    before = line[:start]
    if before.endswith("]("):
        opening = before.rfind("[", 0, len(before) - 2)
        return before[opening + 1:len(before) - 2].strip() if opening >= 0 else None
    if re.search(r"href=[\"']?$", before):
        after = line[start:]
        match = re.search(r">([^<]{0,200})</a>", after)
        return match.group(1).strip() if match else None
    return None


def _links(lines: list[str], start: int, sections: tuple[Section, ...]) -> tuple[Link, ...]:
    """Every URL with its line, section, anchor text and code block; HTML comments (``<!-- -->``, often template
    placeholders) are skipped, and markup clinging to a URL (``}`` ``)`` ``]`` ``.`` quotes) is cleaned off."""
    from weightaudit.openness.knowledge import clean_url

    links = []
    in_comment = False
    block: str | None = None
    titles = {s.line: s.title for s in sections}
    current: str | None = None
    for index in range(start, len(lines)):
        raw = lines[index]
        current = titles.get(index + 1, current)
        if raw.lstrip().startswith(("```", "~~~")):
            block = raw.lstrip()[3:].strip().lower() if block is None else None
            continue
        visible, in_comment = _without_comments(raw, in_comment)
        for match in _URL.finditer(visible):
            url = clean_url(match.group(0)[:MAX_URL_CHARS])
            if url.count("/") >= 2:
                start, end = max(0, match.start() - CONTEXT_CHARS), match.end() + CONTEXT_CHARS
                links.append(Link(url, index + 1, visible[start:end].lower(), current,
                                  _anchor(visible[start:end], match.start() - start), block))
                if len(links) >= MAX_LINKS:   # bounded work per card (each link is classified once)
                    return tuple(links)
    return tuple(links)


def _without_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    """The parts of a line outside HTML comments, and whether a comment is still open at its end."""
    out, position = [], 0
    while position < len(line):
        if in_comment:
            end = line.find("-->", position)
            if end < 0:
                return "".join(out), True
            position, in_comment = end + 3, False
        else:
            begin = line.find("<!--", position)
            if begin < 0:
                out.append(line[position:])
                break
            out.append(line[position:begin])
            position, in_comment = begin + 4, True
    return "".join(out), in_comment


def parse_model_card(text: str, path: str = "README.md") -> ModelCard:
    """Parse a model card. A broken front matter is kept as an error string, never raised. A UTF-8 byte order
    mark is dropped first (the Hub reads cards as ``utf-8-sig``)."""
    lines = text.removeprefix("\ufeff").splitlines()
    fences = _split_front_matter(lines)
    front: Mapping[str, Any] = {}
    field_lines: dict[str, int] = {}
    error = None
    body_start = 0
    if fences is not None:
        import yaml   # loaded when a card has front matter, not at every start-up

        first, last = fences
        body_start = last + 1
        try:
            loaded = load_yaml("\n".join(lines[first:last]))   # depth- and alias-bounded (safe_read)
            front = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError as exc:
            error = f"front matter is not valid YAML: {str(exc).splitlines()[0]}"
        except UnsafeDocument as exc:
            error = f"front matter refused: {exc}"
        for index in range(first, last):
            match = _FIELD.match(lines[index])
            if match:
                field_lines.setdefault(match.group(1), index + 1)
    sections = _sections(lines, body_start)
    links = _links(lines, body_start, sections)
    body = "\n".join(lines[body_start:])
    return ModelCard(path, front, field_lines, sections, links, body, error, tuple(lines), body_start + 1)
