"""The Model Openness Framework's 17 components (exact names, as the Model Openness Tool's mof.settings.yml has
them) and weightaudit's three extra checks (access gating, base-model lineage, compute documentation).

``weight`` is the component's weight in the 0–10 summary (Scorecard-style risk levels: critical 10 for the
user's three pillars, high 7.5, medium 5, low 2.5 — research/openness.md 2.4).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    """One MOF component (``mot_id`` > 0) or an extra weightaudit check (``mot_id`` == 0)."""

    key: str             # weightaudit id, e.g. "training-code"
    name: str            # exact MOF name, or a display name for extras
    mot_id: int
    content_type: str    # code | data | document | "" for extras
    mof_class: int       # 1, 2, 3; 0 for extras
    required: bool
    weight: float


MOF_COMPONENTS: tuple[Component, ...] = (
    # Order = MOT's mof.settings.yml (MOT's getRequired/getOptional keep this order).
    Component("datasets", "Datasets", 15, "data", 1, True, 10.0),
    Component("data-preprocessing-code", "Data preprocessing code", 16, "code", 1, True, 7.5),
    Component("model-architecture", "Model architecture", 9, "code", 3, True, 7.5),
    Component("model-parameters-final", "Model parameters (Final)", 10, "data", 3, True, 10.0),
    Component("model-metadata", "Model metadata", 17, "data", 1, False, 2.5),
    Component("model-parameters-intermediate", "Model parameters (Intermediate)", 24, "data", 1, True, 7.5),
    Component("training-code", "Training code", 7, "code", 2, True, 10.0),
    Component("inference-code", "Inference code", 8, "code", 2, True, 5.0),
    Component("evaluation-code", "Evaluation code", 18, "code", 2, True, 5.0),
    Component("evaluation-data", "Evaluation data", 19, "data", 2, True, 5.0),
    Component("evaluation-results", "Evaluation results", 12, "document", 3, True, 5.0),
    Component("supporting-libraries", "Supporting libraries and tools", 22, "code", 2, False, 2.5),
    Component("model-card", "Model card", 13, "document", 3, True, 5.0),
    Component("data-card", "Data card", 14, "document", 3, True, 7.5),
    Component("technical-report", "Technical report", 11, "document", 3, True, 5.0),
    Component("research-paper", "Research paper", 21, "document", 1, True, 5.0),
    Component("sample-outputs", "Sample model outputs", 20, "document", 3, False, 2.5),
)

EXTRA_CHECKS: tuple[Component, ...] = (
    Component("access", "Access gating", 0, "", 0, False, 2.5),
    Component("lineage", "Base-model lineage", 0, "", 0, False, 2.5),
    Component("compute-docs", "Compute documentation", 0, "", 0, False, 2.5),
)

ALL_CHECKS: tuple[Component, ...] = MOF_COMPONENTS + EXTRA_CHECKS
MOF_NAMES: tuple[str, ...] = tuple(c.name for c in MOF_COMPONENTS)
_BY_NAME = {c.name: c for c in MOF_COMPONENTS}
_BY_KEY = {c.key: c for c in ALL_CHECKS}
_BY_MOT_ID = {c.mot_id: c for c in MOF_COMPONENTS}

# MOT's display order for reports: class III, then II, then I.
DISPLAY_ORDER: tuple[str, ...] = (
    "Model parameters (Final)", "Model architecture", "Model card", "Data card", "Technical report",
    "Evaluation results", "Sample model outputs", "Training code", "Inference code", "Evaluation code",
    "Evaluation data", "Supporting libraries and tools", "Datasets", "Data preprocessing code",
    "Model parameters (Intermediate)", "Research paper", "Model metadata",
)


def component_by_name(name: str) -> Component | None:
    """The MOF component with exactly this name, or None."""
    return _BY_NAME.get(name)


def component_by_key(key: str) -> Component:
    return _BY_KEY[key]


def component_by_mot_id(mot_id: int) -> Component:
    return _BY_MOT_ID[mot_id]


def suggest_name(name: str) -> str | None:
    """The closest MOF component name, for a "did you mean" hint."""
    lowered = {n.lower(): n for n in MOF_NAMES}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hits[0]] if hits else None


def required_ids(mof_class: int) -> tuple[int, ...]:
    return tuple(c.mot_id for c in MOF_COMPONENTS if c.mof_class == mof_class and c.required)


def optional_ids(mof_class: int) -> tuple[int, ...]:
    return tuple(c.mot_id for c in MOF_COMPONENTS if c.mof_class == mof_class and not c.required)


# MOT's component descriptions (mof.settings.yml), written into exported MOF YAML.
MOF_DESCRIPTIONS: dict[str, str] = {
    "Datasets": "Training, validation and testing datasets used for the model",
    "Data preprocessing code": "Code for data cleansing, normalization, and augmentation",
    "Model architecture": "Well commented code for the model's architecture",
    "Model parameters (Final)": "Trained model parameters, weights and biases",
    "Model metadata": "Any model metadata including training configuration and optimizer states",
    "Model parameters (Intermediate)": "Trained model parameters, weights and biases",
    "Training code": "Code used for training the model",
    "Inference code": "Code used for running the model to make predictions",
    "Evaluation code": "Code used for evaluating the model",
    "Evaluation data": "Data used for evaluating the model",
    "Evaluation results": "The results from evaluating the model",
    "Supporting libraries and tools": "Libraries and tools used in the model's development",
    "Model card": "Model details including performance metrics, intended use, and limitations",
    "Data card": "Documentation for datasets including source, characteristics, and preprocessing details",
    "Technical report": "Technical report detailing capabilities and usage instructions for the model",
    "Research paper": "Research paper detailing the development and capabilities of the model",
    "Sample model outputs": "Examples of outputs generated by the model",
}
