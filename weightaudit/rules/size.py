"""WA2xx: size and shape — the tensors against config.json, the shard index and what a release should ship.

These rules read only the inventory (no statistics). config.json keys understood (Hugging Face names and the
common aliases): ``vocab_size``; ``hidden_size``/``n_embd``/``d_model``; ``num_hidden_layers``/``n_layer``/
``num_layers``; ``tie_word_embeddings``; ``torch_dtype``/``dtype``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Iterable, Mapping

from weightaudit.model import Finding, LoadedFile, Role, Severity, TensorInfo
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ")
CONFIG_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
                 "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}
EMBEDDING_NAME = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings)\.weight$")
HEAD_NAME = re.compile(r"(^|\.)(lm_head|embed_out)\.weight$")
LAYER_INDEX = re.compile(r"^(?P<stack>(?:.*\.)?(?:layers|layer|h|blocks|block))\.(?P<index>\d+)\.")


def _config_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _parameters(ctx: AuditContext) -> Iterable[tuple[LoadedFile, TensorInfo]]:
    for loaded in sorted(ctx.files, key=lambda f: f.path):
        for tensor in loaded.tensors:
            if tensor.role == Role.PARAMETER:
                yield loaded, tensor


def _first_path(ctx: AuditContext) -> str:
    """Where release-level findings point: config.json when there is one, else the first weight file."""
    configs = ctx.release.side("config")
    if configs:
        return sorted(configs, key=lambda p: (p.count("/"), p))[0]
    return min((f.path for f in ctx.files), default=".")


# ------------------------------------------------------------------------------------------------ config.json

def _embedding_findings(ctx: AuditContext, config: Mapping[str, Any], cfg: Mapping[str, Any]) -> Iterable[Finding]:
    vocab = _config_int(config, "vocab_size")
    hidden = _config_int(config, "hidden_size", "n_embd", "d_model")
    padding = int(cfg.get("vocab_padding_multiple", 64))
    for loaded, tensor in _parameters(ctx):
        if not (EMBEDDING_NAME.search(tensor.name) or HEAD_NAME.search(tensor.name)) or len(tensor.shape) != 2:
            continue
        rows, cols = tensor.shape
        padded = vocab is not None and rows > vocab and padding > 0 and rows % padding == 0
        if vocab is not None and rows != vocab and not padded:
            yield CONFIG_MISMATCH.finding(loaded.path, f"{tensor.name} has {rows:,} rows but config.json vocab_size "
                                          f"is {vocab:,}", tensor=tensor.name)
        if hidden is not None and cols != hidden:
            yield CONFIG_MISMATCH.finding(loaded.path, f"{tensor.name} has {cols:,} columns but config.json hidden "
                                          f"size is {hidden:,}", tensor=tensor.name)


def _norm_width_findings(ctx: AuditContext, config: Mapping[str, Any]) -> Iterable[Finding]:
    hidden = _config_int(config, "hidden_size", "n_embd", "d_model")
    if hidden is None:
        return
    for loaded, tensor in _parameters(ctx):
        if tensor.name.endswith(("input_layernorm.weight", "post_attention_layernorm.weight")) \
                and tensor.shape != (hidden,):
            yield CONFIG_MISMATCH.finding(loaded.path, f"{tensor.name} has shape {list(tensor.shape)} but config.json "
                                          f"hidden size is {hidden:,}", tensor=tensor.name)


def _config_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    if not ctx.config:
        return
    yield from _embedding_findings(ctx, ctx.config, cfg)
    yield from _norm_width_findings(ctx, ctx.config)


CONFIG_MISMATCH = register(Rule(
    id="WA201", name="config-shape-mismatch", summary="A tensor's shape disagrees with config.json.",
    severity=Severity.MEDIUM, tags=("size", "config"), check=_config_check,
    thresholds={"vocab_padding_multiple": 64},
    help="config.json tells loaders how to build the model; the weights must fit it. The embedding and LM head "
         "must have vocab_size rows (rows rounded up to a multiple of `vocab_padding_multiple` are accepted as "
         "padding) and hidden_size columns; per-layer norms must have hidden_size entries. A mismatch means the "
         "wrong config was shipped or the conversion truncated the weights, and loading fails or silently "
         "re-initialises parameters.\n\nWhat to do: ship the config.json the weights were trained with.",
))


def _layer_stacks(ctx: AuditContext) -> dict[str, set[int]]:
    stacks: dict[str, set[int]] = defaultdict(set)
    for _, tensor in _parameters(ctx):
        match = LAYER_INDEX.match(tensor.name)
        if match:
            stacks[match.group("stack")].add(int(match.group("index")))
    return stacks


def _layer_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    expected = _config_int(ctx.config or {}, "num_hidden_layers", "n_layer", "num_layers")
    stacks = _layer_stacks(ctx)
    if expected is None or not stacks:
        return
    if any(indices == set(range(expected)) for indices in stacks.values()):
        return
    stack, indices = max(stacks.items(), key=lambda item: (len(item[1]), item[0]))
    missing = sorted(set(range(expected)) - indices)
    extra = sorted(i for i in indices if i >= expected)
    detail = []
    if missing:
        detail.append(f"missing {_ranges(missing)}")
    if extra:
        detail.append(f"unexpected {_ranges(extra)}")
    yield LAYER_MISMATCH.finding(_first_path(ctx), f"config.json says {expected} layers but {stack}.N has "
                                 f"{len(indices)} ({'; '.join(detail)})")


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


LAYER_MISMATCH = register(Rule(
    id="WA202", name="layer-count-mismatch", summary="The layers present disagree with config.json's layer count.",
    severity=Severity.MEDIUM, tags=("size", "config"), check=_layer_check,
    help="config.json num_hidden_layers (n_layer, num_layers) says how many blocks the model has; the weights "
         "must hold exactly blocks 0..N-1 (model.layers.i, transformer.h.i, ...). Missing blocks are left at "
         "random init by loaders that do not check; extra blocks are silently ignored.\n\nWhat to do: re-export "
         "the full checkpoint, or ship the matching config.json.",
))


# ------------------------------------------------------------------------------------------------ dtypes

def _f64_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    minimum = int(cfg.get("min_elements", 1024))
    by_file: dict[str, list[TensorInfo]] = defaultdict(list)
    for loaded, tensor in _parameters(ctx):
        if tensor.dtype == "F64" and tensor.parameter_count >= minimum:
            by_file[loaded.path].append(tensor)
    for path, tensors in sorted(by_file.items()):
        total = sum(t.parameter_count for t in tensors)
        names = ", ".join(t.name for t in tensors[:5]) + (", ..." if len(tensors) > 5 else "")
        yield F64.finding(path, f"{len(tensors)} F64 tensor(s) with {total:,} values ({total * 4:,} bytes more "
                          f"than F32): {names}", tensor=tensors[0].name if len(tensors) == 1 else None)


F64 = register(Rule(
    id="WA203", name="f64-tensors", summary="The release ships float64 weights.", severity=Severity.LOW,
    tags=("size", "dtype"), check=_f64_check, thresholds={"min_elements": 1024},
    help="No inference stack runs in float64; F64 tensors double the download over F32 (quadruple over BF16) "
         "and usually mean numpy's default dtype leaked into an export. Tensors under `min_elements` are "
         "ignored.\n\nWhat to do: cast to the model's compute dtype before saving.",
))


def _float_mix(ctx: AuditContext, minimum: int) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for _, tensor in _parameters(ctx):
        if tensor.dtype in FLOAT_DTYPES:
            count = tensor.parameter_count   # (a property: a product over the shape, read once)
            if count >= minimum:
                counts[tensor.dtype] += count
    return counts


def _mixed_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    counts = _float_mix(ctx, int(cfg.get("min_elements", 0)))
    if len(counts) < 2:
        return
    listing = ", ".join(f"{dtype} {count:,}" for dtype, count in sorted(counts.items(), key=lambda kv: -kv[1]))
    yield MIXED.finding(_first_path(ctx), f"weights use {len(counts)} float dtypes (parameters per dtype: {listing})")


MIXED = register(Rule(
    id="WA204", name="mixed-float-dtypes", summary="Weights use more than one floating-point dtype.",
    severity=Severity.INFO, tags=("size", "dtype"), check=_mixed_check, thresholds={"min_elements": 0},
    help="Mixed precision is sometimes deliberate (norms kept in F32 in a BF16 model), but a stray F32 matrix in "
         "a BF16 release doubles its size, and loaders that cast everything to one dtype change its values. "
         "Tensors under `min_elements` are not counted.\n\nWhat to do: confirm the mix is intended.",
))


def _dtype_config_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    declared = str((ctx.config or {}).get("torch_dtype") or (ctx.config or {}).get("dtype") or "")
    expected = CONFIG_DTYPES.get(declared.lower().removeprefix("torch."))
    counts = _float_mix(ctx, 0)
    if expected is None or not counts:
        return
    dominant = max(counts, key=lambda d: counts[d])
    if dominant != expected:
        yield DTYPE_CONFIG.finding(_first_path(ctx), f"config.json torch_dtype is {declared} but most weights "
                                   f"({counts[dominant]:,} parameters) are {dominant}")


DTYPE_CONFIG = register(Rule(
    id="WA205", name="dtype-config-mismatch", summary="config.json torch_dtype differs from the weights' dtype.",
    severity=Severity.LOW, tags=("size", "dtype", "config"), check=_dtype_config_check,
    help="transformers loads weights in config.torch_dtype when asked for torch_dtype='auto'; if the weights are "
         "stored in another dtype they are cast on load (changing values, or overflowing when cast to float16).\n\n"
         "What to do: set torch_dtype to the dtype the weights are stored and validated in.",
))


# ------------------------------------------------------------------------------------------------ what is shipped

def _optimizer_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    for loaded in sorted(ctx.files, key=lambda f: f.path):
        state = [t for t in loaded.tensors if t.role == Role.OPTIMIZER]
        if state:
            count = sum(t.parameter_count for t in state)
            nbytes = sum(t.nbytes or 0 for t in state)
            yield OPTIMIZER.finding(loaded.path, f"{len(state)} optimizer-state tensors ({count:,} values, "
                                    f"{nbytes:,} bytes) are shipped, e.g. {state[0].name}")


OPTIMIZER = register(Rule(
    id="WA206", name="optimizer-state", summary="The release ships optimizer state (e.g. Adam moments).",
    severity=Severity.MEDIUM, tags=("size",), check=_optimizer_check,
    help="Optimizer state (Adam's exp_avg/exp_avg_sq, Keras optimizer_weights) is needed to resume training, "
         "not to run the model. It usually doubles or triples the download and can leak information about the "
         "training data and schedule.\n\nWhat to do: publish the model weights only (e.g. model.state_dict()).",
))


def _stored_bytes(ctx: AuditContext, files: set[str]) -> int:
    """Bytes of the tensors held by these files, counting each shared storage once."""
    seen: set[tuple[str, str]] = set()
    total = 0
    for loaded in ctx.files:
        if loaded.path not in files:
            continue
        for tensor in loaded.tensors:
            if tensor.storage is not None:
                key = (tensor.file, tensor.storage)
                if key in seen:
                    continue
                seen.add(key)
            total += tensor.nbytes or 0
    return total


def _total_size_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    loaded_paths = {f.path for f in ctx.files}
    for index in ctx.release.shard_indexes:
        claimed = index.metadata.get("total_size")
        if not isinstance(claimed, int) or isinstance(claimed, bool):
            continue
        folder = index.rel.rsplit("/", 1)[0] + "/" if "/" in index.rel else ""
        shards = {folder + shard for shard in index.weight_map.values()}
        if not shards <= loaded_paths:
            continue  # a missing shard is WA125's finding; the sum would be meaningless
        actual = _stored_bytes(ctx, shards)
        tolerance = int(cfg.get("tolerance_bytes", 0))
        if abs(actual - claimed) > tolerance:
            yield TOTAL_SIZE.finding(index.rel, f"metadata.total_size is {claimed:,} bytes but the shards hold "
                                     f"{actual:,} bytes of tensors ({actual - claimed:+,})")
        claimed_params = index.metadata.get("total_parameters")
        if isinstance(claimed_params, int) and not isinstance(claimed_params, bool):
            params = sum(t.parameter_count for f in ctx.files if f.path in shards for t in f.tensors)
            if params != claimed_params:
                yield TOTAL_SIZE.finding(index.rel, f"metadata.total_parameters is {claimed_params:,} but the "
                                         f"shards hold {params:,} parameters")


TOTAL_SIZE = register(Rule(
    id="WA207", name="total-size-mismatch", summary="The shard index's total_size disagrees with the shards.",
    severity=Severity.MEDIUM, tags=("size", "shards"), check=_total_size_check, thresholds={"tolerance_bytes": 0},
    help="A *.index.json shard map records metadata.total_size, the sum of the tensors' byte sizes (shared "
         "storages counted once; file headers not counted), and sometimes total_parameters. A different total "
         "means shards were replaced, truncated or re-exported without regenerating the index — the release is "
         "not the one that was described.\n\nWhat to do: regenerate the index from the shards, or re-download.",
))
