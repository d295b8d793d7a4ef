"""Facts read from GGUF metadata: the scalar ``general.*`` keys, architecture and file type, base models and the
keys that hold chat templates (see the list in ``gguf``'s module docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from weightaudit.formats.gguf import _Parse

TEMPLATE_KEY = "tokenizer.chat_template"

# general.file_type (llama.cpp's llama_ftype).
FILE_TYPES: Mapping[int, str] = {
    0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0",
    9: "MOSTLY_Q5_1", 10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L",
    14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M", 16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K",
    19: "MOSTLY_IQ2_XXS", 20: "MOSTLY_IQ2_XS", 21: "MOSTLY_Q2_K_S", 22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS",
    24: "MOSTLY_IQ1_S", 25: "MOSTLY_IQ4_NL", 26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M", 28: "MOSTLY_IQ2_S",
    29: "MOSTLY_IQ2_M", 30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M", 32: "MOSTLY_BF16", 36: "MOSTLY_TQ1_0",
    37: "MOSTLY_TQ2_0", 38: "MOSTLY_MXFP4_MOE", 39: "MOSTLY_NVFP4", 40: "MOSTLY_Q1_0", 1024: "GUESSED",
}


def is_template_key(key: str) -> bool:
    return key == TEMPLATE_KEY or key.startswith(TEMPLATE_KEY + ".")


def scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


def facts(state: _Parse) -> dict[str, Any]:
    first: dict[str, Any] = {}
    for kv in state.kvs:
        first.setdefault(kv.key, kv.value)
    facts: dict[str, Any] = {
        "metadata": {k: text for k, v in first.items() if k.startswith("general.")
                     and (text := scalar_text(v)) is not None},
        "gguf_version": state.version, "tensor_count": state.tensor_count, "kv_count": state.kv_count,
        "alignment": state.alignment, "data_start": state.data_start,
        "metadata_keys": [kv.key for kv in state.kvs],
        "chat_template_keys": [kv.key for kv in state.kvs if is_template_key(kv.key)],
    }
    architecture = first.get("general.architecture")
    named = {"architecture": "general.architecture", "model_name": "general.name", "license": "general.license",
             "quantization_version": "general.quantization_version", "tokenizer_model": "tokenizer.ggml.model",
             "context_length": f"{architecture}.context_length" if isinstance(architecture, str) else None}
    for fact, key in named.items():
        if key is not None and scalar_text(first.get(key)) is not None:
            facts[fact] = first[key]
    file_type = first.get("general.file_type")
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        facts["file_type"] = FILE_TYPES.get(file_type, file_type)
    facts["base_models"] = _base_models(first)
    return {k: v for k, v in facts.items() if v is not None}


BASE_MODEL_FIELDS = ("name", "author", "organization", "version", "url", "repo_url", "doi", "uuid", "description")
MAX_BASE_MODELS = 64


def _base_models(first: Mapping[str, Any]) -> list[dict[str, str]]:
    """``general.base_model.{i}.*`` (what the model was fine-tuned or merged from), one dict per base model."""
    count = first.get("general.base_model.count")
    if isinstance(count, bool) or not isinstance(count, int):
        return []
    models = []
    for index in range(min(count, MAX_BASE_MODELS)):
        entry = {name: text for name in BASE_MODEL_FIELDS
                 if (text := scalar_text(first.get(f"general.base_model.{index}.{name}"))) is not None}
        if entry:
            models.append(entry)
    return models
