"""WA5xx openness rules: what ``audit`` reports about licences and disclosure, read from the release folder.

Severities are chosen so a policy can gate on them: openness is not a security defect, so most are ``low``; a
release with weights and no licence at all, or with contradictory licences, is ``medium`` (users cannot know
their rights). Raise them in a policy (``rules: {WA503: {severity: high}}``) to require open licences.

| id | name | default |
|---|---|---|
| WA501 | no-license | medium |
| WA502 | license-conflict | medium |
| WA503 | restricted-weights-license | low |
| WA504 | training-code-undisclosed | low |
| WA505 | training-data-undisclosed | low |
| WA506 | model-card-missing | low |
| WA507 | license-unrecognised | info |
| WA508 | license-only-in-prose | low |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from weightaudit.model import Finding, Release, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

if TYPE_CHECKING:   # the openness machinery (licence tables, knowledge base) loads when a WA5xx check runs
    from weightaudit.openness.collect import ReleaseFacts
    from weightaudit.openness.licensing import ReleaseLicense

_TAGS = ("openness", "license")
_CACHE: list[tuple[Release, ReleaseFacts, ReleaseLicense]] = []


def _facts(release: Release) -> tuple[ReleaseFacts, ReleaseLicense]:
    """Collect once per release (the rules below share the walk)."""
    from weightaudit.openness.assess_links import with_knowledge
    from weightaudit.openness.collect import collect
    from weightaudit.openness.knowledge import load_knowledge
    from weightaudit.openness.licensing import resolve_release_license

    for cached, facts, licence in _CACHE:
        if cached is release:
            return facts, licence
    facts = with_knowledge(collect(release), load_knowledge())   # links resolved as the scorecard does
    licence = resolve_release_license(facts)
    _CACHE.append((release, facts, licence))
    del _CACHE[:-4]
    return facts, licence


def _card_path(facts: ReleaseFacts) -> str:
    return facts.card.path if facts.card else "."


def _embedded_licenses(ctx: AuditContext) -> list[tuple[str, str]]:
    """(file, licence) declared inside weight files' own metadata (GGUF general.license, safetensors
    __metadata__ 'license')."""
    found = []
    for loaded in ctx.files:
        metadata = loaded.facts.get("metadata") or {}
        value = loaded.facts.get("license") or metadata.get("general.license") or metadata.get("license")
        if isinstance(value, str) and value.strip():
            found.append((loaded.path, value.strip()))
    return found


def _check_no_license(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    facts, licence = _facts(ctx.release)
    if not facts.weight_files or licence.claims:
        return
    embedded = _embedded_licenses(ctx)
    if embedded:
        path, value = embedded[0]
        yield NO_LICENSE.finding(path, f"the only licence is declared inside the weight file ({value!r}); no card "
                                 "`license` field and no LICENSE text ship with the release", severity=Severity.LOW)
        return
    yield NO_LICENSE.finding(_card_path(facts), "weights are released with no licence: no card `license` field "
                             "and no LICENSE/COPYING file, so nobody is granted any rights")


def _check_conflict(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    facts, licence = _facts(ctx.release)
    for message in licence.conflicts:
        yield LICENSE_CONFLICT.finding(message.split(":")[0].split(" says ")[0] or ".", message)


def _check_restricted(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    facts, licence = _facts(ctx.release)
    if not facts.weight_files or licence.id is None:
        return
    from weightaudit.openness.licenses import classify

    info = classify(licence.id)
    if info.known and not info.open:
        source = next((c.source for c in licence.claims if c.id == licence.id), _card_path(facts))
        yield RESTRICTED_WEIGHTS.finding(source.split(":")[0].split(" ")[0],
                                         f"the weights are under {licence.id}, a {info.label}: not open-source terms")


def _check_training_code(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    from weightaudit.openness.assess import ABSENT, assess_training_code

    facts, _ = _facts(ctx.release)
    if facts.weight_files and assess_training_code(facts).status == ABSENT:
        yield TRAINING_CODE.finding(_card_path(facts), "no training code in the release and none linked from the "
                                    "model card")


def _check_training_data(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    from weightaudit.openness.assess import ABSENT, assess_datasets

    facts, _ = _facts(ctx.release)
    if facts.weight_files and assess_datasets(facts).status == ABSENT:
        yield TRAINING_DATA.finding(_card_path(facts), "nothing is disclosed about the training data (no `datasets` "
                                    "field, dataset links or training-data section)")


def _check_model_card(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    facts, _ = _facts(ctx.release)
    if facts.weight_files and facts.card is None:
        yield MODEL_CARD.finding(".", "no model card (README.md) in the release")


def _check_prose_only(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    facts, licence = _facts(ctx.release)
    if not facts.weight_files or licence.id is None or licence.confidence.value != "mentioned":
        return
    source = next((c.source for c in licence.claims if c.id == licence.id), _card_path(facts))
    yield PROSE_ONLY.finding(source.split(":")[0].split(" ")[0],
                             f"the licence ({licence.id}) is only named in prose at {source}: no `license:` field and "
                             "no LICENSE text with a recognised title")


def _check_unrecognised(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    facts, licence = _facts(ctx.release)
    for claim in licence.unrecognised:
        yield UNRECOGNISED.finding(claim.source.split(":")[0].split(" ")[0],
                                   f"licence not recognised at {claim.source}: {claim.raw[:80]!r}")


NO_LICENSE = register(Rule(
    "WA501", "no-license", "Weights are released without any licence.", Severity.MEDIUM, tags=_TAGS,
    help="Neither the model card (`license:`) nor a LICENSE/COPYING file states a licence. Without one, copyright "
         "law grants nobody the right to use, modify or share the weights.\n\nWhat to do: add a LICENSE file and the "
         "`license:` field to the model card (for open weights: Apache-2.0, MIT, CDLA-Permissive-2.0 or OpenMDW).",
    check=_check_no_license))
LICENSE_CONFLICT = register(Rule(
    "WA502", "license-conflict", "Licence sources in the release disagree.", Severity.MEDIUM, tags=_TAGS,
    help="The model card, the LICENSE text, the gate prompt or a NOTICE name different licences (for example the "
         "card says apache-2.0 while LICENSE is the Llama 2 Community License). Users cannot tell which terms "
         "apply; the scorecard assumes the stricter one.\n\nWhat to do: make the card metadata match the licence "
         "text actually shipped.", check=_check_conflict))
RESTRICTED_WEIGHTS = register(Rule(
    "WA503", "restricted-weights-license", "The weights are under a restricted-use or non-commercial licence.",
    Severity.LOW, tags=_TAGS, confidence="medium",
    help="The effective licence is a community / RAIL / research / non-commercial licence (Llama, Gemma, "
         "BigScience RAIL, OpenRAIL, CC-BY-NC...). Such licences restrict fields of use or users, so the release is "
         "not open source under OSAID 1.0 or MOF.\n\nWhat to do: if you need open weights, pick a model under an "
         "OSI-approved or open-data licence; raise this rule's severity in a policy to enforce it.",
    check=_check_restricted))
TRAINING_CODE = register(Rule(
    "WA504", "training-code-undisclosed", "No training code is released or linked.", Severity.LOW, tags=("openness",),
    confidence="medium",
    help="No training script is in the release and the model card links no training repository. Without the code "
         "that produced the weights the model cannot be studied or reproduced (MOF class II, OSAID code).\n\nWhat "
         "to do: publish the training code under an OSI-approved licence and link it from the card, or declare it "
         "with `weightaudit scorecard --declare`.", check=_check_training_code))
TRAINING_DATA = register(Rule(
    "WA505", "training-data-undisclosed", "Nothing is disclosed about the training data.", Severity.LOW,
    tags=("openness",), confidence="medium",
    help="The model card has no `datasets` field, no dataset links and no training-data section. OSAID requires "
         "detailed data information; MOF class I requires the datasets.\n\nWhat to do: list the datasets (with "
         "links) and document provenance, selection and filtering in the card or a data card.",
    check=_check_training_data))
MODEL_CARD = register(Rule(
    "WA506", "model-card-missing", "The release has no model card.", Severity.LOW, tags=("openness",),
    help="No README.md / model card was found next to the weights. The model card is a required MOF class III "
         "component and the usual place for the licence, intended use, limitations and training details.\n\nWhat "
         "to do: add a README.md with YAML front matter (license, datasets, base_model) and the standard sections.",
    check=_check_model_card))
UNRECOGNISED = register(Rule(
    "WA507", "license-unrecognised", "A licence name or text is not recognised.", Severity.INFO, tags=_TAGS,
    confidence="low",
    help="A licence field or LICENSE file could not be matched to an SPDX or known AI licence (for example "
         "`license: other` with a custom text). Its openness cannot be judged automatically.\n\nWhat to do: use an "
         "SPDX id, or review the text by hand and declare it in a MOF YAML.", check=_check_unrecognised))
PROSE_ONLY = register(Rule(
    "WA508", "license-only-in-prose", "The licence is named only in the model card's prose.", Severity.LOW,
    tags=_TAGS, confidence="medium",
    help="Neither the card's `license:` field nor a LICENSE file with a recognised title states the licence; it "
         "was found in a sentence (\"released under the Apache 2.0 license\"). Tools and the Hub read the field, "
         "so the release looks unlicensed to them, and a sentence can be ambiguous.\n\nWhat to do: add the "
         "`license:` field (SPDX id or Hub licence id) and ship the LICENSE text.", check=_check_prose_only))
