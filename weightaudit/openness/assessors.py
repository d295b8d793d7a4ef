"""The registry: MOF component / extra check key -> its assessor (assess.py: weights, code, data;
assess_docs.py: documents and extras)."""

from __future__ import annotations

from typing import Callable, Mapping

from weightaudit.openness.assess import (
    Assessment,
    assess_architecture,
    assess_datasets,
    assess_evaluation_code,
    assess_evaluation_data,
    assess_final_parameters,
    assess_inference_code,
    assess_intermediate_parameters,
    assess_model_metadata,
    assess_preprocessing_code,
    assess_supporting_libraries,
    assess_training_code,
)
from weightaudit.openness.assess_docs import (
    assess_access,
    assess_compute_docs,
    assess_data_card,
    assess_evaluation_results,
    assess_lineage,
    assess_model_card,
    assess_research_paper,
    assess_sample_outputs,
    assess_technical_report,
)
from weightaudit.openness.collect import ReleaseFacts

ASSESSORS: Mapping[str, Callable[[ReleaseFacts], Assessment]] = {
    "datasets": assess_datasets,
    "data-preprocessing-code": assess_preprocessing_code,
    "model-architecture": assess_architecture,
    "model-parameters-final": assess_final_parameters,
    "model-metadata": assess_model_metadata,
    "model-parameters-intermediate": assess_intermediate_parameters,
    "training-code": assess_training_code,
    "inference-code": assess_inference_code,
    "evaluation-code": assess_evaluation_code,
    "evaluation-data": assess_evaluation_data,
    "evaluation-results": assess_evaluation_results,
    "supporting-libraries": assess_supporting_libraries,
    "model-card": assess_model_card,
    "data-card": assess_data_card,
    "technical-report": assess_technical_report,
    "research-paper": assess_research_paper,
    "sample-outputs": assess_sample_outputs,
    "access": assess_access,
    "lineage": assess_lineage,
    "compute-docs": assess_compute_docs,
}
