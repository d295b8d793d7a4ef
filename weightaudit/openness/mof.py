"""The MOF class, computed exactly as the Model Openness Tool (MOT) computes it.

Facts from MOT's ``ModelEvaluator`` (lfai/model_openness_tool, ``web/modules/mof/src``), re-expressed here:

1. A component counts when it is listed in ``release.components``.
2. Its licence: the component's own ``license`` (an empty value means "included, unlicensed" and does not fall
   through), else ``release.license.<content type>.name``, else ``release.license.distribution.name``, else
   unlicensed.
3. The licence is open when OSI-approved, FSF-libre, in MOT's open-data list, or OpenMDW-1.0 (exact,
   case-sensitive ids); an open licence that is not type-appropriate still counts (with a warning).
4. Classes are cumulative (III, then II, then I). A class's progress is the share of its required components
   (with every higher class's) that are included with an open licence; a lower class is 0 unless every higher
   class is complete. A research paper stands in for a missing technical report (it is copied into classes II and
   III, and class I needs one fewer component). The class is the best one at 100 %.

``evaluate_mof(record)`` is MOT-exact. ``normalise_record(record)`` first maps free-text licence names through
weightaudit's licence table (``Apache 2.0`` -> ``Apache-2.0``, "Component not included" -> not listed): the
difference between the two is where our normalisation is deliberately better than MOT's raw string match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from weightaudit.openness.components import component_by_mot_id, optional_ids, required_ids
from weightaudit.openness.licenses import (
    NOT_INCLUDED,
    RECOGNISED,
    UNLICENSED,
    UNRECOGNISED,
    mot_is_open,
    mot_type_appropriate,
    normalise_license,
)

CLASS_LABELS = {
    0: "Unclassified",
    1: "Class I - Open Science Model",
    2: "Class II - Open Tooling Model",
    3: "Class III - Open Model",
}
TECHNICAL_REPORT = 11
RESEARCH_PAPER = 21
GLOBAL_KEYS = ("distribution", "code", "data", "document")


@dataclass(frozen=True)
class MofRecord:
    """What MOT reads of a MOF YAML: listed components with their own licence, and the global licences.

    ``components`` maps MOT component id -> the component's own licence: None when the record gives none (the
    global licences apply), ``""`` when it is explicitly unlicensed, else the licence string as written.
    """

    components: Mapping[int, str | None]
    global_licenses: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _ClassEval:
    missing: list[int] = field(default_factory=list)
    included: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    unlicensed: list[int] = field(default_factory=list)
    optional: list[int] = field(default_factory=list)
    licenses: dict[int, str] = field(default_factory=dict)

    def status(self, cid: int) -> str | None:
        for name in ("included", "invalid", "unlicensed"):
            if cid in getattr(self, name):
                return name
        return None


@dataclass(frozen=True)
class MofResult:
    """MOT's verdict: class (0 = unclassified), label, per-class progress in %, and the component lists."""

    mof_class: int
    label: str
    progress: Mapping[int, float]
    missing: tuple[str, ...]
    invalid: tuple[str, ...]
    unlicensed: tuple[str, ...]
    not_type_appropriate: tuple[str, ...]
    licenses: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.mof_class,
            "label": self.label,
            "progress": {str(k): round(v, 1) for k, v in sorted(self.progress.items())},
            "missing": list(self.missing),
            "invalid": list(self.invalid),
            "unlicensed": list(self.unlicensed),
            "not_type_appropriate": list(self.not_type_appropriate),
        }


IsOpen = Callable[[str], bool]
IsTypeAppropriate = Callable[[str, str], bool]


def _resolve(cid: int, record: MofRecord) -> str:
    own = record.components.get(cid)
    if own is not None:
        return own or "unlicensed"
    content_type = component_by_mot_id(cid).content_type
    return record.global_licenses.get(content_type) or record.global_licenses.get("distribution") or "unlicensed"


def _evaluate_into(ev: _ClassEval, ids: list[int], record: MofRecord, bucket: str, not_appropriate: list[int],
                   is_open: IsOpen, type_ok: IsTypeAppropriate) -> None:
    for cid in ids:
        if cid not in record.components:
            if bucket == "included":
                ev.missing.append(cid)
            continue
        license_id = _resolve(cid, record)
        content_type = component_by_mot_id(cid).content_type
        if is_open(license_id):
            getattr(ev, bucket).append(cid)
            if not type_ok(license_id, content_type) and cid not in not_appropriate:
                not_appropriate.append(cid)
        elif license_id == "unlicensed":
            ev.unlicensed.append(cid)
        else:
            ev.invalid.append(cid)
        ev.licenses[cid] = license_id


def _evaluate(record: MofRecord, is_open: IsOpen, type_ok: IsTypeAppropriate) -> tuple[dict[int, _ClassEval], list[int]]:
    evals: dict[int, _ClassEval] = {}
    not_appropriate: list[int] = []
    required: list[int] = []
    optional: list[int] = []
    for mof_class in (3, 2, 1):
        required += required_ids(mof_class)
        optional += optional_ids(mof_class)
        ev = evals[mof_class] = _ClassEval()
        _evaluate_into(ev, required, record, "included", not_appropriate, is_open, type_ok)
        _evaluate_into(ev, optional, record, "optional", not_appropriate, is_open, type_ok)
    _technical_report_omission(evals)
    return evals, not_appropriate


def _technical_report_omission(evals: dict[int, _ClassEval]) -> None:
    """A research paper may replace the technical report (MOT's handleTechnicalReportOmission)."""
    if evals[3].status(TECHNICAL_REPORT) == "included":
        return
    paper = evals[1].status(RESEARCH_PAPER)
    if paper is None:
        return
    for mof_class in (1, 2, 3):
        if TECHNICAL_REPORT in evals[mof_class].missing:
            evals[mof_class].missing.remove(TECHNICAL_REPORT)
    for mof_class in (2, 3):
        getattr(evals[mof_class], paper).append(RESEARCH_PAPER)
        evals[mof_class].licenses[RESEARCH_PAPER] = evals[1].licenses.get(RESEARCH_PAPER, "")


def _progress(evals: dict[int, _ClassEval], mof_class: int) -> float:
    total = 0
    included = 0
    level = 3
    while level >= mof_class:
        total += len(required_ids(level))
        included = len(evals[level].included)
        if included < total:
            break
        level -= 1
    if level > mof_class:
        return 0.0
    if (mof_class == 1 and evals[1].status(TECHNICAL_REPORT) != "included"
            and evals[1].status(RESEARCH_PAPER) == "included"):
        total -= 1
    return min(included / total * 100.0, 100.0)


def _names(ids: list[int]) -> tuple[str, ...]:
    seen: list[str] = []
    for cid in ids:
        name = component_by_mot_id(cid).name
        if name not in seen:
            seen.append(name)
    return tuple(seen)


def evaluate_mof(record: MofRecord, is_open: IsOpen = mot_is_open,
                 type_ok: IsTypeAppropriate = mot_type_appropriate) -> MofResult:
    """MOT's classification of a record (exact licence-id matching unless other tests are given)."""
    evals, not_appropriate = _evaluate(record, is_open, type_ok)
    progress = {c: _progress(evals, c) for c in (3, 2, 1)}
    best = 0
    for mof_class in (3, 2, 1):
        if progress[mof_class] == 100.0:
            best = mof_class
    final = evals[1]
    return MofResult(
        mof_class=best,
        label=CLASS_LABELS[best],
        progress={1: progress[1], 2: progress[2], 3: progress[3]},
        missing=_names(final.missing),
        invalid=_names(final.invalid),
        unlicensed=_names(final.unlicensed),
        not_type_appropriate=_names(not_appropriate),
        licenses={component_by_mot_id(c).name: lic for c, lic in final.licenses.items()},
    )


def record_from_mof(data: Mapping[str, Any]) -> MofRecord:
    """Read the parts of a MOF YAML document (``framework`` + ``release``) that MOT's evaluator uses.

    Component names must be MOF names (the declaration loader checks them first); later entries override
    earlier ones, as in MOT.
    """
    from weightaudit.openness.components import component_by_name

    release = data.get("release") or {}
    components: dict[int, str | None] = {}
    for entry in release.get("components") or ():
        component = component_by_name(str(entry.get("name", "")))
        if component is None:
            continue
        own = entry.get("license")
        own_text = None if own is None else str(own)
        if own_text == "unlicensed":
            own_text = ""
        components[component.mot_id] = own_text
    globals_: dict[str, str] = {}
    license_block = release.get("license")
    if isinstance(license_block, Mapping):
        for key in GLOBAL_KEYS:
            value = license_block.get(key)
            name = value.get("name") if isinstance(value, Mapping) else None
            if name:
                globals_[key] = str(name)
    return MofRecord(components, globals_)


def normalise_record(record: MofRecord) -> tuple[MofRecord, tuple[str, ...]]:
    """The record with free-text licences normalised to SPDX / LicenseRef ids; returns the changes made."""
    changes: list[str] = []
    components: dict[int, str | None] = {}
    for cid, own in record.components.items():
        name = component_by_mot_id(cid).name
        if own is None or own == "":
            components[cid] = own
            continue
        norm = normalise_license(own)
        if norm.kind == NOT_INCLUDED:
            changes.append(f"{name}: {own!r} means not included")
            continue
        if norm.kind == UNLICENSED:
            components[cid] = ""
        elif norm.kind == RECOGNISED and norm.id is not None:
            components[cid] = norm.id
        else:
            components[cid] = own
        if components[cid] != own:
            changes.append(f"{name}: {own!r} -> {components[cid] or 'unlicensed'!r}")
    globals_: dict[str, str] = {}
    for key, value in record.global_licenses.items():
        norm = normalise_license(value)
        if norm.kind == RECOGNISED and norm.id is not None:
            globals_[key] = norm.id
        elif norm.kind == UNRECOGNISED:
            globals_[key] = value
        if globals_.get(key) != value:
            changes.append(f"release.license.{key}: {value!r} -> {globals_.get(key, 'none')!r}")
    return MofRecord(components, globals_), tuple(changes)

