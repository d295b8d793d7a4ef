"""The verdicts drawn from the components: the user's three pillars (weights, training code, training data) and
OSI's Open Source AI Definition 1.0 (research/openness.md 2.7 and 2.8).

Pillar status: ``open`` / ``restricted`` / ``mentioned`` / ``absent`` / ``unknown``.
OSAID verdict: ``consistent`` (self-assessed, never "compliant" from local evidence) / ``not-compliant`` /
``insufficient-evidence``, with the three OSAID pillars parameters / code / data_information each
``satisfied`` / ``not-satisfied`` / ``insufficient-evidence``, and one reason per non-satisfied pillar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from weightaudit.openness.evidence import Evidence

if TYPE_CHECKING:
    from weightaudit.openness.collect import ReleaseFacts
    from weightaudit.openness.scorecard import ComponentResult

SATISFIED = "satisfied"
NOT_SATISFIED = "not-satisfied"
INSUFFICIENT = "insufficient-evidence"
OSAID_CODE = ("Training code", "Data preprocessing code", "Inference code", "Model architecture",
              "Supporting libraries and tools")
DATA_ELEMENTS: Mapping[str, str] = {
    "provenance": r"\b(sourced?|collected|crawl|origin|obtained|scraped)\b",
    "scope": r"\b(tokens?|languages?|size|domains?|documents?)\b",
    "selection": r"\b(select|sampl|mixture|proportion|weighting)",
    "labeling": r"\b(label|annotat)",
    "processing": r"\b(dedup|filter|clean|tokeni[sz]|preprocess|quality)",
    "public_listing": r"(huggingface\.co/datasets/|\bdatasets?:)",
    "third_party": r"\b(third[- ]party|licensed|purchased|proprietary data|copyright)",
}


@dataclass(frozen=True)
class Pillar:
    status: str
    license: str | None
    reason: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class OsaidResult:
    verdict: str
    pillars: Mapping[str, str]
    reasons: tuple[str, ...]

    @property
    def label(self) -> str:
        return {
            "consistent": "Consistent with OSAID 1.0 (self-assessed; not OSI-validated)",
            "not-compliant": "Not OSAID 1.0 compliant",
            "insufficient-evidence": "Insufficient evidence for OSAID 1.0",
        }[self.verdict]


def _by_name(results: "tuple[ComponentResult, ...]") -> "dict[str, ComponentResult]":
    return {r.name: r for r in results}


def _pillar(result: "ComponentResult", open_test: str) -> Pillar:
    info = result.license_info
    evidence = result.evidence
    if result.status == "included":
        known = result.confidence.value == "known"
        if info is None and known:
            return Pillar("unknown", None, f"{result.name}: {result.reason} (licence not recorded)", evidence)
        if info is None:
            return Pillar("restricted", None, f"{result.name} included without a licence: no rights granted", evidence)
        is_open = info.osi_approved if open_test == "osi" else info.open
        if is_open and known:
            return Pillar("open", info.id, f"{result.name}: {result.reason}", evidence)
        if is_open:
            return Pillar("open", info.id, f"{result.name} included under {info.id} ({info.label})", evidence)
        if not info.known:
            return Pillar("unknown", info.id, f"{result.name} licence {info.id!r} not recognised", evidence)
        return Pillar("restricted", info.id, f"{result.name} under {info.id} ({info.label})", evidence)
    if result.status == "mentioned":
        return Pillar("mentioned", result.license, f"{result.name}: {result.reason}", evidence)
    if result.status == "absent":
        return Pillar("absent", None, f"{result.name}: {result.reason}", evidence)
    return Pillar("unknown", None, f"{result.name}: {result.reason}", evidence)


def assess_pillars(results: "tuple[ComponentResult, ...]") -> dict[str, Pillar]:
    """Weights (open terms), training code (OSI-approved licence), training data (open terms)."""
    by_name = _by_name(results)
    weights = _pillar(by_name["Model parameters (Final)"], "open")
    access = by_name["Access gating"]
    if weights.status == "open" and access.status == "gated":
        weights = Pillar("open", weights.license, weights.reason + "; downloads are gated", weights.evidence
                         + access.evidence[:2])
    return {
        "weights": weights,
        "training_code": _pillar(by_name["Training code"], "osi"),
        "training_data": _pillar(by_name["Datasets"], "open"),
    }


def headline(pillars: Mapping[str, Pillar]) -> str:
    statuses = tuple(pillars[k].status for k in ("weights", "training_code", "training_data"))
    if statuses == ("open", "open", "open"):
        return "open-source AI (weights + training code + training data)"
    if statuses[:2] == ("open", "open"):
        return "open weights + training code"
    if statuses[0] == "open":
        return "open weights"
    if statuses[0] == "restricted":
        return "restricted weights"
    return "not open"


def _parameters(by_name: "dict[str, ComponentResult]") -> tuple[str, str]:
    final = by_name["Model parameters (Final)"]
    info = final.license_info
    gated = by_name["Access gating"].status == "gated"
    if final.status == "absent":
        return NOT_SATISFIED, "parameters: the final weights are not released"
    if final.status != "included":
        return INSUFFICIENT, f"parameters: {final.reason}"
    if info is None:
        return NOT_SATISFIED, "parameters: the weights carry no licence"
    if info.known and not info.open:
        return NOT_SATISFIED, f"parameters: {info.id} is a {info.label}, not OSI-approved terms"
    if not info.known:
        return INSUFFICIENT, f"parameters: licence {info.id!r} not recognised"
    if gated:
        return INSUFFICIENT, "parameters: downloads are gated; OSAID requires use without asking permission"
    return SATISFIED, ""


def _code(by_name: "dict[str, ComponentResult]") -> tuple[str, str]:
    """Satisfied when the training code is available under OSI-approved terms (from the release, the knowledge base
    or a declaration) and no other code component is under a known non-OSI licence; not satisfied only on that
    definite evidence; otherwise insufficient evidence."""
    restricted = []
    for name in OSAID_CODE:
        result = by_name[name]
        info = result.license_info
        if result.status == "included" and info is not None and info.known and not info.osi_approved:
            restricted.append(f"{name} under {info.id} ({info.label}), not OSI-approved")
    if restricted:
        return NOT_SATISFIED, "code: " + "; ".join(restricted)
    training = by_name["Training code"]
    info = training.license_info
    if training.status == "included" and info is not None and info.osi_approved:
        return SATISFIED, ""
    return INSUFFICIENT, f"code: training code {training.status}" + (
        f" ({info.id} not recognised as OSI-approved)" if info is not None and training.status == "included" else "")


_UNDISCLOSED = (r"(training|pre-?training|fine-?tuning)\s+(data|datasets?|corpus)\b[^.]{0,80}\b(is|are|was|were|will)\s+"
                r"(not|never)\s+(be\s+)?(publicly\s+)?(disclosed|released|shared|made (public|available))"
                r"|\bundisclosed\s+(training\s+)?(data|datasets?)\b|\bproprietary\s+(training\s+)?(data|datasets?)\b"
                r"(?!\s+(is|are) not)")


def data_undisclosed_line(facts: "ReleaseFacts") -> int | None:
    """The card line stating that the training data is not disclosed (definite evidence for OSAID), or None."""
    card = facts.card
    return card.find_line(_UNDISCLOSED) if card is not None else None


def _data_elements(facts: "ReleaseFacts", results: "dict[str, ComponentResult]") -> list[str]:
    card = facts.card
    texts = [s.text for s in card.sections if s.topic in ("training-data", "preprocessing")] if card else []
    if card is not None and card.front_matter.get("datasets"):
        texts.append("datasets:")
    blob = "\n".join(texts).lower()
    return [name for name, rx in DATA_ELEMENTS.items() if re.search(rx, blob)]


def _data(by_name: "dict[str, ComponentResult]", facts: "ReleaseFacts") -> tuple[str, str]:
    """Satisfied when the training data is covered by open terms or by documented, known datasets (release,
    knowledge base, declaration); not satisfied only when the card says the data is undisclosed."""
    datasets = by_name["Datasets"]
    card = by_name["Data card"]
    info = datasets.license_info
    if datasets.status == "included" and info is not None and info.open:
        return SATISFIED, ""
    if datasets.status == "included" and "documented" in datasets.details:
        return SATISFIED, ""
    line = data_undisclosed_line(facts)
    if line is not None and facts.card is not None:
        return NOT_SATISFIED, f"data information: {facts.card.path}:{line} states the training data is not disclosed"
    elements = _data_elements(facts, by_name)
    located = datasets.status in ("included", "mentioned") and "described only" not in datasets.details
    if card.status == "included" and located and len(elements) >= 5:
        return SATISFIED, ""
    return INSUFFICIENT, (f"data information: {len(elements)}/7 elements described "
                          f"({', '.join(elements) or 'none'}); datasets {datasets.status}")


def assess_osaid(results: "tuple[ComponentResult, ...]", facts: "ReleaseFacts") -> OsaidResult:
    by_name = _by_name(results)
    outcomes = {"parameters": _parameters(by_name), "code": _code(by_name), "data_information": _data(by_name, facts)}
    statuses = {k: v[0] for k, v in outcomes.items()}
    reasons = tuple(v[1] for v in outcomes.values() if v[1])
    if NOT_SATISFIED in statuses.values():
        verdict = "not-compliant"
    elif all(s == SATISFIED for s in statuses.values()):
        verdict = "consistent"
    else:
        verdict = "insufficient-evidence"
    return OsaidResult(verdict, statuses, reasons)
