"""The offline knowledge base of known artifacts: what a link or a Hub id in a model card points at.

Bundled rows (schema in the header of ``weightaudit/data/knowledge.yaml``):

- ``knowledge.yaml``: curated training-code repositories, frameworks, inference repositories, training datasets
  and models' own technical reports, each with its kind, licence and source;
- ``knowledge_mot.json``: rows derived from the Model Openness Tool's public model records (MIT licence; generated
  by ``fixtures/make_openness_knowledge.py``): each model's Hub id, repository, licence and listed components,
  and every component link those records give.

``--knowledge FILE`` adds a user's rows (same schema; ``artifacts:`` and/or ``models:``), which win over bundled
rows with the same id. Nothing is fetched: a link resolves only if its target is in these tables.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from weightaudit.errors import UsageError
from weightaudit.openness.licenses import normalise_license
from weightaudit.safe_read import UnsafeDocument, load_document, open_regular

KINDS = ("training", "preprocessing", "evaluation", "inference", "tooling", "framework", "dataset", "paper", "model")
COMPONENT_KINDS: Mapping[str, str] = {
    "Training code": "training", "Data preprocessing code": "preprocessing", "Evaluation code": "evaluation",
    "Inference code": "inference", "Datasets": "dataset", "Research paper": "paper", "Technical report": "paper",
}
MAX_USER_BYTES = 1 << 20
MAX_PROSE_CHARS = 200_000   # card text searched for dataset names
_TRAILING_MARKUP = "}])>.,;:'\"`*_"


@dataclass(frozen=True)
class KnownArtifact:
    id: str
    kind: str
    license: str | None
    source: str
    downloadable: bool | str | None = None
    documented: bool = False
    models: tuple[str, ...] = ()
    names: tuple[str, ...] = ()   # how cards name it in prose ("FineWeb-Edu", "The Stack v2"), matched case-sensitively

    def describe(self, kind: bool = True) -> str:
        """``training github.com/allenai/OLMo — Apache-2.0, per allenai/OLMo LICENSE`` (``kind=False``: no kind)."""
        what = f"{self.kind} {self.id}" if kind else self.id
        return f"{what} — {self.license or 'licence not stated'}, per {self.source}"


@dataclass(frozen=True)
class KnownModel:
    name: str
    source: str
    hub_ids: tuple[str, ...] = ()
    repository: str | None = None
    license: str | None = None
    components: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Knowledge:
    artifacts: Mapping[str, KnownArtifact]
    models: Mapping[str, KnownModel]      # name key -> model (names and Hub repo names)

    def lookup(self, target: str) -> KnownArtifact | None:
        key = target_key(target)
        return self.artifacts.get(key) if key else None

    def named_in(self, text: str) -> list[tuple[KnownArtifact, str]]:
        """Known artifacts whose prose names occur in ``text`` (whole words, case-sensitive, longest name first)."""
        by_name = {name: a for a in self.artifacts.values() for name in a.names}
        if not by_name:
            return []
        pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in sorted(by_name, key=len, reverse=True))
                             + r")(?![\w-])")
        found: dict[str, tuple[KnownArtifact, str]] = {}
        for match in pattern.finditer(text[:MAX_PROSE_CHARS]):
            artifact = by_name[match.group(1)]
            found.setdefault(artifact.id, (artifact, match.group(1)))
        return list(found.values())

    def model(self, names: Iterable[str]) -> tuple[KnownModel, str] | None:
        """The first candidate name that is a known model, with the name that matched."""
        for name in names:
            found = self.models.get(name_key(name))
            if found is not None:
                return found, name
        return None


def clean_url(url: str) -> str:
    """A URL without the markup that clings to it in Markdown/BibTeX: trailing ``}`` ``)`` ``]`` ``.`` quotes."""
    url = url.strip()
    while url and url[-1] in _TRAILING_MARKUP:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def target_key(target: str) -> str | None:
    """Canonical, lower-case id of a link target: ``github.com/org/repo``, ``huggingface.co/datasets/org/name``,
    ``huggingface.co/org/name``, ``arxiv.org/abs/2402.00838``, else host + path."""
    text = clean_url(target).lower()
    text = re.sub(r"^[a-z+]+://", "", text)
    text = re.sub(r"^(www\.)", "", text).split("#")[0].split("?")[0].rstrip("/")
    if not text:
        return None
    parts = text.split("/")
    host = parts[0]
    if host in ("github.com", "gitlab.com", "codeberg.org") and len(parts) >= 3:
        return f"{host}/{parts[1]}/{parts[2].removesuffix('.git')}"
    if host in ("huggingface.co", "hf.co"):
        if len(parts) >= 4 and parts[1] == "datasets":
            return f"huggingface.co/datasets/{parts[2]}/{parts[3]}"
        if len(parts) >= 3 and parts[1] not in ("spaces", "docs", "blog", "papers"):
            return f"huggingface.co/{parts[1]}/{parts[2]}"
        if len(parts) >= 3 and parts[1] == "papers":
            return f"arxiv.org/abs/{parts[2]}"
    match = re.match(r"(?:export\.)?arxiv\.org/(?:abs|pdf|html)/(\d{4}\.\d{4,5})", text)
    if match:
        return f"arxiv.org/abs/{match.group(1)}"
    if "/" not in text and "." not in text:
        return None
    return text


def hub_key(hub_id: str, dataset: bool) -> str | None:
    hub_id = hub_id.strip().strip("/")
    if not re.fullmatch(r"[\w.\-]{1,96}/[\w.\-]{1,96}", hub_id):
        return None
    return f"huggingface.co/{'datasets/' if dataset else ''}{hub_id.lower()}"


def name_key(name: str) -> str:
    """A model name for matching: last path part, lower case, spaces and underscores as hyphens."""
    base = str(name).strip().rstrip("/").split("/")[-1]
    return re.sub(r"[\s_]+", "-", base.lower()).strip("-").removesuffix("-hf")


def _licence(raw: Any) -> str | None:
    if raw is None or str(raw).strip() == "":
        return None
    norm = normalise_license(str(raw))
    return norm.id if norm.is_license else str(raw)


def _artifact(row: Mapping[str, Any], where: str) -> KnownArtifact:
    kind = str(row.get("kind", ""))
    if kind not in KINDS or not row.get("id") or not row.get("source"):
        raise ValueError(f"{where}: an artifact needs id, source and a kind among {', '.join(KINDS)}")
    return KnownArtifact(id=str(row["id"]), kind=kind, license=_licence(row.get("license")),
                         source=str(row["source"]), downloadable=row.get("downloadable"),
                         documented=bool(row.get("documented")), models=tuple(map(str, row.get("models") or ())),
                         names=tuple(map(str, row.get("names") or ())))


def _model(row: Mapping[str, Any], where: str) -> KnownModel:
    if not row.get("name") or not row.get("source"):
        raise ValueError(f"{where}: a model needs name and source")
    components = {str(k): {kk: str(vv) for kk, vv in (v or {}).items() if vv is not None}
                  for k, v in (row.get("components") or {}).items()}
    return KnownModel(name=str(row["name"]), source=str(row["source"]),
                      hub_ids=tuple(map(str, row.get("hub_ids") or ())), repository=row.get("repository"),
                      license=_licence(row.get("license")), components=components)


def _add(artifacts: dict[str, KnownArtifact], models: dict[str, KnownModel], data: Mapping[str, Any],
         where: str, override: bool) -> None:
    for index, row in enumerate(data.get("models") or ()):
        model = _model(row, f"{where} models[{index}]")
        for name in (model.name, *model.hub_ids):
            key = name_key(name)
            exact = models.get(key) is None or name_key(models[key].name + "-x") != key + "-x"
            if override or key not in models or (exact and name.split("/")[-1].lower() == key):
                models[key] = model   # an exact name beats a "-hf" variant
        for component, entry in model.components.items():
            kind, url = COMPONENT_KINDS.get(component), entry.get("url")
            key = target_key(url) if url else None
            if kind and key and (override or key not in artifacts):
                artifacts[key] = KnownArtifact(key, kind, entry.get("license"), model.source, models=(model.name,))
    for index, row in enumerate(data.get("artifacts") or ()):
        artifact = _artifact(row, f"{where} artifacts[{index}]")
        key = target_key(artifact.id)
        if key:
            artifacts[key] = artifact   # curated and user rows win over rows derived from MOT links


@functools.cache
def _bundled() -> Knowledge:
    artifacts: dict[str, KnownArtifact] = {}
    models: dict[str, KnownModel] = {}
    base = resources.files("weightaudit").joinpath("data")
    _add(artifacts, models, json.loads(base.joinpath("knowledge_mot.json").read_text("utf-8")),
         "knowledge_mot.json", override=False)
    _add(artifacts, models, load_document(base.joinpath("knowledge.yaml").read_text("utf-8"), False),
         "knowledge.yaml", override=True)
    return Knowledge(artifacts, models)


def load_knowledge(extra: Path | str | None = None) -> Knowledge:
    """The bundled knowledge base, plus a user's rows (YAML or JSON) that win over bundled ones."""
    bundled = _bundled()
    if extra is None:
        return bundled
    shown = str(extra)
    try:
        with open_regular(extra) as handle:          # a FIFO or device is refused, never waited on
            data = handle.read(MAX_USER_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read knowledge file: {exc.strerror or exc}") from None
    if len(data) > MAX_USER_BYTES:
        raise UsageError(f"{shown}: knowledge file larger than 1 MB")
    try:
        loaded = load_document(data.decode("utf-8", errors="replace"), shown.endswith(".json"))
    except (ValueError, UnsafeDocument) as exc:
        raise UsageError(f"{shown}: not a valid knowledge file: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"{shown}: a knowledge file is a mapping with artifacts: and/or models:")
    artifacts, models = dict(bundled.artifacts), dict(bundled.models)
    try:
        _add(artifacts, models, loaded, shown, override=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(str(exc)) from None
    return Knowledge(artifacts, models)
