"""What the release shows for the weights, code and data components: one small assessor per component (the
documents and extra checks are in assess_docs.py, the registry in assessors.py).

An assessor reads ``ReleaseFacts`` and returns an ``Assessment``: a status (``included`` / ``mentioned`` /
``absent`` / ``unknown``; for the extra checks ``open`` / ``gated``, ``original`` / ``derivative``), the
confidence, the evidence (every verdict names its sources), a reason, and — when the component's licence is not
the release's own (library code, external links) — that licence or ``external=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from weightaudit.openness.card import Link, ModelCard
from weightaudit.openness.collect import ReleaseFacts, script_files
from weightaudit.openness.evidence import Confidence, Evidence
from weightaudit.openness.assess_links import dataset_ids_text, join_names, known_datasets, linked_component
from weightaudit.openness.licenses import library_license

INCLUDED = "included"
MENTIONED = "mentioned"
ABSENT = "absent"
UNKNOWN = "unknown"
NOT_APPLICABLE = "not-applicable"

DATA_FILE_EXT = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet", ".arrow", ".csv", ".tsv", ".txt.gz", ".json.gz")
MAX_EVIDENCE = 6


@dataclass(frozen=True)
class Assessment:
    status: str
    confidence: Confidence
    evidence: tuple[Evidence, ...]
    reason: str
    license_raw: str | None = None
    license_source: str | None = None
    external: bool = False
    details: tuple[str, ...] = ()
    quality: float | None = None   # 0..1 share of the expected content (scales the score; model card sections)


def _absent(facts: ReleaseFacts, what: str) -> Assessment:
    if facts.card is None and not facts.files:
        return Assessment(UNKNOWN, Confidence.UNKNOWN, (), f"nothing to read: no release folder or model card ({what})")
    looked = "the release files and the model card" if facts.card else "the release files (no model card)"
    return Assessment(ABSENT, Confidence.ABSENT, (Evidence("release", f"looked in {looked}", Confidence.ABSENT),),
                      f"no {what} found in {looked}")


def _files_evidence(rels: Iterable[str], detail: str) -> tuple[Evidence, ...]:
    rels = list(rels)
    out = [Evidence(rel, detail, Confidence.VERIFIED) for rel in rels[:MAX_EVIDENCE]]
    if len(rels) > MAX_EVIDENCE:
        out.append(Evidence("release", f"and {len(rels) - MAX_EVIDENCE} more", Confidence.VERIFIED))
    return tuple(out)


def _link_evidence(card: ModelCard, links: Iterable[Link], detail: str) -> tuple[Evidence, ...]:
    unique: dict[str, Link] = {}
    for link in links:
        unique.setdefault(link.url, link)
    return tuple(Evidence(f"{card.path}:{link.line}", detail, Confidence.MENTIONED, link.url)
                 for link in list(unique.values())[:MAX_EVIDENCE])


def _links(facts: ReleaseFacts, test: Callable[[Link], bool]) -> list[Link]:
    return [link for link in facts.card.links if test(link)] if facts.card else []


def _library(facts: ReleaseFacts) -> tuple[str | None, str | None]:
    """(library name, source) from the card's library_name, else transformers when config.json says so."""
    card = facts.card
    if card is not None and isinstance(card.front_matter.get("library_name"), str):
        return card.front_matter["library_name"], card.field_source("library_name")
    if facts.config is not None and "transformers_version" in facts.config:
        return "transformers", f"{facts.config_path} transformers_version"
    return None, None


# ---------------------------------------------------------------------------------------------- weights


def assess_final_parameters(facts: ReleaseFacts) -> Assessment:
    if facts.weight_files:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(facts.weight_files, "weight file"),
                          f"{len(facts.weight_files)} weight file(s) in the release")
    if facts.lfs_pointers:
        return Assessment(MENTIONED, Confidence.MENTIONED, _files_evidence(facts.lfs_pointers, "Git LFS pointer"),
                          "only Git LFS pointers: the weights were not downloaded")
    return _absent(facts, "weight files")


def assess_intermediate_parameters(facts: ReleaseFacts) -> Assessment:
    dirs = facts.matching_dirs("checkpoint-*", "step*", "global_step*", "stage*-step*", "checkpoints")
    if dirs:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(dirs, "checkpoint folder"),
                          f"{len(dirs)} intermediate checkpoint folder(s)")
    revisions = facts.matching("revisions.txt", "revisions.json")
    card = facts.card
    line = card.find_line(r"revision\s*=\s*[\"']step|intermediate checkpoints?|revisions?\.txt") if card else None
    evidence = _files_evidence(revisions, "list of checkpoint revisions")
    if card is not None and line:
        evidence += (Evidence(f"{card.path}:{line}", "intermediate checkpoints mentioned", Confidence.MENTIONED),)
    if evidence:
        return Assessment(MENTIONED, Confidence.MENTIONED, evidence,
                          "intermediate checkpoints are listed or mentioned, not in this folder", external=True)
    return _absent(facts, "intermediate checkpoints")


def assess_model_metadata(facts: ReleaseFacts) -> Assessment:
    rels = facts.matching("trainer_state.json", "training_args.bin", "optimizer.pt", "optimizer.bin",
                          "scheduler.pt", "rng_state*.pth", "training_config*.yaml", "training_config*.json",
                          "train_config*.yaml", "train_config*.json", "*_train*.yaml", "latest")
    if rels:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(rels, "training state or configuration"),
                          "training configuration / optimizer state files in the release")
    return _absent(facts, "training configuration or optimizer state")


# ------------------------------------------------------------------------------------------------- code


def assess_architecture(facts: ReleaseFacts) -> Assessment:
    custom = facts.matching("modeling_*.py", "configuration_*.py", "model.py", "modeling.py")
    auto_map = facts.config.get("auto_map") if facts.config else None
    if custom or auto_map:
        evidence = _files_evidence(custom, "model code")
        if auto_map:
            evidence += (Evidence(f"{facts.config_path} auto_map", "custom model code is registered", Confidence.VERIFIED),)
        return Assessment(INCLUDED, Confidence.VERIFIED, evidence, "the model's own architecture code is in the release")
    library, source = _library(facts)
    architectures = facts.config.get("architectures") if facts.config else None
    if library and (architectures or facts.config is not None) and library_license(library):
        evidence = (Evidence(str(source), f"implemented in the {library} library", Confidence.DECLARED),)
        if architectures:
            evidence += (Evidence(f"{facts.config_path} architectures", ", ".join(map(str, architectures))[:80],
                                  Confidence.DECLARED),)
        return Assessment(INCLUDED, Confidence.DECLARED, evidence,
                          f"architecture implemented in {library} (licence {library_license(library)})",
                          license_raw=library_license(library), license_source=f"{library} library")
    if architectures:
        return Assessment(MENTIONED, Confidence.DECLARED,
                          (Evidence(f"{facts.config_path} architectures", str(architectures)[:80], Confidence.DECLARED),),
                          "config.json names the architecture; its code is not in the release", external=True)
    return _absent(facts, "architecture code or config.json")


def _local_or_linked(facts: ReleaseFacts, what: str, words: tuple[str, ...], roles: tuple[str, ...]) -> Assessment:
    """Code in the release (by file name), else the card's links whose role is this component (links.py)."""
    local = script_files(facts, words)
    if local:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(local, what),
                          f"{what} in the release: {', '.join(local[:3])}")
    linked = linked_component(facts, what, roles)
    return linked if linked is not None else _absent(facts, what)


def assess_training_code(facts: ReleaseFacts) -> Assessment:
    return _local_or_linked(facts, "training code", ("train", "training", "pretrain", "finetune", "fine_tune", "sft",
                                                      "dpo", "recipes"), ("training",))


def assess_preprocessing_code(facts: ReleaseFacts) -> Assessment:
    return _local_or_linked(facts, "data preprocessing code", ("preprocess", "preprocessing", "tokenize", "dedup",
                                                               "filter", "clean", "prepare", "prepare_data"),
                            ("preprocessing",))


def assess_evaluation_code(facts: ReleaseFacts) -> Assessment:
    return _local_or_linked(facts, "evaluation code", ("eval", "evaluate", "evaluation", "benchmark"), ("evaluation",))


def assess_inference_code(facts: ReleaseFacts) -> Assessment:
    local = script_files(facts, ("inference", "generate", "generation", "predict", "run", "chat", "serve", "demo"))
    if local:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(local, "inference code"),
                          f"inference code in the release: {', '.join(local[:3])}")
    library, source = _library(facts)
    licence = library_license(library) if library else None
    if library and licence:
        return Assessment(INCLUDED, Confidence.DECLARED,
                          (Evidence(str(source), f"runs with the {library} library", Confidence.DECLARED),),
                          f"inference through {library} (licence {licence})", license_raw=licence,
                          license_source=f"{library} library")
    return _local_or_linked(facts, "inference code", ("inference",), ("inference",))


def assess_supporting_libraries(facts: ReleaseFacts) -> Assessment:
    rels = facts.matching("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.*", "merges.txt",
                          "spiece.model", "requirements*.txt", "pyproject.toml", "environment.yml", "setup.py")
    if rels:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(rels, "tokenizer or dependency file"),
                          "tokenizer / dependency files in the release")
    return _absent(facts, "tokenizer or dependency files")


# ------------------------------------------------------------------------------------------------- data


def _dataset_ids(card: ModelCard) -> list[str]:
    value = card.front_matter.get("datasets")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if v]
    return []


def _known_data(facts: ReleaseFacts) -> Assessment | None:
    known = known_datasets(facts, facts.knowledge)
    if not known:
        return None
    from weightaudit.openness.assess_links import _strictest_licence

    artifacts = [a for a, _ in known]
    licence = _strictest_licence(artifacts)
    details = tuple(f"{a.id}: " + ("fully downloadable" if a.downloadable is True else
                                   "gated download" if a.downloadable == "gated" else
                                   "not downloadable" if a.downloadable is False else "availability not recorded")
                    for a in artifacts)
    documented = ("documented",) if all(a.documented for a in artifacts) else ()
    return Assessment(INCLUDED, Confidence.KNOWN, tuple(e for _, e in known[:MAX_EVIDENCE]),
                      f"training data: {artifacts[0].id} — {artifacts[0].license or 'licence not stated'}, "
                      f"per {artifacts[0].source}", license_raw=licence, license_source=artifacts[0].source,
                      external=True, details=details + documented + ("released elsewhere",))


def assess_datasets(facts: ReleaseFacts) -> Assessment:
    local = [rel for rel in facts.files if rel.lower().startswith(("data/", "dataset/", "datasets/", "corpus/"))
             and rel.lower().endswith(DATA_FILE_EXT)]
    if local:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(local, "training data file"),
                          f"{len(local)} data file(s) in the release")
    card = facts.card
    if card is None:
        return _absent(facts, "training data")
    known = _known_data(facts)
    if known is not None:
        return known
    ids = _dataset_ids(card)
    links = [r.link for r in facts.link_roles if r.role == "dataset"]
    evidence: tuple[Evidence, ...] = ()
    if ids:
        evidence += (Evidence(card.field_source("datasets"), dataset_ids_text(facts), Confidence.DECLARED),)
    evidence += _link_evidence(card, links, "dataset link")
    if evidence:
        return Assessment(MENTIONED, Confidence.DECLARED if ids else Confidence.MENTIONED, evidence,
                          "training datasets are named and located, but not in the release (licence not known offline)",
                          external=True, details=("released elsewhere",))
    described = [s for s in card.sections_about("training-data") if s.substantive]
    if described:
        return Assessment(MENTIONED, Confidence.MENTIONED,
                          tuple(Evidence(f"{card.path}:{s.line}", f"section '{s.title}' describes the data",
                                         Confidence.MENTIONED) for s in described[:MAX_EVIDENCE]),
                          "training data is described in prose only (no dataset ids or links)", external=True,
                          details=("described only",))
    return _absent(facts, "training data disclosure")


def assess_evaluation_data(facts: ReleaseFacts) -> Assessment:
    card = facts.card
    names = [r.get("dataset", {}).get("type") or r.get("dataset", {}).get("name")
             for r in _model_index_results(card)] if card else []
    names = [str(n) for n in names if n]
    if card is not None and names:
        return Assessment(MENTIONED, Confidence.DECLARED,
                          (Evidence(card.field_source("model-index"), join_names(names),
                                    Confidence.DECLARED),),
                          "evaluation datasets are named in model-index (not in the release)", external=True)
    return _absent(facts, "evaluation data")


def _model_index_results(card: ModelCard | None) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    index = card.front_matter.get("model-index") if card else None
    for model in index if isinstance(index, list) else []:
        for result in (model.get("results") or []) if isinstance(model, dict) else []:
            if isinstance(result, dict):
                out.append(result)
    return out
