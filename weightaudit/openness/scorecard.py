"""Build the openness scorecard: components (with licence, evidence, confidence, 0–10 score and reason), the three
pillars, the MOF class (strict, and "if mentions hold"), OSAID 1.0 and a weighted 0–10 summary.

Component scores (research/openness.md 2.4): included with a type-appropriate open licence 10; included and open
but not type-appropriate 8; mentioned with a known open licence 6; included with no or an unrecognised licence 4;
mentioned with an unknown licence 3; restricted licence 2; absent 0; cannot be evaluated −1 (left out of the
summary, never shown as a pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from weightaudit.model import Release
from weightaudit.openness.assess_links import apply_known_model, with_knowledge
from weightaudit.openness.knowledge import load_knowledge
from weightaudit.openness.profile import build_profile
from weightaudit.openness.assess import ABSENT, INCLUDED, MENTIONED, UNKNOWN, Assessment
from weightaudit.openness.assessors import ASSESSORS
from weightaudit.openness.collect import EMPTY_FACTS, ReleaseFacts, collect
from weightaudit.openness.components import ALL_CHECKS, Component
from weightaudit.openness.declaration import Declaration, load_declaration
from weightaudit.openness.evidence import Confidence, Evidence
from weightaudit.openness.licenses import LicenseInfo, classify, mot_type_appropriate, normalise_license
from weightaudit.openness.licensing import ReleaseLicense, resolve_release_license
from weightaudit.openness.mof import MofRecord, MofResult, evaluate_mof
from weightaudit.openness.pillars import OsaidResult, Pillar, assess_osaid, assess_pillars, headline


@dataclass(frozen=True)
class ComponentResult:
    """One row of the scorecard."""

    key: str
    name: str
    mot_id: int
    mof_class: int
    content_type: str
    status: str
    confidence: Confidence
    license: str | None
    license_category: str | None
    score: float
    reason: str
    evidence: tuple[Evidence, ...]
    details: tuple[str, ...] = ()
    attested: bool = False
    external: bool = False

    @property
    def license_info(self) -> LicenseInfo | None:
        return classify(self.license) if self.license else None


@dataclass(frozen=True)
class Scorecard:
    name: str | None
    target: str | None
    components: tuple[ComponentResult, ...]
    pillars: Mapping[str, Pillar]
    headline: str
    mof: MofResult
    mof_if_mentions_hold: MofResult
    mof_declared: MofResult | None
    osaid: OsaidResult
    score: float | None
    release_license: str | None
    license_path: str | None
    license_conflicts: tuple[str, ...]
    license_evidence: tuple[Evidence, ...]
    declaration: str | None = None
    notes: tuple[str, ...] = field(default=())
    profile: tuple = field(default=())   # profile.ProfileItem: the index-style view (availability, docs, access)

    def component(self, name_or_key: str) -> ComponentResult:
        for result in self.components:
            if name_or_key in (result.name, result.key):
                return result
        raise KeyError(name_or_key)


# ------------------------------------------------------------------------------------------- licences


def _type_appropriate(info: LicenseInfo, content_type: str) -> bool:
    if mot_type_appropriate(info.id, content_type):
        return True
    if content_type == "code":
        return info.osi_approved
    if content_type == "data":
        return info.family in ("open-data", "open-model")
    return info.family in ("open-content", "open-model")


def _score(status: str, license_id: str | None, content_type: str) -> tuple[float, str]:
    if status in (UNKNOWN, "not-applicable"):
        return -1.0, "cannot be evaluated"
    if status == ABSENT:
        return 0.0, "absent"
    info = classify(license_id) if license_id else None
    if status == MENTIONED:
        if info is None or not info.known:
            return 3.0, "mentioned; licence unknown"
        return (6.0, f"mentioned; {info.label}") if info.open else (2.0, f"mentioned; {info.label}")
    if info is None:
        return 4.0, "included without a licence"
    if not info.known and info.category == "proprietary-or-unknown":
        return 4.0, f"included; licence {license_id} not recognised"
    if not info.open:
        return 2.0, f"included under a {info.label}"
    if not content_type or _type_appropriate(info, content_type):
        return 10.0, f"included under {info.id} ({info.label})"
    return 8.0, f"included under {info.id} ({info.label}; not type-appropriate for {content_type})"


def _stricter(first: str | None, second: str | None) -> str | None:
    if not first or not second:
        return first or second
    a, b = classify(first), classify(second)
    return first if (a.open, a.osi_approved) <= (b.open, b.osi_approved) else second


def _normalised_id(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    norm = normalise_license(raw)
    if norm.is_license:
        return norm.id
    return None if norm.kind in ("unlicensed", "not-included") else raw


# ------------------------------------------------------------------------------------------ components


def _declared_global(decl: Declaration | None, content_type: str) -> str | None:
    if decl is None:
        return None
    return _normalised_id(decl.global_licenses.get(content_type) or decl.global_licenses.get("distribution"))


def _merge(component: Component, local: Assessment, decl: Declaration | None, release_license: str | None,
           has_release: bool) -> tuple[Assessment, str | None, bool, tuple[str, ...]]:
    """Local assessment + declaration -> (assessment, licence id, attested, details)."""
    declared = decl.components.get(component.name) if decl else None
    details: list[str] = []
    if decl is not None and component.name in decl.not_released:
        ev = (Evidence(decl.path, "declared not released (weightaudit.not_released)", Confidence.ATTESTED),)
        return Assessment(ABSENT, Confidence.ATTESTED, local.evidence + ev, "declared not released"), None, True, ()
    if decl is not None and component.name in decl.not_applicable:
        ev = (Evidence(decl.path, "declared not applicable", Confidence.ATTESTED),)
        return Assessment("not-applicable", Confidence.ATTESTED, ev, "declared not applicable"), None, True, ()
    local_license = _normalised_id(local.license_raw) if local.license_raw else (
        None if local.external or local.status != INCLUDED or not component.mot_id else release_license)
    if declared is None:
        if decl is not None and not has_release and component.mot_id:
            ev = (Evidence(decl.path, "not listed in release.components", Confidence.ATTESTED),)
            return Assessment(ABSENT, Confidence.ATTESTED, ev, "not listed in the declaration (MOF: not included)"), \
                None, True, ()
        return local, local_license, False, ()
    declared_license = (_normalised_id(declared.license) if declared.license is not None
                        else _declared_global(decl, component.content_type) or release_license)
    where = decl.where(component.name) if decl else ""
    detail = "listed in release.components" + (f" ({declared.component_path})" if declared.component_path else "")
    evidence = (Evidence(where, detail, Confidence.ATTESTED, declared.component_path),)
    if local.status == INCLUDED and local.confidence == Confidence.VERIFIED:
        licence = local_license
        if declared_license and local_license and declared_license != local_license:
            licence = _stricter(local_license, declared_license)
            details.append(f"conflict: the release shows {local_license}, the declaration says {declared_license}; "
                           f"scoring {licence}")
        return replace(local, evidence=local.evidence + evidence), licence, False, tuple(details)
    reason = "attested in the declaration" + (f"; locally {local.status}" if has_release else "")
    kept = tuple(e for e in local.evidence if e.confidence != Confidence.ABSENT)
    merged = Assessment(INCLUDED, Confidence.ATTESTED, kept + evidence, reason)
    return merged, declared_license, True, ()


def _result(component: Component, assessment: Assessment, licence: str | None, attested: bool,
            details: tuple[str, ...]) -> ComponentResult:
    score, why = _score(assessment.status, licence, component.content_type)
    if component.mot_id == 0:
        score, why = _extra_score(assessment.status)
    if assessment.quality is not None and score > 0:
        score = round(score * assessment.quality, 1)
    info = classify(licence) if licence else None
    reason = assessment.reason if not why or why in assessment.reason else f"{assessment.reason}; {why}"
    return ComponentResult(
        key=component.key, name=component.name, mot_id=component.mot_id, mof_class=component.mof_class,
        content_type=component.content_type, status=assessment.status, confidence=assessment.confidence,
        license=licence, license_category=info.category if info else None, score=score, reason=reason,
        evidence=assessment.evidence, details=assessment.details + details, attested=attested,
        external=assessment.external,
    )


def _extra_score(status: str) -> tuple[float, str]:
    return {"open": (10.0, ""), "gated": (3.0, ""), "included": (10.0, ""), "absent": (0.0, ""),
            "derivative": (5.0, "")}.get(status, (-1.0, ""))


# ---------------------------------------------------------------------------------------------- MOF


def _mof_record(results: tuple[ComponentResult, ...], statuses: tuple[str, ...], inherit: str | None) -> MofRecord:
    components: dict[int, str | None] = {}
    for result in results:
        if result.mot_id and result.status in statuses:
            licence = result.license
            if licence is None and result.status == MENTIONED:
                licence = inherit
            components[result.mot_id] = licence or ""
    return MofRecord(components)


def _aggregate(results: tuple[ComponentResult, ...], weights: Mapping[str, float]) -> float | None:
    scored = [(weights[r.key], r.score) for r in results if r.score >= 0]
    total = sum(w for w, _ in scored)
    return round(sum(w * s for w, s in scored) / total, 1) if total else None


# ------------------------------------------------------------------------------------------------ build


def _known_licence(facts: ReleaseFacts, rl: ReleaseLicense) -> tuple[str | None, tuple[Evidence, ...]]:
    """The release's licence, else the identified model's record licence (confidence known)."""
    if rl.id is not None or facts.known_model is None or not facts.known_model[0].license:
        return rl.id, ()
    model, matched, where = facts.known_model
    return model.license, (Evidence(where, f"licence {model.license}, per {model.source} (identified by '{matched}')",
                                    Confidence.KNOWN),)


def build_scorecard(release: Release | None, declaration: Path | None = None,
                    knowledge: Path | str | None = None) -> Scorecard:
    """The openness scorecard of a release folder, a declaration file, or both (declaration fills the gaps).
    ``knowledge``: a user's knowledge file added to the bundled knowledge base (knowledge.py)."""
    decl = load_declaration(declaration) if declaration is not None else None
    kb = load_knowledge(knowledge)
    facts: ReleaseFacts = collect(release) if release is not None else EMPTY_FACTS
    facts = with_knowledge(facts, kb)
    rl: ReleaseLicense = resolve_release_license(facts)
    distribution, known_licence_evidence = _known_licence(facts, rl)
    conflicts = list(rl.conflicts)
    declared_distribution = _normalised_id(decl.global_licenses.get("distribution")) if decl else None
    if declared_distribution and distribution and declared_distribution != distribution:
        stricter = _stricter(distribution, declared_distribution)
        conflicts.append(f"the release shows {distribution}, {decl.path if decl else ''} declares "
                         f"{declared_distribution}; scoring {stricter}")
        distribution = stricter
    elif declared_distribution and distribution is None and release is None:
        distribution = declared_distribution
    results = []
    for component in ALL_CHECKS:
        local = ASSESSORS[component.key](facts)
        if component.mot_id:
            local = apply_known_model(local, component.name, facts)
        merged, licence, attested, details = _merge(component, local, decl, distribution, release is not None)
        results.append(_result(component, merged, licence, attested, details))
    results_t = tuple(results)
    weights = {c.key: c.weight for c in ALL_CHECKS}
    strict = evaluate_mof(_mof_record(results_t, (INCLUDED,), None))
    loose = evaluate_mof(_mof_record(results_t, (INCLUDED, MENTIONED), distribution))
    pillars = assess_pillars(results_t)
    licence_evidence = rl.evidence() + known_licence_evidence
    if decl is not None and declared_distribution:
        licence_evidence += (Evidence(f"{decl.path} release.license.distribution", declared_distribution,
                                      Confidence.ATTESTED),)
    license_path = next((c.source.split(":")[0] for c in rl.claims if c.id == distribution
                         and c.confidence == Confidence.VERIFIED), None)
    name = decl.release_name if decl else (Path(release.root).name if release is not None else None)
    notes = ("the folder listing was truncated",) if facts.truncated else ()
    if rl.confidence == Confidence.MENTIONED and rl.id:
        notes += (f"licence {rl.id} read from prose (no licence field or recognised LICENSE title): lower confidence",)
    card = Scorecard(
        name=name,
        target=release.target if release is not None else (str(declaration) if declaration else None),
        components=results_t,
        pillars=pillars,
        headline=headline(pillars),
        mof=strict,
        mof_if_mentions_hold=loose,
        mof_declared=evaluate_mof(decl.record) if decl is not None else None,
        osaid=assess_osaid(results_t, facts),
        score=_aggregate(results_t, weights),
        release_license=distribution,
        license_path=license_path,
        license_conflicts=tuple(dict.fromkeys(conflicts)),
        license_evidence=licence_evidence,
        declaration=str(declaration) if declaration else None,
        notes=notes,
    )
    return replace(card, profile=build_profile(card, facts.card.body if facts.card else ""))


