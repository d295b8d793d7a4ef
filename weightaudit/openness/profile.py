"""An index-style openness profile beside the MOF view: the dimensions openness indexes rate (availability,
documentation, access), each ``open`` / ``partial`` / ``closed`` with its reason and evidence, drawn from the same
resolved components as the scorecard. ``render_comparison`` puts several releases side by side.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from weightaudit.openness.evidence import Evidence

if TYPE_CHECKING:
    from weightaudit.openness.scorecard import ComponentResult, Scorecard

OPEN, PARTIAL, CLOSED = "open", "partial", "closed"


@dataclass(frozen=True)
class ProfileItem:
    group: str          # availability | documentation | access
    dimension: str
    level: str          # open | partial | closed
    reason: str
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict:
        return {"group": self.group, "dimension": self.dimension, "level": self.level, "reason": self.reason,
                "evidence": [e.to_dict() for e in self.evidence[:3]]}


def _licensed(result: "ComponentResult", osi: bool = False) -> tuple[str, str]:
    """Available under open terms -> open; available otherwise (restricted, no licence, only linked) -> partial."""
    info = result.license_info
    if result.status == "included":
        good = info is not None and (info.osi_approved if osi else info.open)
        if good:
            return OPEN, result.reason if result.confidence.value == "known" else f"{result.name}: {info.id}"
        return PARTIAL, f"{result.name} available, " + (f"under {info.id} ({info.label})" if info else "no licence")
    if result.status == "mentioned":
        return PARTIAL, f"{result.name} linked, terms not known"
    return CLOSED, f"{result.name} {result.status}"


def _document(result: "ComponentResult") -> tuple[str, str]:
    if result.status in ("included", "mentioned"):
        return OPEN, f"{result.name} {result.status}"
    return CLOSED, f"{result.name} {result.status}"


def _item(group: str, dimension: str, result: "ComponentResult", judge: Callable) -> ProfileItem:
    level, reason = judge(result)
    return ProfileItem(group, dimension, level, reason, result.evidence)


def _weights(sc: "Scorecard") -> ProfileItem:
    item = _item("availability", "end-model weights", sc.component("Model parameters (Final)"), _licensed)
    access = sc.component("Access gating")
    if item.level == OPEN and access.status == "gated":
        return ProfileItem(item.group, item.dimension, PARTIAL, item.reason + "; downloads gated",
                           item.evidence + access.evidence[:1])
    return item


def _base_weights(sc: "Scorecard", end: ProfileItem) -> ProfileItem:
    lineage = sc.component("Base-model lineage")
    if lineage.status == "derivative":
        return ProfileItem("availability", "base-model weights", PARTIAL,
                           "derived from a base model not evaluated here", lineage.evidence)
    return ProfileItem("availability", "base-model weights", end.level, "original model: the end-model weights",
                       end.evidence)


def _licences(sc: "Scorecard") -> ProfileItem:
    from weightaudit.openness.licenses import classify

    evidence = sc.license_evidence
    if not sc.release_license:
        return ProfileItem("availability", "licences", CLOSED, "no licence found", evidence)
    info = classify(sc.release_license)
    if info.open:
        return ProfileItem("availability", "licences", OPEN, f"{info.id} ({info.label})", evidence)
    level = PARTIAL if info.known and info.category != "proprietary-or-unknown" else CLOSED
    return ProfileItem("availability", "licences", level, f"{info.id} ({info.label})", evidence)


def _code_docs(sc: "Scorecard") -> ProfileItem:
    training, architecture = sc.component("Training code"), sc.component("Model architecture")
    if training.status == "included" and architecture.status == "included":
        return ProfileItem("documentation", "code documentation", PARTIAL,
                           "training and architecture code available; their documentation is not read offline",
                           training.evidence[:1] + architecture.evidence[:1])
    return ProfileItem("documentation", "code documentation", CLOSED, "no training code to document",
                       training.evidence[:1])


def _model_card(sc: "Scorecard") -> ProfileItem:
    card = sc.component("Model card")
    if card.status != "included":
        return ProfileItem("documentation", "model card", CLOSED, "no model card", card.evidence)
    level = OPEN if card.score >= 6 else PARTIAL
    return ProfileItem("documentation", "model card", level, card.details[0] if card.details else card.reason,
                       card.evidence)


def _datasheet(sc: "Scorecard") -> ProfileItem:
    datasets, data_card = sc.component("Datasets"), sc.component("Data card")
    if "documented" in datasets.details:
        return ProfileItem("documentation", "datasheet", OPEN, "known datasets with published documentation",
                           datasets.evidence)
    if data_card.status == "included":
        level = OPEN if data_card.confidence.value == "verified" else PARTIAL
        return ProfileItem("documentation", "datasheet", level, data_card.reason, data_card.evidence)
    return ProfileItem("documentation", "datasheet", CLOSED, "no data card or training-data documentation",
                       data_card.evidence)


def _package(sc: "Scorecard") -> ProfileItem:
    inference = sc.component("Inference code")
    if inference.status == "included":
        return ProfileItem("access", "package", OPEN, inference.reason, inference.evidence)
    return ProfileItem("access", "package", CLOSED, "no library or inference code to run it", inference.evidence)


def _api(sc: "Scorecard", card_text: str) -> ProfileItem:
    if re.search(r"\b(inference api|hosted api|api access|serverless|inference endpoints?|la plateforme)\b",
                 card_text, re.IGNORECASE):
        return ProfileItem("access", "API", OPEN, "a hosted API is named in the model card")
    return ProfileItem("access", "API", CLOSED, "no hosted API named in the model card (not checked online)")


def build_profile(sc: "Scorecard", card_text: str = "") -> tuple[ProfileItem, ...]:
    end = _weights(sc)
    return (
        _item("availability", "training code", sc.component("Training code"), lambda r: _licensed(r, osi=True)),
        _base_weights(sc, end),
        end,
        _item("availability", "training data", sc.component("Datasets"), _licensed),
        _licences(sc),
        _code_docs(sc),
        _item("documentation", "architecture", sc.component("Model architecture"), _document),
        _item("documentation", "preprint", sc.component("Technical report"), _document),
        _item("documentation", "paper", sc.component("Research paper"), _document),
        _model_card(sc),
        _datasheet(sc),
        _package(sc),
        _api(sc, card_text),
    )


# ------------------------------------------------------------------------------------------------ rendering


def profile_lines(profile: Sequence[ProfileItem], width: int) -> list[str]:
    lines = ["Openness profile (index view)"]
    for item in profile:
        source = item.evidence[0].url or item.evidence[0].source if item.evidence else "-"
        text = f"  {item.group:<13} {item.dimension:<19} {item.level:<8} {item.reason} [{source}]"
        lines += textwrap.wrap(text, width=width, subsequent_indent=" " * 45, break_on_hyphens=False) or [text]
    return lines


def profile_markdown(profile: Sequence[ProfileItem]) -> list[str]:
    out = ["", "| group | dimension | level | reason | evidence |", "|---|---|---|---|---|"]
    for item in profile:
        ev = ", ".join(f"`{e.url or e.source}`" for e in item.evidence[:2]) or "-"
        out.append(f"| {item.group} | {item.dimension} | {item.level} | {item.reason.replace('|', '/')} | {ev} |")
    return out


def _rows(cards: Sequence["Scorecard"]) -> tuple[list[str], list[list[str]]]:
    names = [sc.name or sc.target or f"#{i + 1}" for i, sc in enumerate(cards)]
    profiles = [sc.profile for sc in cards]
    rows = [["headline"] + [sc.headline for sc in cards],
            ["licence"] + [sc.release_license or "none" for sc in cards],
            ["MOF class"] + [sc.mof.label.split(" - ")[0] for sc in cards],
            ["OSAID 1.0"] + [sc.osaid.verdict for sc in cards]]
    for index, item in enumerate(profiles[0]):
        rows.append([f"{item.group}: {item.dimension}"] + [p[index].level for p in profiles])
    rows.append(["score"] + ["n/a" if sc.score is None else f"{sc.score:g}" for sc in cards])
    return ["dimension"] + names, rows


def render_comparison(cards: Sequence["Scorecard"], fmt: str, width: int = 160) -> str:
    """Several scorecards side by side: headline, licence, MOF, OSAID and every profile dimension."""
    header, rows = _rows(cards)
    if fmt == "markdown":
        out = ["## Openness comparison", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
        return "\n".join(out) + "\n"
    first = max(len(row[0]) for row in rows + [header])
    rest = max(8, (width - first - 2) // max(1, len(header) - 1) - 2)
    lines = ["Openness comparison"]
    for row in [header] + rows:   # long cells wrap onto more lines: nothing is cut
        wrapped = [textwrap.wrap(c, rest, break_on_hyphens=False) or [""] for c in row[1:]]
        for depth in range(max(len(w) for w in wrapped)):
            cells = [(row[0] if depth == 0 else "").ljust(first)]
            cells += [(w[depth] if depth < len(w) else "").ljust(rest) for w in wrapped]
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
