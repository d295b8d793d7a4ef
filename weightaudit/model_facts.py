"""What the release says the model is: facts from ``config.json`` and from a PEFT ``adapter_config.json``.

Model facts (``summary.model``): ``architecture`` (first of ``architectures``), ``model_type``, ``layers``,
``hidden_size``, ``heads``, ``kv_heads``, ``intermediate_size``, ``vocab_size``, ``context_length``. Each is read
under its Hugging Face name and the common aliases (``KEYS``); a multimodal config's ``text_config`` (or
``llm_config``) fills what the top level lacks. Only well-typed values are kept (ints > 0, short strings).

Adapter facts (``summary.adapter``): ``peft_type``, ``r``, ``lora_alpha``, ``target_modules``,
``base_model`` (``base_model_name_or_path``), ``rank_pattern`` size. The adapter's tensors are checked against
the rank by WA209 (``rank_mismatches``): ``lora_A`` is ``[r, in]`` (``[r, in, k, k]`` for a conv), ``lora_B`` is
``[out, r, ...]``, ``lora_embedding_A`` ``[r, vocab]`` and ``lora_embedding_B`` ``[dim, r]``; a ``rank_pattern``
entry names a module by its full name or a dot-separated suffix; a key PEFT would read as a regular expression
is never run: a tensor having one of those keys' ranks is not judged.

Both are data written by the release: shown, never trusted for the verdict beyond WA209.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from weightaudit.limits import DEFAULT_LIMITS, Limits
from weightaudit.model import Release, TensorInfo

__all__ = ["KEYS", "model_facts", "read_adapter_config", "adapter_facts", "rank_mismatches", "RankMismatch",
           "facts_line", "adapter_line"]

KEYS: Mapping[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "kv_heads": ("num_key_value_heads", "n_head_kv", "num_kv_heads", "n_kv_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "d_ff"),
    "vocab_size": ("vocab_size", "n_vocab"),
    "context_length": ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"),
}
SUB_CONFIGS = ("text_config", "llm_config", "language_config")
MAX_TEXT = 120
ADAPTER_NAME = "adapter_config.json"
REGEX_CHARS = re.compile(r"[\^$*+?\[\](){}|\\]")
LORA_TENSOR = re.compile(r"^(?P<module>.+)\.lora_(?P<embedding>embedding_)?(?P<side>[AB])(?:\.[^.]+)??(?:\.weight)?$")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        text = value.strip()
        return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
    return None


def _first_int(config: Mapping[str, Any], keys: Iterable[str]) -> int | None:
    for key in keys:
        found = _int(config.get(key))
        if found is not None:
            return found
    return None


def model_facts(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The model's shape as config.json declares it; None when there is no usable config."""
    if not isinstance(config, Mapping):
        return None
    subs = [config] + [config[k] for k in SUB_CONFIGS if isinstance(config.get(k), Mapping)]
    out: dict[str, Any] = {}
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures:
        out["architecture"] = _text(architectures[0])
    out["model_type"] = _text(config.get("model_type"))
    for fact, keys in KEYS.items():
        out[fact] = next((v for v in (_first_int(sub, keys) for sub in subs) if v is not None), None)
    facts = {k: v for k, v in out.items() if v is not None}
    return facts or None


def read_adapter_config(release: Release, limits: Limits = DEFAULT_LIMITS) -> Mapping[str, Any] | None:
    """The top-level adapter_config.json (bounded, depth-safe, regular files only); None when absent or unusable."""
    from weightaudit.safe_read import load_json, read_text

    rel = next((r for r in release.all_side_files() if r.lower() == ADAPTER_NAME), None)
    if rel is None:
        return None
    try:
        data = load_json(read_text(Path(release.root) / rel, limits.side_file_bytes), limits)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def adapter_facts(adapter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(adapter, Mapping):
        return None
    targets = adapter.get("target_modules")
    if isinstance(targets, list):
        targets = [t for t in (_text(x) for x in targets[:64]) if t]
    else:
        targets = _text(targets)
    out = {"peft_type": _text(adapter.get("peft_type")), "r": _int(adapter.get("r")),
           "lora_alpha": adapter.get("lora_alpha") if isinstance(adapter.get("lora_alpha"), (int, float))
           and not isinstance(adapter.get("lora_alpha"), bool) else None,
           "target_modules": targets or None, "base_model": _text(adapter.get("base_model_name_or_path"))}
    pattern = adapter.get("rank_pattern")
    if isinstance(pattern, Mapping) and pattern:
        out["rank_pattern"] = len(pattern)
    facts = {k: v for k, v in out.items() if v is not None}
    return facts or None


@dataclass(frozen=True)
class RankMismatch:
    tensor: TensorInfo
    expected: int
    axis: int


def _rank_for(module: str, default: int, pattern: Mapping[str, Any]) -> int:
    """The rank_pattern entry for the longest dotted suffix of the module's name (a dict look-up per suffix, so a
    huge rank_pattern costs no more per tensor than a small one)."""
    parts = module.split(".")
    for start in range(len(parts)):
        rank = _int(pattern.get(".".join(parts[start:])))
        if rank is not None:
            return rank
    return default


def rank_mismatches(adapter: Mapping[str, Any] | None, tensors: Iterable[TensorInfo]) -> list[RankMismatch]:
    """LoRA tensors whose rank axis is not the configured rank (``r``, or the module's ``rank_pattern`` entry)."""
    if not isinstance(adapter, Mapping) or str(adapter.get("peft_type", "LORA")).upper() != "LORA":
        return []
    default = _int(adapter.get("r"))
    if default is None:
        return []
    pattern = adapter.get("rank_pattern") if isinstance(adapter.get("rank_pattern"), Mapping) else {}
    # Keys PEFT reads as regular expressions are never run here: a tensor of one of their ranks is not judged.
    regex_ranks = {_int(v) for k, v in pattern.items() if isinstance(k, str) and REGEX_CHARS.search(k)}
    out = []
    for tensor in tensors:
        match = LORA_TENSOR.match(tensor.name)
        if match is None or len(tensor.shape) < 2:
            continue
        axis = 0 if match.group("side") == "A" else 1
        expected = _rank_for(match.group("module"), default, pattern)
        if tensor.shape[axis] != expected and tensor.shape[axis] not in regex_ranks:
            out.append(RankMismatch(tensor, expected, axis))
    return out


def facts_line(facts: Mapping[str, Any]) -> str:
    """``LlamaForCausalLM (llama): 32 layers, hidden 4,096, 32 heads (8 kv), vocab 32,000, context 4,096``."""
    name = facts.get("architecture") or facts.get("model_type") or "model"
    if facts.get("architecture") and facts.get("model_type"):
        name += f" ({facts['model_type']})"
    parts = []
    if "layers" in facts:
        parts.append(f"{facts['layers']:,} layer{'s' if facts['layers'] != 1 else ''}")
    if "hidden_size" in facts:
        parts.append(f"hidden {facts['hidden_size']:,}")
    if "heads" in facts:
        parts.append(f"{facts['heads']:,} head{'s' if facts['heads'] != 1 else ''}"
                     + (f" ({facts['kv_heads']:,} kv)" if "kv_heads" in facts else ""))
    if "intermediate_size" in facts:
        parts.append(f"ffn {facts['intermediate_size']:,}")
    if "vocab_size" in facts:
        parts.append(f"vocab {facts['vocab_size']:,}")
    if "context_length" in facts:
        parts.append(f"context {facts['context_length']:,}")
    return name + (": " + ", ".join(parts) if parts else "")


def adapter_line(facts: Mapping[str, Any]) -> str:
    """``LORA r=8, alpha 16 on q_proj, v_proj; base meta-llama/Llama-2-7b-hf``."""
    head = facts.get("peft_type", "adapter")
    if "r" in facts:
        head += f" r={facts['r']}"
    if "lora_alpha" in facts:
        head += f", alpha {facts['lora_alpha']}"
    targets = facts.get("target_modules")
    if targets:
        shown = ", ".join(targets[:8]) + (" …" if len(targets) > 8 else "") if isinstance(targets, list) else targets
        head += f" on {shown}"
    if "rank_pattern" in facts:
        head += f" ({facts['rank_pattern']} per-module rank(s))"
    if "base_model" in facts:
        head += f"; base {facts['base_model']}"
    return head
