"""The release's own licence: every claim found (card fields, LICENSE texts, gate prompt, NOTICE), the effective
licence (the most restrictive recognised claim: when sources disagree we score the stricter reading), and the
conflicts between sources, each naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weightaudit.openness.collect import ReleaseFacts
from weightaudit.openness.evidence import Confidence, Evidence
from weightaudit.openness.licenses import (
    NormalisedLicense,
    classify,
    find_licenses_in_prose,
    identify_license_text,
    normalise_license,
)


@dataclass(frozen=True)
class LicenseClaim:
    """One source saying which licence applies."""

    source: str
    raw: str
    normalised: NormalisedLicense
    confidence: Confidence

    @property
    def id(self) -> str | None:
        return self.normalised.id if self.normalised.is_license else None

    def evidence(self) -> Evidence:
        shown = self.id or f"not recognised: {self.raw[:60]!r}"
        return Evidence(self.source, f"licence {shown}", self.confidence)


@dataclass(frozen=True)
class ReleaseLicense:
    id: str | None
    claims: tuple[LicenseClaim, ...]
    conflicts: tuple[str, ...]
    confidence: Confidence = Confidence.DECLARED   # MENTIONED when only prose names the licence

    @property
    def recognised(self) -> tuple[LicenseClaim, ...]:
        return tuple(c for c in self.claims if c.id)

    @property
    def unrecognised(self) -> tuple[LicenseClaim, ...]:
        return tuple(c for c in self.claims if not c.id and c.normalised.kind == "unrecognised")

    def evidence(self) -> tuple[Evidence, ...]:
        return tuple(c.evidence() for c in self.claims)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _card_claims(facts: ReleaseFacts) -> list[LicenseClaim]:
    card = facts.card
    if card is None:
        return []
    claims = []
    fm = card.front_matter
    names = _as_list(fm.get("license_name"))
    for raw in _as_list(fm.get("license")):
        if raw.strip().lower() in ("other", "unknown") and names:
            continue
        claims.append(LicenseClaim(card.field_source("license"), raw, normalise_license(raw), Confidence.DECLARED))
    for raw in names:
        claims.append(LicenseClaim(card.field_source("license_name"), raw, normalise_license(raw), Confidence.DECLARED))
    gate = fm.get("extra_gated_prompt")
    if isinstance(gate, str):
        match = identify_license_text(gate)
        if match is not None:
            claims.append(LicenseClaim(card.field_source("extra_gated_prompt"), match.phrase,
                                       NormalisedLicense(match.phrase, "license", match.id), Confidence.DECLARED))
    return claims


def _file_claims(facts: ReleaseFacts) -> list[LicenseClaim]:
    claims = []
    for text_file in facts.license_files:
        if text_file.license is not None:
            match = text_file.license
            claims.append(LicenseClaim(f"{text_file.rel}:{match.line}", match.phrase,
                                       NormalisedLicense(match.phrase, "license", match.id), Confidence.VERIFIED))
        else:
            first = next((line.strip() for line in text_file.text.splitlines() if line.strip()), "")
            claims.append(LicenseClaim(text_file.rel, first[:80], NormalisedLicense(first[:80], "unrecognised"),
                                       Confidence.VERIFIED))
    for text_file in facts.notice_files:
        if text_file.license is not None:
            match = text_file.license
            claims.append(LicenseClaim(f"{text_file.rel}:{match.line}", match.phrase,
                                       NormalisedLicense(match.phrase, "license", match.id), Confidence.MENTIONED))
    return claims


def _prose_claims(facts: ReleaseFacts) -> list[LicenseClaim]:
    """Licences named in the card's body and in LICENSE files no title rule recognised (lower confidence)."""
    claims = []
    if facts.card is not None:
        offset = facts.card.body_line - 1
        for match in find_licenses_in_prose(facts.card.body):
            claims.append(LicenseClaim(f"{facts.card.path}:{match.line + offset}", match.phrase,
                                       NormalisedLicense(match.phrase, "license", match.id), Confidence.MENTIONED))
    for text_file in facts.license_files:
        if text_file.license is None:
            for match in find_licenses_in_prose(text_file.text)[:1]:
                claims.append(LicenseClaim(f"{text_file.rel}:{match.line}", match.phrase,
                                           NormalisedLicense(match.phrase, "license", match.id), Confidence.MENTIONED))
    return claims


def _strictness(license_id: str) -> tuple[bool, bool]:
    info = classify(license_id)
    return (info.open, info.osi_approved)


def resolve_release_license(facts: ReleaseFacts) -> ReleaseLicense:
    """All licence claims of a release, the effective licence and the conflicts between claims."""
    claims = _file_claims(facts) + _card_claims(facts)
    recognised = [c for c in claims if c.id]
    confidence = Confidence.DECLARED
    if not recognised:   # no field or title names it: the card's prose or the LICENSE's wording may
        prose = _prose_claims(facts)
        claims += prose
        recognised = prose
        confidence = Confidence.MENTIONED
    if not recognised:
        return ReleaseLicense(None, tuple(claims), ())
    strictest = min(recognised, key=lambda c: (_strictness(c.id or ""), -c.confidence.rank))
    conflicts = []
    for claim in recognised:
        if claim.id != strictest.id:
            conflicts.append(
                f"{claim.source} says {claim.id} ({classify(claim.id).label}) but {strictest.source} says "
                f"{strictest.id} ({classify(strictest.id).label}); scoring the stricter {strictest.id}"
            )
    return ReleaseLicense(strictest.id, tuple(claims), tuple(dict.fromkeys(conflicts)), confidence)
