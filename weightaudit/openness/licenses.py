"""Licence names and texts: normalise them to SPDX / ``LicenseRef-*`` ids and classify them.

All licence facts live in ``weightaudit/data/licenses.yaml``; this module only reads that table.

- ``normalise_license(raw)`` turns what releases and MOF records write (``apache-2.0``, ``Apache 2.0``, ``llama2``,
  ``openrail++``, ``cc-by-nc-4.0``, ``Llama 2 Community License``, simple ``A AND B`` / ``A OR B`` expressions)
  into a ``NormalisedLicense``; placeholders (``unlicensed``, ``Undisclosed``) and MOT's "Component not
  included" strings get their own kinds instead of an id.
- ``identify_license_text(text)`` recognises a licence *text* (a LICENSE file, a gate prompt) by its title and
  characteristic sentences and says on which line it matched.
- ``classify(license_id)`` gives the category (open-source software, open data, open content, open model,
  restricted-use AI, non-commercial, proprietary/unknown) and the two tests other modules need:
  ``mot_is_open`` / ``mot_type_appropriate`` (the Model Openness Tool's exact, case-sensitive test) and
  ``osi_approved`` (OSAID's test for code).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Mapping

from weightaudit.openness.expressions import has_operator, parse_expression, scancode_entry
from weightaudit.safe_read import load_bundled_yaml

UNLICENSED = "unlicensed"
NOT_INCLUDED = "not-included"
RECOGNISED = "license"
UNRECOGNISED = "unrecognised"

_TEXT_SCAN_CHARS = 20_000


@dataclass(frozen=True)
class LicenseInfo:
    """What the table knows about one licence id."""

    id: str
    name: str
    category: str
    family: str
    label: str
    open: bool            # open terms for weights / data / documents (our reading, research 2.5)
    osi_approved: bool    # OSI-approved software licence (OSAID's test for code)
    known: bool           # False for an id the table does not describe


@dataclass(frozen=True)
class NormalisedLicense:
    """A raw licence string and what it means: ``kind`` is license / unlicensed / not-included / unrecognised."""

    raw: str
    kind: str
    id: str | None = None

    @property
    def is_license(self) -> bool:
        return self.kind == RECOGNISED


@dataclass(frozen=True)
class TextMatch:
    """A licence recognised in a text: its id and the 1-based line where the telling phrase is."""

    id: str
    line: int
    phrase: str


@dataclass(frozen=True)
class _Table:
    categories: Mapping[str, Mapping[str, Any]]
    by_id: Mapping[str, Mapping[str, Any]]
    aliases: Mapping[str, str]
    spdx_flags: Mapping[str, str]
    spdx_by_key: Mapping[str, str]
    unlicensed_keys: frozenset[str]
    not_included_keys: frozenset[str]
    text_rules: tuple[tuple[re.Pattern[str], str], ...]
    mot_open_data: frozenset[str]
    mot_always_open: frozenset[str]
    mot_type_appropriate: Mapping[str, frozenset[str]]
    hub: Mapping[str, str | None]
    scancode_categories: Mapping[str, str]
    nc_pattern: re.Pattern[str]


def _key(text: str) -> str:
    """Comparison key: lower case, no spaces, hyphens, underscores or commas, no trailing dot."""
    return re.sub(r"[\s\-_,]+", "", text.strip().lower()).rstrip(".")


@functools.cache
def _raw() -> Mapping[str, Any]:
    loaded = load_bundled_yaml(resources.files("weightaudit").joinpath("data/licenses.yaml").read_text("utf-8"))
    return loaded


@functools.cache
def _table() -> _Table:
    raw = _raw()
    by_id = {row["id"]: row for row in raw["licenses"]}
    aliases: dict[str, str] = {}
    for row in raw["licenses"]:
        for name in [row["id"], row["name"], *row.get("aliases", ())]:
            aliases.setdefault(_key(name), row["id"])
    spdx = {str(k): str(v) for k, v in raw["spdx"].items()}
    restricted_first = sorted(
        raw["licenses"], key=lambda row: 0 if not raw["categories"][row["category"]]["open"] else 1
    )
    anchored = [(p, r["id"]) for r in raw["licenses"] for p in r.get("texts", ()) if p.startswith("^")]
    floating = [(p, r["id"]) for r in restricted_first for p in r.get("texts", ()) if not p.startswith("^")]
    mot = raw["mot"]
    return _Table(
        categories=raw["categories"],
        by_id=by_id,
        aliases=aliases,
        spdx_flags=spdx,
        spdx_by_key={_key(k): k for k in spdx},
        unlicensed_keys=frozenset(_key(s) for s in raw["placeholders"]["unlicensed"]),
        not_included_keys=frozenset(_key(s) for s in raw["placeholders"]["not_included"]),
        text_rules=tuple((re.compile(_one_line(p), re.MULTILINE), i) for p, i in anchored + floating),
        mot_open_data=frozenset(mot["open_data"]),
        mot_always_open=frozenset(mot["always_open"]),
        mot_type_appropriate={t: frozenset(ids) for t, ids in mot["type_appropriate"].items()},
        hub={str(k).lower(): (v or {}).get("id") for k, v in raw["hub"].items()},
        scancode_categories=dict(raw["scancode"]["categories"]),
        nc_pattern=re.compile(raw["scancode"]["nc_pattern"]),
    )


def _normalise_single(text: str) -> str | None:
    """One licence name or id: our table, the Hub's ids, current SPDX ids, then the ScanCode index (which also
    maps deprecated SPDX ids such as ``GPL-2.0+`` to current ones)."""
    table = _table()
    key = _key(text)
    if key in table.aliases:
        return table.aliases[key]
    hub = text.strip().lower()
    if hub in table.hub and table.hub[hub]:
        return table.hub[hub]
    spdx = table.spdx_by_key.get(key)
    if spdx is not None and "d" not in table.spdx_flags.get(spdx, ""):
        return spdx
    entry = scancode_entry(text.strip())
    if entry is not None and not entry.is_exception:
        return entry.spdx_id
    if spdx is not None:
        return spdx
    if text.strip().startswith("LicenseRef-"):
        return text.strip()
    return None


def normalise_license(raw: str | None) -> NormalisedLicense:
    """Normalise a licence name as written by a release, a model card or a MOF record."""
    text = "" if raw is None else str(raw).strip()
    table = _table()
    key = _key(text)
    if not key or key in table.unlicensed_keys:
        return NormalisedLicense(text, UNLICENSED)
    if key in table.not_included_keys:
        return NormalisedLicense(text, NOT_INCLUDED)
    single = _normalise_single(text)
    if single is not None:
        return NormalisedLicense(text, RECOGNISED, single)
    expression = parse_expression(text, _normalise_single)
    if expression is not None:
        return NormalisedLicense(text, RECOGNISED, expression)
    return NormalisedLicense(text, UNRECOGNISED)


def identify_license_text(text: str) -> TextMatch | None:
    """Recognise a licence text by its title and characteristic sentences (first 20,000 characters)."""
    lines = text[:_TEXT_SCAN_CHARS].splitlines()
    pieces: list[str] = []
    starts: list[int] = []
    offset = 0
    for line in lines:
        starts.append(offset)
        piece = re.sub(r"\s+", " ", line.strip().lower())
        pieces.append(piece)
        offset += len(piece) + 1
    joined = "\n".join(pieces)
    flat = joined.replace("\n", " ")
    for pattern, license_id in _table().text_rules:
        haystack = joined if pattern.pattern.startswith("^") else flat
        match = pattern.search(haystack)
        if match is None:
            continue
        if pattern.pattern.startswith("^") and match.start() > 400:
            continue  # a title must be near the top
        begin = match.start() + len(match.group(0)) - len(match.group(0).lstrip())
        line = max(i for i, start in enumerate(starts) if start <= begin) + 1 if starts else 1
        return TextMatch(license_id, line, re.sub(r"\s+", " ", match.group(0)).strip())
    return None


def _one_line(pattern: str) -> str:
    """A title rule's leading ``^\\s*`` as ``^[ \\t]*``: ``\\s*`` crosses newlines, so on a text of blank lines every
    line start rescanned all the lines after it (quadratic); the lines are stripped anyway."""
    return "^[ \t]*" + pattern[4:] if pattern.startswith("^\\s*") else pattern


def classify(license_id: str | None) -> LicenseInfo:
    """Category and tests for a licence id (or expression: AND takes the most restrictive, OR the most open)."""
    table = _table()
    if license_id is None:
        return _info_from(None, "proprietary-or-unknown", "no licence", known=False)
    if has_operator(license_id):
        return _classify_expression(license_id)
    row = table.by_id.get(license_id)
    flags = table.spdx_flags.get(license_id, "")
    if row is not None:
        return _info_from(license_id, row["category"], row["name"], known=row["category"] != "unspecified",
                          osi="o" in flags)
    if "o" in flags:
        return _info_from(license_id, "oss-other", license_id, known=True, osi=True)
    if "f" in flags:
        return _info_from(license_id, "free-software", license_id, known=True)
    if license_id in table.mot_open_data:
        return _info_from(license_id, "open-data", license_id, known=True)
    from_scancode = _scancode_category(license_id)
    if from_scancode is not None:
        return _info_from(license_id, from_scancode, license_id, known=True)
    known = license_id in table.spdx_flags
    return _info_from(license_id, "proprietary-or-unknown", license_id, known=known)


def _scancode_category(license_id: str) -> str | None:
    """Our category for an id only the ScanCode index knows (its category; NC/ND keys are non-commercial)."""
    entry = scancode_entry(license_id)
    if entry is None or entry.is_exception:
        return None
    table = _table()
    if table.nc_pattern.search(entry.key) and entry.category not in ("Permissive", "Public Domain"):
        return "non-commercial"
    return table.scancode_categories.get(entry.category, "proprietary-or-unknown")


def _classify_expression(expression: str) -> LicenseInfo:
    """AND takes the most restrictive licence, OR the most open; ``X WITH exception`` is classified as X."""
    import license_expression

    def walk(node: object) -> LicenseInfo:
        if isinstance(node, license_expression.LicenseWithExceptionSymbol):
            return classify(node.license_symbol.key)
        if isinstance(node, license_expression.LicenseSymbol):
            return classify(node.key)
        infos = [walk(arg) for arg in getattr(node, "args", ())]
        pick = (min if isinstance(node, license_expression.AND) else max)(infos, key=lambda i: (i.open, i.osi_approved))
        return replace(pick, known=all(i.known for i in infos))

    try:
        tree = license_expression.Licensing().parse(expression, simple=False)
    except Exception:   # not an expression we emitted: unknown
        return _info_from(expression, "proprietary-or-unknown", expression, known=False)
    pick = walk(tree)
    return _info_from(expression, pick.category, expression, known=pick.known, osi=pick.osi_approved)


def _info_from(license_id: str | None, category: str, name: str, *, known: bool, osi: bool | None = None) -> LicenseInfo:
    cat = _table().categories[category]
    osi_flag = bool(cat["osi_software"]) if osi is None else osi
    return LicenseInfo(
        id=license_id or "",
        name=name,
        category=category,
        family=str(cat["family"]),
        label=str(cat["label"]),
        open=bool(cat["open"]),
        osi_approved=osi_flag and bool(cat["osi_software"]),
        known=known,
    )


def category_label(category: str) -> str:
    return str(_table().categories[category]["label"])


def mot_is_open(license_id: str) -> bool:
    """MOT's test, exactly: OSI-approved or FSF-libre (SPDX flags), in its open-data list, or OpenMDW-1.0."""
    table = _table()
    flags = table.spdx_flags.get(license_id, "")
    return "o" in flags or "f" in flags or license_id in table.mot_open_data or license_id in table.mot_always_open


def mot_type_appropriate(license_id: str, content_type: str) -> bool:
    """MOT's type-appropriate test (``mof-licenses.json``): exact id match for code, data or document."""
    return license_id in _table().mot_type_appropriate.get(content_type, frozenset())


def library_license(library: str) -> str | None:
    """The licence id of a well-known ML library (``library_name`` in a model card), or None."""
    return _libraries().get(library.strip().lower())


@functools.cache
def _libraries() -> Mapping[str, str]:
    raw = _raw()
    return {str(k).lower(): str(v) for k, v in (raw.get("libraries") or {}).items()}


# ------------------------------------------------------------------------------------------ licences in prose

_PROSE_CUE = re.compile(r"licen[cs]|released under|available under|terms of use|distributed under")
_LICENCE_WORD = re.compile(r"licen[cs]e|agreement|terms of use|rail|\d")
_PROSE_SCAN_CHARS = 200_000
_PROSE_LINE_CHARS = 2_000


@functools.cache
def _prose_pattern() -> re.Pattern[str]:
    """Every alias that names a licence unambiguously in running text (it carries a version or a licence word)."""
    names = {alias.lower() for row in _raw()["licenses"] for alias in [row["name"], *row.get("aliases", ())]
             if len(alias) >= 5 and _LICENCE_WORD.search(alias.lower()) and not alias.startswith("LicenseRef-")}
    names |= {"mit license", "bsd license"}
    parts = [r"[\s\-_]?".join(re.escape(word) for word in re.split(r"[\s\-_]+", name) if word)
             for name in sorted(names, key=len, reverse=True)]
    return re.compile(r"(?<![\w.])(?:" + "|".join(parts) + r")(?![\w])")


def find_licenses_in_prose(text: str) -> tuple[TextMatch, ...]:
    """Licences named in running text (a card's body, an unidentified LICENSE): only on lines with a licence cue
    ("licensed", "released under", "terms of use" ...), outside code blocks. One match per licence, first line."""
    found: dict[str, TextMatch] = {}
    in_fence = False
    for number, line in enumerate(text[:_PROSE_SCAN_CHARS].splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        lowered = line[:_PROSE_LINE_CHARS].lower()
        if in_fence or not _PROSE_CUE.search(lowered):
            continue
        for match in _prose_pattern().finditer(lowered):
            license_id = _normalise_single(match.group(0))
            if license_id and license_id not in found:
                found[license_id] = TextMatch(license_id, number, match.group(0))
    return tuple(found.values())
