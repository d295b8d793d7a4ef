"""Components found through the card's links and names, resolved against the knowledge base.

- ``linked_component``: code components (training, preprocessing, evaluation, inference) from the links whose
  role (``links.classify_link``) is that component: a known artifact gives ``included`` with its licence and
  source (confidence ``known``), an unknown repository of that role gives ``mentioned``.
- ``dataset_evidence``: the card's ``datasets:`` ids and dataset links, known ones with licence and source.
- ``apply_known_model``: the model's own MOT / user record (identified by name) fills every component it lists
  that the release itself does not show.
- ``model_names``: the names the release goes by (config ``_name_or_path``, model-index, card title, folder).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from weightaudit.openness.evidence import Confidence, Evidence
from weightaudit.openness.knowledge import KnownArtifact, Knowledge, hub_key

if TYPE_CHECKING:
    from weightaudit.openness.assess import Assessment
    from weightaudit.openness.collect import ReleaseFacts
    from weightaudit.openness.links import LinkRole

MAX_EVIDENCE = 6


def join_names(names: Iterable[str], limit: int = 120) -> str:
    """Whole names joined with ", " up to ``limit`` characters, then "+N more" (never cut mid-word)."""
    names = list(dict.fromkeys(names))
    shown: list[str] = []
    for name in names:
        if shown and len(", ".join(shown + [name])) > limit:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f" (+{rest} more)" if rest else "")


def _base_names(facts: "ReleaseFacts") -> set[str]:
    """Name keys of the base model(s) the release says it derives from: never the release's own identity."""
    from weightaudit.openness.knowledge import name_key

    card = facts.card
    base = card.front_matter.get("base_model") if card is not None else None
    names = [str(b) for b in base] if isinstance(base, list) else [str(base)] if base else []
    adapter = facts.adapter_config.get("base_model_name_or_path") if facts.adapter_config else None
    names += [str(adapter)] if adapter else []
    return {name_key(n) for n in names}


def model_names(facts: "ReleaseFacts") -> tuple[tuple[str, str], ...]:
    """(name, where it was read) candidates, most specific first: the card's model-index name and title, the
    folder name, then config ``_name_or_path`` (often the base model of a fine-tune). A name that is the declared
    base model is left out: a fine-tune of OLMo is not OLMo."""
    from weightaudit.openness.knowledge import name_key

    out: list[tuple[str, str]] = []
    card = facts.card
    if card is not None:
        index = card.front_matter.get("model-index")
        if isinstance(index, list) and index and isinstance(index[0], dict) and isinstance(index[0].get("name"), str):
            out.append((index[0]["name"], card.field_source("model-index")))
        title = next((s for s in card.sections if s.level == 1), None)
        if title is not None:
            shown = re.sub(r"[*_`]|\[|\]\([^)]{0,300}\)", "", title.title).strip()
            shown = re.sub(r"(?i)^(model card( for| of)?|original model card:?)\s+", "", shown)
            out.append((shown, f"{card.path}:{title.line} title"))
    if facts.root_name:
        out.append((facts.root_name, "release folder name"))
    config = facts.config or {}
    if isinstance(config.get("_name_or_path"), str):
        out.append((config["_name_or_path"], f"{facts.config_path} _name_or_path"))
    bases = _base_names(facts)
    return tuple((n, w) for n, w in out if n and len(n) <= 200 and name_key(n) not in bases)


def _known_evidence(role: "LinkRole", path: str, what: str) -> Evidence:
    assert role.known is not None
    return Evidence(f"{path}:{role.link.line}", f"{what} {role.known.describe(kind=False)}", Confidence.KNOWN,
                    role.link.url)


def _strictest_licence(artifacts: list[KnownArtifact]) -> str | None:
    from weightaudit.openness.licenses import classify

    licences = [a.license for a in artifacts]
    if any(lic is None for lic in licences):
        return None
    return min(licences, key=lambda lic: (classify(lic).open, classify(lic).osi_approved)) if licences else None


def linked_component(facts: "ReleaseFacts", what: str, roles: tuple[str, ...]) -> "Assessment | None":
    """Known / unknown links of the given roles -> an assessment, or None when the card links to none."""
    from weightaudit.openness.assess import INCLUDED, MENTIONED, Assessment

    card = facts.card
    if card is None:
        return None
    matching = [r for r in facts.link_roles if r.role in roles]
    known = [r for r in matching if r.known is not None]
    if known:
        unique = list({r.known.id: r for r in known}.values())
        evidence = tuple(_known_evidence(r, card.path, what) for r in unique[:MAX_EVIDENCE])
        licence = _strictest_licence([r.known for r in unique])
        first = unique[0].known
        return Assessment(INCLUDED, Confidence.KNOWN, evidence,
                          f"{first.id} — {first.license or 'licence not stated'}, per {first.source}",
                          license_raw=licence, license_source=first.source, external=True)
    if matching:
        unique = list({r.link.url: r for r in matching}.values())
        evidence = tuple(Evidence(f"{card.path}:{r.link.line}", f"{what} repository ({r.why})", Confidence.MENTIONED,
                                  r.link.url) for r in unique[:MAX_EVIDENCE])
        return Assessment(MENTIONED, Confidence.MENTIONED, evidence,
                          f"{what} is linked from the model card, not in the release", external=True)
    return None


def _dataset_ids(facts: "ReleaseFacts") -> list[str]:
    value = facts.card.front_matter.get("datasets") if facts.card else None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v] if isinstance(value, list) else []


def known_datasets(facts: "ReleaseFacts", knowledge: Knowledge | None) -> list[tuple[KnownArtifact, Evidence]]:
    """Training datasets the card names (``datasets:`` ids, dataset links) that the knowledge base knows."""
    out: dict[str, tuple[KnownArtifact, Evidence]] = {}
    card = facts.card
    if card is None or knowledge is None:
        return []
    for dataset_id in _dataset_ids(facts):
        key = hub_key(dataset_id, dataset=True)
        artifact = knowledge.artifacts.get(key) if key else None
        if artifact is not None and artifact.kind == "dataset":
            out.setdefault(artifact.id, (artifact, Evidence(card.field_source("datasets"),
                                                            f"dataset {artifact.describe(kind=False)}", Confidence.KNOWN)))
    for role in facts.link_roles:
        if role.role == "dataset" and role.known is not None:
            out.setdefault(role.known.id, (role.known, _known_evidence(role, card.path, "dataset")))
    for section in card.sections:   # datasets named in the training-data prose ("trained on FineWeb-Edu, DCLM")
        if section.topic in ("training-data", "training-procedure") or section.level <= 2 and "trained on" in section.text:
            for artifact, name in knowledge.named_in(section.text):
                if artifact.kind == "dataset":
                    out.setdefault(artifact.id, (artifact, Evidence(f"{card.path}:{section.line}",
                                                                    f"'{name}' named in section '{section.title}': "
                                                                    f"{artifact.describe(kind=False)}", Confidence.KNOWN)))
    return list(out.values())


def dataset_ids_text(facts: "ReleaseFacts") -> str:
    return join_names(_dataset_ids(facts))


def apply_known_model(local: "Assessment", name: str, facts: "ReleaseFacts") -> "Assessment":
    """The identified model's record fills a component the release does not show (status included, its licence)."""
    from weightaudit.openness.assess import INCLUDED, Assessment

    if facts.known_model is None or (local.status == INCLUDED and local.confidence == Confidence.VERIFIED):
        return local
    model, matched, where = facts.known_model
    entry = model.components.get(name)
    if entry is None:
        return local
    licence = entry.get("license")
    detail = f"listed in {model.source}" + (f" ({entry['url']})" if entry.get("url") else "")
    evidence = (Evidence(where, f"identified as {model.name} by '{matched}'; {detail}", Confidence.KNOWN,
                         entry.get("url")),)
    kept = tuple(e for e in local.evidence if e.confidence != Confidence.ABSENT)
    return Assessment(INCLUDED, Confidence.KNOWN, evidence + kept,
                      f"{'open' if _open(licence) else 'released'} — {licence or 'licence not stated'}, per {model.source}",
                      license_raw=licence, license_source=model.source, external=True)


def _open(licence: str | None) -> bool:
    from weightaudit.openness.licenses import classify

    return bool(licence) and classify(licence).open


def with_knowledge(facts: "ReleaseFacts", knowledge: Knowledge) -> "ReleaseFacts":
    """The facts with the model identified in the knowledge base and every card link given its role."""
    from dataclasses import replace

    from weightaudit.openness.links import classify_links

    names = model_names(facts)
    found = knowledge.model(n for n, _ in names)
    known = None
    if found is not None:
        model, matched = found
        known = (model, matched, dict(names)[matched])
    identity = tuple(n for n, _ in names) + ((known[0].name,) if known else ())
    return replace(facts, link_roles=classify_links(facts.card, knowledge, identity), known_model=known,
                   knowledge=knowledge)
