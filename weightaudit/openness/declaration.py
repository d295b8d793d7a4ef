"""The user's declaration: a MOF model YAML (the Model Openness Tool's format, read unchanged), optionally with a
top-level ``weightaudit:`` block that MOT ignores (``not_released``, ``not_applicable``, ``components.access``,
``components.lineage``). Also writes a MOF YAML pre-filled from a scorecard (``--export-mof``).

Errors in a declaration are usage errors (exit 2) with one line naming the file and the problem.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from weightaudit.errors import UsageError
from weightaudit.safe_read import UnsafeDocument, load_yaml, open_regular
from weightaudit.openness.components import MOF_COMPONENTS, component_by_name, suggest_name
from weightaudit.openness.mof import GLOBAL_KEYS, MofRecord, record_from_mof

if TYPE_CHECKING:
    from weightaudit.openness.scorecard import Scorecard

MAX_DECLARATION_BYTES = 1 << 20
FRAMEWORK = {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"}


@dataclass(frozen=True)
class DeclaredComponent:
    name: str
    license: str | None        # None: inherits the global licences; "" : explicitly unlicensed
    component_path: str | None
    license_path: str | None
    line: int | None

    @property
    def source(self) -> str:
        return f"line {self.line}" if self.line else "release.components"


@dataclass(frozen=True)
class Declaration:
    path: str
    release_name: str
    components: Mapping[str, DeclaredComponent]
    global_licenses: Mapping[str, str]
    record: MofRecord                  # exactly what MOT reads
    not_released: tuple[str, ...] = ()
    not_applicable: tuple[str, ...] = ()
    extras: Mapping[str, Any] | None = None

    def where(self, name: str) -> str:
        component = self.components.get(name)
        return f"{self.path}:{component.line}" if component and component.line else self.path


def _fail(path: str, problem: str) -> UsageError:
    return UsageError(f"{path}: invalid declaration: {problem}")


def _component_lines(text: str) -> list[int]:
    """1-based start line of each item of release.components, in order (best effort)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "release" and isinstance(value, yaml.MappingNode):
            for rkey, rvalue in value.value:
                if rkey.value == "components" and isinstance(rvalue, yaml.SequenceNode):
                    return [item.start_mark.line + 1 for item in rvalue.value]
    return []


def _check_names(path: str, names: list[str], where: str) -> None:
    for name in names:
        if component_by_name(name) is None:
            hint = suggest_name(name)
            suffix = f" (did you mean {hint!r}?)" if hint else ""
            raise _fail(path, f"{where}: unknown MOF component {name!r}{suffix}")


def _parse_components(path: str, release: Mapping[str, Any], lines: list[int]) -> dict[str, DeclaredComponent]:
    raw = release.get("components")
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise _fail(path, "release.components must be a list")
    out: dict[str, DeclaredComponent] = {}
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not entry.get("name"):
            raise _fail(path, f"release.components[{index}] must be a mapping with a name")
        name = str(entry["name"])
        _check_names(path, [name], f"release.components[{index}]")
        own = entry.get("license")
        license_text = None if own is None else ("" if str(own) == "unlicensed" else str(own))
        out[name] = DeclaredComponent(name, license_text, _str_or_none(entry.get("component_path")),
                                      _str_or_none(entry.get("license_path")),
                                      lines[index] if index < len(lines) else None)
    return out


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _globals(path: str, release: Mapping[str, Any]) -> dict[str, str]:
    block = release.get("license")
    if block in (None, [], {}):
        return {}
    if not isinstance(block, Mapping):
        raise _fail(path, "release.license must be a mapping")
    out = {}
    for key in GLOBAL_KEYS:
        value = block.get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise _fail(path, f"release.license.{key} must be a mapping with name and path")
        if value.get("name"):
            out[key] = str(value["name"])
    return out


def parse_declaration(text: str, path: str) -> Declaration:
    """Parse declaration text (see ``load_declaration``)."""
    try:
        data = load_yaml(text)   # depth- and alias-bounded (safe_read)
    except UnsafeDocument as exc:
        raise _fail(path, f"refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise _fail(path, "expected a MOF model YAML mapping with 'framework' and 'release'")
    framework = data.get("framework")
    release = data.get("release")
    if not isinstance(framework, Mapping) or framework.get("name") != FRAMEWORK["name"]:
        raise _fail(path, "framework.name must be 'Model Openness Framework'")
    if not isinstance(release, Mapping) or not release.get("name"):
        raise _fail(path, "release must be a mapping with a name")
    components = _parse_components(path, release, _component_lines(text))
    extras = data.get("weightaudit") if isinstance(data.get("weightaudit"), Mapping) else None
    not_released = [str(n) for n in (extras or {}).get("not_released") or ()]
    not_applicable = [str(n) for n in (extras or {}).get("not_applicable") or ()]
    _check_names(path, not_released, "weightaudit.not_released")
    _check_names(path, not_applicable, "weightaudit.not_applicable")
    return Declaration(path, str(release["name"]), components, _globals(path, release), record_from_mof(data),
                       tuple(not_released), tuple(not_applicable), extras)


def load_declaration(path: Path | str) -> Declaration:
    """Read a MOF YAML declaration (capped at 1 MB). Raises UsageError naming the file and the problem."""
    shown = str(path)
    try:
        with open_regular(path) as handle:           # a FIFO or device is refused, never waited on
            data = handle.read(MAX_DECLARATION_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read declaration: {exc.strerror or exc}") from None
    if len(data) > MAX_DECLARATION_BYTES:
        raise _fail(shown, "larger than 1 MB")
    return parse_declaration(data.decode("utf-8", errors="replace"), shown)


def export_mof(scorecard: "Scorecard", name: str | None = None) -> str:
    """A MOF YAML pre-filled from the scorecard: included components with their licence and evidence path;
    mentioned ones are listed as comments for the user to confirm. Valid input for the Model Openness Tool."""
    included, mentioned = [], []
    for result in scorecard.components:
        if result.mot_id == 0:
            continue
        entry: dict[str, Any] = {"name": result.name, "description": _description(result.name)}
        if result.license:
            entry["license"] = result.license
        elif result.status == "included":
            entry["license"] = "unlicensed"
        path = next((e.url or e.source for e in result.evidence if e.confidence.value in ("verified", "declared",
                                                                                          "attested")), None)
        if path:
            entry["component_path"] = path
        if result.status == "included":
            included.append(entry)
        elif result.status == "mentioned":
            mentioned.append((result.name, next((e.url or e.source for e in result.evidence), "")))
    release: dict[str, Any] = {
        "name": name or scorecard.name or "my-model",
        "version": "",
        "date": _dt.date.today().isoformat(),
        "license": {"distribution": {"name": scorecard.release_license or "", "path": scorecard.license_path or ""}},
        "producer": "",
        "contact": "",
        "components": included,
    }
    text = yaml.safe_dump({"framework": dict(FRAMEWORK), "release": release}, sort_keys=False, allow_unicode=True,
                          width=120)
    header = "# MOF model YAML drafted by `weightaudit scorecard --export-mof`: check every entry before publishing.\n"
    if mentioned:
        text += "# Mentioned but not verified (add them under release.components once confirmed):\n"
        text += "".join(f"#   - name: '{n}'  # {where}\n" for n, where in mentioned)
    return header + text


def _description(name: str) -> str:
    from weightaudit.openness.components import MOF_DESCRIPTIONS

    return MOF_DESCRIPTIONS.get(name, "")


__all__ = ["Declaration", "DeclaredComponent", "load_declaration", "parse_declaration", "export_mof",
           "MOF_COMPONENTS"]
