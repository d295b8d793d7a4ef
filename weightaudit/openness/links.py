"""What each link in a model card is, by structure rather than keywords around it.

A link's role comes, in order, from: what it is (an image is never evidence), where it sits (a citation/BibTeX
block or a licence note is not a component link), the identity of its target in the knowledge base (a known
training repository, dataset, inference repository, framework or the model's own report), and only then from
the repository's own name, the link's anchor text and the heading it sits under.

Roles: training, preprocessing, evaluation, inference, tooling, framework, dataset, eval-dataset, own-paper,
related-paper, code (a repository whose role cannot be told), model (a Hub model page), citation, license-note,
image, other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from weightaudit.openness.card import Link, ModelCard
from weightaudit.openness.knowledge import KnownArtifact, Knowledge, name_key, target_key

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".bmp", ".ico")
CODE_HOSTS = ("github.com", "gitlab.com", "codeberg.org", "bitbucket.org", "git.sr.ht")
PAPER_HOSTS = ("arxiv.org", "doi.org", "aclanthology.org", "openreview.net", "proceedings.mlr.press",
               "papers.nips.cc", "proceedings.neurips.cc", "dl.acm.org", "ieeexplore.ieee.org", "jmlr.org")
CITATION_BLOCKS = ("bibtex", "bib", "tex", "latex")
# Repository-name / anchor words -> role, tried in order (evaluation and inference before training: an
# "eval" or "inference" repository that also says "train" somewhere is still not training code).
NAME_ROLES: tuple[tuple[str, str], ...] = (
    ("evaluation", r"eval|benchmark|harness|leaderboard"),
    ("inference", r"inference|serving|serve|deploy|demo|chat-?ui|quantiz|gguf|onnx|runtime"),
    ("preprocessing", r"preprocess|data[-_ ]?(processing|pipeline|prep)|dedup|datatrove|curat|filter"),
    ("training", r"(^|[^a-z])(train|training|pretrain|pre-train|finetune|fine-tun|sft|rlhf|recipes?)([^a-z]|$)"),
)
OWN_PAPER_CUES = r"technical report|tech report|our paper|the paper|paper:|report:|preprint|\bpaper\b.{0,80}\b(this|our)\b"


@dataclass(frozen=True)
class LinkRole:
    link: Link
    role: str
    known: KnownArtifact | None
    why: str


def _is_image(link: Link) -> bool:
    path = link.url.lower().split("?")[0]
    url = re.escape(link.url.lower())
    return path.endswith(IMAGE_EXT) or bool(re.search(r"!\[[^\]]{0,300}\]\(\s*" + url + r"|<img[^>]{0,300}src=[\"']?" + url,
                                                      link.context))


def _host(url: str) -> str:
    return re.sub(r"^[a-z+]+://(www\.)?", "", url.lower()).split("/")[0]


def _mine(known: KnownArtifact, model_names: tuple[str, ...]) -> bool:
    keys = {name_key(n) for n in model_names}
    return any(name_key(m) in keys or any(k.startswith(name_key(m)) for k in keys) for m in known.models)


def _by_name(link: Link, heading: str) -> tuple[str, str] | None:
    key = target_key(link.url) or ""
    repo = key.split("/")[-1] if key.count("/") >= 2 else ""
    for role, pattern in NAME_ROLES:
        if re.search(pattern, repo):
            return role, f"repository name '{repo}'"
    texts = ((link.anchor or "").lower(), "anchor text"), (heading.lower(), "section heading")
    for text, what in texts:
        for role, pattern in NAME_ROLES:
            if text and re.search(pattern, text):
                return role, f"{what} '{text[:40]}'"
    line = link.context
    if re.match(r"[-*]?[ \t]{0,4}\*{0,3}(training code|training repository|training)\*{0,3}[ \t]{0,4}:", line.lstrip()):
        return "training", "a 'Training code:' line"
    return None


def _paper_role(link: Link, known: KnownArtifact | None, model_names: tuple[str, ...], card: ModelCard) -> LinkRole:
    if known is not None and known.kind == "paper":
        if _mine(known, model_names):
            return LinkRole(link, "own-paper", known, f"the model's own report ({known.source})")
        return LinkRole(link, "related-paper", known, f"another model's report ({known.source})")
    heading = (link.section or "").lower()
    context = link.context + " " + (link.anchor or "").lower()
    if re.search(OWN_PAPER_CUES, context) or re.search(r"model (details|sources|description)|^paper", heading):
        return LinkRole(link, "own-paper", None, "introduced as the model's paper/report")
    if link.block in CITATION_BLOCKS or _section_topic(card, link) == "citation":
        first = _first_citation_link(card)
        if first is not None and first.url == link.url:
            return LinkRole(link, "own-paper", None, "the first reference of the card's citation block")
    return LinkRole(link, "related-paper", None, "cited related work")


def _section_topic(card: ModelCard, link: Link) -> str | None:
    return next((s.topic for s in card.sections if s.title == link.section), None)


def _first_citation_link(card: ModelCard) -> Link | None:
    for link in card.links:
        if any(h in link.url.lower() for h in PAPER_HOSTS) and (
                link.block in CITATION_BLOCKS or _section_topic(card, link) == "citation"):
            return link
    return None


def classify_link(link: Link, card: ModelCard, knowledge: Knowledge, model_names: tuple[str, ...]) -> LinkRole:
    url = link.url.lower()
    host = _host(url)
    if _is_image(link):
        return LinkRole(link, "image", None, "an image")
    known = knowledge.lookup(link.url)
    if re.search(r"technical report|tech report|\bpreprint\b", (link.anchor or "").lower()):
        return LinkRole(link, "own-paper", known, f"anchor text '{link.anchor[:40]}'")
    hub_paper = host in ("huggingface.co", "hf.co") and "/papers/" in url
    if any(h == host or host.endswith("." + h) for h in PAPER_HOSTS) or hub_paper or (known and known.kind == "paper"):
        return _paper_role(link, known, model_names, card)
    heading = link.section or ""
    if link.block in CITATION_BLOCKS or _section_topic(card, link) == "citation":
        return LinkRole(link, "citation", known, "inside a citation block")
    if re.search(r"licen[cs]e|/terms|use[-_]?policy|acceptable[-_]use", url) or re.search(r"licen[cs]", heading.lower()):
        return LinkRole(link, "license-note", known, "a licence or terms link")
    if known is not None:
        role = known.kind
        if role == "dataset" and _section_topic(card, link) == "evaluation":
            role = "eval-dataset"
        return LinkRole(link, role, known, f"known artifact: {known.describe()}")
    if "huggingface.co/datasets/" in url or "hf.co/datasets/" in url:
        role = "eval-dataset" if _section_topic(card, link) == "evaluation" else "dataset"
        return LinkRole(link, role, None, "a Hub dataset")
    if host in CODE_HOSTS:
        found = _by_name(link, heading)
        if found is not None:
            return LinkRole(link, found[0], None, found[1])
        return LinkRole(link, "code", None, "a code repository of unknown role")
    if host in ("huggingface.co", "hf.co") and target_key(url) and target_key(url).count("/") == 2:
        return LinkRole(link, "model", None, "a Hub model page")
    return LinkRole(link, "other", None, "")


def classify_links(card: ModelCard | None, knowledge: Knowledge, model_names: tuple[str, ...]) -> tuple[LinkRole, ...]:
    if card is None:
        return ()
    return tuple(classify_link(link, card, knowledge, model_names) for link in card.links)
