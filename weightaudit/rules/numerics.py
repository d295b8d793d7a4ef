"""WA3xx: numeric soundness of the weights, read from the streamed statistics (``weightaudit.stats``).

Every rule here has ``needs_stats=True``: with ``--no-stats`` (``ctx.stats`` empty) they report nothing.

Which release is "meant to run in half precision" (WA305 at high): config.json says ``torch_dtype``/``dtype``
``float16``, or F16 holds the most parameters among the release's float tensors.
Declared ties excluded from WA306: tensors sharing a ``TensorInfo.storage``, and the input embedding / output
head pair when config.json does not set ``tie_word_embeddings`` to false (transformers' default is true).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import defaultdict
from typing import Any, Iterable, Mapping

from weightaudit.model import Finding, LoadedFile, Role, Severity, TensorInfo, TensorStats
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})
# "norm" anywhere, or a part starting with "ln": literal alternatives only (the former \w*norm\w* backtracked
# quadratically on a long tensor name of underscores).
NORM_NAME = re.compile(r"norm|(?:^|[._/])ln", re.IGNORECASE)
EMBEDDING_NAME = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings|shared)\.weight$")
HEAD_NAME = re.compile(r"(^|\.)(lm_head|embed_out|output)\.weight$")


def _with_stats(ctx: AuditContext) -> Iterable[tuple[LoadedFile, TensorInfo, TensorStats]]:
    """Every tensor that has statistics, with the file that holds it, in a stable order (built once per context)."""
    return ctx.tensors_with_stats


def _matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _is_norm(tensor: TensorInfo) -> bool:
    return len(tensor.shape) == 1 and bool(NORM_NAME.search(tensor.name))


def _is_bias(tensor: TensorInfo) -> bool:
    return len(tensor.shape) == 1 and tensor.name.rsplit(".", 1)[-1].rsplit("/", 1)[-1].startswith("bias")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _position(tensor: TensorInfo, flat: int | None) -> str:
    """A flat index as coordinates in the tensor's shape, e.g. ``[2, 3968]``."""
    if flat is None:
        return "?"
    coords = []
    for size in reversed(tensor.shape or (1,)):
        coords.append(flat % max(size, 1))
        flat //= max(size, 1)
    return "[" + ", ".join(str(c) for c in reversed(coords)) + "]"


# ------------------------------------------------------------------------------------------------ NaN / Inf

def _nan_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    for loaded, tensor, stats in _with_stats(ctx):
        if stats.nan:
            yield NAN.finding(loaded.path, f"{stats.nan:,} of {stats.count:,} values of {tensor.name} are NaN",
                              tensor=tensor.name)


def _inf_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    for loaded, tensor, stats in _with_stats(ctx):
        if stats.inf:
            yield INF.finding(loaded.path, f"{tensor.name} holds {stats.pos_inf:,} +Inf and {stats.neg_inf:,} -Inf "
                                           f"values (of {stats.count:,})", tensor=tensor.name)


NAN = register(Rule(
    id="WA301", name="nan-values", summary="A tensor contains NaN values.", severity=Severity.HIGH,
    tags=("numerics",), needs_stats=True, check=_nan_check,
    help="NaN (not a number) in a weight propagates through every computation it touches: one NaN in a norm or "
         "bias turns the model's whole output into NaN. It comes from a diverged training run, a broken "
         "conversion or quantisation, or a corrupted file; safetensors itself never checks values.\n\n"
         "What to do: re-export from a known-good checkpoint; find the step where the NaN appeared.",
))
INF = register(Rule(
    id="WA302", name="inf-values", summary="A tensor contains +Inf or -Inf values.", severity=Severity.HIGH,
    tags=("numerics",), needs_stats=True, check=_inf_check,
    help="Infinite weights usually come from an overflowing down-cast (a value beyond the target dtype's range) "
         "or divergence; they produce Inf/NaN activations.\n\nWhat to do: re-export from the original precision, "
         "or clamp/rescale the affected tensor before casting.",
))


# ------------------------------------------------------------------------------------------------ zero / constant

def _zero_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    minimum, ignored = int(cfg.get("min_elements", 2)), cfg.get("ignore_names", ())
    for loaded, tensor, stats in _with_stats(ctx):
        if stats.zeros != stats.count or stats.count < minimum or _matches_any(tensor.name, ignored):
            continue   # (cheapest test first: name patterns only for the all-zero tensors)
        if not _is_norm(tensor):
            if _is_bias(tensor):  # biases start at zero: an unused head (e.g. a pooler) keeps them; less alarming
                yield ALL_ZERO.finding(loaded.path, f"all {stats.count:,} values of bias {tensor.name} are zero "
                                       "(its usual initial value: probably never trained)", tensor=tensor.name,
                                       severity=Severity.LOW)
            else:
                yield ALL_ZERO.finding(loaded.path, f"all {stats.count:,} values of {tensor.name} are zero",
                                       tensor=tensor.name)


def _constant_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    minimum, ignored = int(cfg.get("min_elements", 16)), cfg.get("ignore_names", ())
    for loaded, tensor, stats in _with_stats(ctx):
        if stats.min is None or stats.min != stats.max or stats.min == 0 or stats.nan or stats.inf:
            continue   # (cheapest test first: name patterns only for the constant tensors)
        if stats.count < minimum or _matches_any(tensor.name, ignored):
            continue
        if _is_norm(tensor) and stats.min == 1.0:
            continue  # an all-ones norm weight is reported by WA308 (untrained)
        yield CONSTANT.finding(loaded.path, f"all {stats.count:,} values of {tensor.name} equal {_fmt(stats.min)}",
                               tensor=tensor.name)


ALL_ZERO = register(Rule(
    id="WA303", name="all-zero-tensor", summary="Every value of a tensor is zero.", severity=Severity.MEDIUM,
    tags=("numerics",), needs_stats=True, check=_zero_check,
    thresholds={"min_elements": 2, "ignore_names": ["*num_batches_tracked"]},
    help="A weight that is entirely zero carries no information: typically a key that was missing when the "
         "checkpoint was written and got filled with zeros, a failed save, or an uninitialised buffer. "
         "(All-zero norm biases are reported by WA308 instead; other all-zero 1-D biases are reported at low "
         "severity, since zero is their usual initial value.)\n\nWhat to do: check that the tensor is meant to "
         "be zero (a disabled bias, a buffer); otherwise re-export it. Names in `ignore_names` (globs) are skipped.",
))
CONSTANT = register(Rule(
    id="WA304", name="constant-tensor", summary="Every value of a tensor is the same non-zero number.",
    severity=Severity.LOW, tags=("numerics",), needs_stats=True, check=_constant_check,
    thresholds={"min_elements": 16, "ignore_names": ["*masked_bias", "*attn.bias", "*attention.bias"]},
    help="A large weight tensor with one repeated value was never trained or was overwritten (a fill value, a "
         "broken quantisation scale). Legitimately constant buffers (masks, fixed scales) can be listed in "
         "`ignore_names`. All-ones norm weights are reported by WA308.\n\nWhat to do: check where the tensor "
         "comes from; re-export it from the trained checkpoint.",
))


# ------------------------------------------------------------------------------------------------ fp16 overflow

def half_precision_release(ctx: AuditContext) -> bool:
    """True when the release is meant to run in float16: config says so, or F16 holds most float parameters."""
    config = ctx.config or {}
    declared = str(config.get("torch_dtype") or config.get("dtype") or "").lower()
    if declared in ("float16", "fp16", "half", "torch.float16"):
        return True
    by_dtype: dict[str, int] = defaultdict(int)
    for tensor in ctx.tensors:
        if tensor.dtype in FLOAT_DTYPES:
            by_dtype[tensor.dtype] += tensor.parameter_count
    return bool(by_dtype) and max(by_dtype, key=lambda d: by_dtype[d]) == "F16"


def _fp16_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    half = half_precision_release(ctx)
    if not half and cfg.get("only_half_precision_releases", False):
        return
    severity = Severity.HIGH if half else FP16_OVERFLOW.severity
    why = "this release runs in float16" if half else "a float16 down-cast would turn them into Inf"
    for loaded, tensor, stats in _with_stats(ctx):
        if stats.fp16_overflow and tensor.role is not Role.OPTIMIZER:  # step counters, Adam moments: never cast
            yield FP16_OVERFLOW.finding(
                loaded.path, f"{stats.fp16_overflow:,} values of {tensor.name} ({tensor.dtype}) exceed the float16 "
                f"range (|x| > 65504, max |x| = {_fmt(stats.max_abs)}); {why}", tensor=tensor.name, severity=severity)


FP16_OVERFLOW = register(Rule(
    id="WA305", name="fp16-overflow", summary="A tensor holds values beyond the float16 range (|x| > 65504).",
    severity=Severity.MEDIUM, tags=("numerics",), needs_stats=True, check=_fp16_check,
    thresholds={"only_half_precision_releases": False},
    help="float16 tops out at 65504; casting a larger value gives Inf (65520 and above) and, downstream, NaN. "
         "A bf16/f32 checkpoint with such values breaks as soon as someone runs it in float16. Severity is high "
         "when the release itself is meant to run in float16 (config torch_dtype float16, or mostly F16 "
         "tensors), medium otherwise. Optimizer state (step counters, moments) is not inference weights and is "
         "skipped.\n\nWhat to do: ship the tensor in bf16/f32 and say so, or rescale it "
         "(e.g. fold the scale into the next layer) before converting.",
))


# ------------------------------------------------------------------------------------------------ duplicates

def _declared_ties(ctx: AuditContext) -> list[set[str]]:
    """Groups of tensor names the release declares as tied (so identical bytes are expected)."""
    ties: dict[str, set[str]] = defaultdict(set)
    for tensor in ctx.tensors:
        if tensor.storage is not None:
            ties[f"{tensor.file}\x00{tensor.storage}"].add(tensor.name)
    groups = [names for names in ties.values() if len(names) > 1]
    config = ctx.config or {}
    if config.get("tie_word_embeddings", True) is not False:
        pair = {t.name for t in ctx.tensors if EMBEDDING_NAME.search(t.name) or HEAD_NAME.search(t.name)}
        if len(pair) >= 2:
            groups.append(pair)
    return groups


def _copy_identity(ctx: AuditContext):
    """(file, name) -> an identity shared by the same tensor in every copy of one model (``weightaudit.copies``):
    copies hold identical bytes by design, WA208 compares them."""
    from weightaudit.copies import find_copies

    member_of = {path: (index, member) for index, group in enumerate(find_copies(ctx.files, ctx.release))
                 for member in group.members for path in member.files}

    def identity(path: str, name: str) -> tuple:
        if path in member_of:
            index, member = member_of[path]
            return ("copy", index, member.key(name))
        return ("file", path, name)
    return identity


def _one_per_copy(members: list[tuple[LoadedFile, TensorInfo]], same_tensor) -> list[tuple[LoadedFile, TensorInfo]]:
    seen: set[tuple] = set()
    kept = []
    for loaded, tensor in members:
        identity = same_tensor(loaded.path, tensor.name)
        if identity not in seen:
            seen.add(identity)
            kept.append((loaded, tensor))
    return kept


def _duplicate_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    groups: dict[tuple[str, str], list[tuple[LoadedFile, TensorInfo]]] = defaultdict(list)
    minimum = int(cfg.get("min_elements", 1024))
    for loaded, tensor, stats in _with_stats(ctx):
        if stats.count < minimum:
            continue
        if tensor.role is Role.OPTIMIZER:
            continue  # optimizer moments of parameters with equal gradients are alike by design; WA206 covers them
        if stats.min is not None and stats.min == stats.max:
            continue  # constant tensors are alike by value; WA303/WA304/WA308 speak about them
        groups[(tensor.dtype, stats.fingerprint)].append((loaded, tensor))
    candidates = [members for members in groups.values() if len(members) > 1]
    if not candidates:
        return   # (ties and copies are only read when some bytes repeat)
    ties = _declared_ties(ctx)
    same_tensor = _copy_identity(ctx)
    for members in candidates:
        members = _one_per_copy(members, same_tensor)   # one tensor held by several copies counts once
        if len(members) < 2:
            continue
        names = {t.name for _, t in members}
        if any(names <= tie for tie in ties):
            continue
        first_file, first = members[0]
        for loaded, tensor in members[1:]:
            where = first.name if first_file.path == loaded.path else f"{first.name} in {first_file.path}"
            yield DUPLICATE.finding(loaded.path, f"{tensor.name} has the same bytes as {where} "
                                    f"({tensor.parameter_count:,} values) and is not a declared tie",
                                    tensor=tensor.name)


DUPLICATE = register(Rule(
    id="WA306", name="duplicate-tensor", summary="Two tensors hold identical bytes without being declared tied.",
    severity=Severity.MEDIUM, tags=("numerics", "size"), needs_stats=True, check=_duplicate_check,
    thresholds={"min_elements": 1024},
    help="Byte-identical weights under different names are either an undeclared tie (the loader will untie "
         "them and training will make them drift apart), a copy-paste bug in a conversion script (one layer "
         "written twice, another missing), or wasted space. Declared ties — a shared storage, or embedding and "
         "LM head with tie_word_embeddings — are not reported. Constant tensors, optimizer state and tensors "
         "under `min_elements` are skipped.\n\nWhat to do: check the conversion; declare the tie or store it once.",
))


# ------------------------------------------------------------------------------------------------ outliers

def _outlier_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    sigma = float(cfg.get("sigma", 100.0))
    scored: list[tuple[float, LoadedFile, TensorInfo, TensorStats]] = []
    minimum = int(cfg.get("min_elements", 4096))
    for loaded, tensor, stats in _with_stats(ctx):
        if stats.count < minimum or not stats.std or stats.mean is None:
            continue
        distance = max(abs(stats.max - stats.mean), abs(stats.mean - stats.min))  # type: ignore[operator]
        score = distance / stats.std
        if score >= sigma:
            scored.append((score, loaded, tensor, stats))
    scored.sort(key=lambda item: (-item[0], item[1].path, item[2].name))
    for rank, (score, loaded, tensor, stats) in enumerate(scored[: int(cfg.get("top", 10))], 1):
        yield OUTLIER.finding(
            loaded.path, f"#{rank}: {tensor.name} has |x| = {_fmt(stats.max_abs)} at {_position(tensor, stats.max_abs_index)}, "
            f"{score:.0f} standard deviations from its mean (std {_fmt(stats.std)})", tensor=tensor.name)


OUTLIER = register(Rule(
    id="WA307", name="extreme-outlier", summary="A tensor has a value many standard deviations from its mean.",
    severity=Severity.INFO, confidence="medium", tags=("numerics",), needs_stats=True, check=_outlier_check,
    thresholds={"sigma": 100.0, "top": 10, "min_elements": 4096},
    help="Large language models concentrate crucial behaviour in a handful of huge weights ('super weights', "
         "Yu et al. 2024, arXiv 2411.07191: zeroing one scalar in Llama-7B's early mlp.down_proj destroys the "
         "model). They are normal in a trained model, but they are what quantisation, pruning and clipping break, "
         "and a release whose known super weight is missing or clipped is likely damaged. The top `top` tensors "
         "whose max |x - mean| exceeds `sigma` standard deviations are listed with the position of the largest "
         "|x|.\n\nWhat to do: nothing if this is the original model; after quantising or editing, compare these "
         "positions with the original.",
))


# ------------------------------------------------------------------------------------------------ untrained

def _uniform_init_std(tensor: TensorInfo) -> float | None:
    """std of torch's default Linear/Conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) = 1/sqrt(3 fan_in)."""
    if len(tensor.shape) < 2:
        return None
    fan_in = math.prod(tensor.shape[1:])
    return 1.0 / math.sqrt(3 * fan_in) if fan_in > 0 else None


def _untrained_reason(tensor: TensorInfo, stats: TensorStats, cfg: Mapping[str, Any], init_range: float | None) -> str | None:
    if stats.min is None or stats.std is None or stats.mean is None:
        return None
    if _is_norm(tensor):
        if stats.min == stats.max == 1.0 and tensor.name.endswith("weight"):
            return "norm weight is exactly 1 everywhere (its initial value)"
        if stats.min == stats.max == 0.0 and tensor.name.endswith("bias"):
            return "norm bias is exactly 0 everywhere (its initial value)"
        return None
    if stats.count < int(cfg.get("min_elements", 65536)) or not tensor.name.endswith("weight") or stats.std == 0:
        return None
    tolerance = float(cfg.get("std_tolerance", 0.02))
    centred = abs(stats.mean) <= 0.01 * stats.std
    uniform_std = _uniform_init_std(tensor)
    if uniform_std and centred and abs(stats.std / uniform_std - 1) <= tolerance:
        bound = math.sqrt(3) * uniform_std
        if stats.max_abs is not None and bound * 0.999 <= stats.max_abs <= bound * 1.000001:
            return (f"std {_fmt(stats.std)} and max |x| {_fmt(stats.max_abs)} match torch's default uniform init "
                    f"U(±1/sqrt(fan_in)) exactly")
    if init_range and centred and abs(stats.std / init_range - 1) <= tolerance and stats.max_abs is not None:
        if stats.max_abs / stats.std <= float(cfg.get("normal_max_sigma", 6.5)):
            return (f"std {_fmt(stats.std)} equals config initializer_range {init_range:g} with light, Gaussian "
                    f"tails (max {stats.max_abs / stats.std:.1f} std): looks like normal(0, initializer_range) init")
    return None


def _untrained_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    raw_range = (ctx.config or {}).get("initializer_range")
    init_range = float(raw_range) if isinstance(raw_range, (int, float)) and raw_range > 0 else None
    minimum = int(cfg.get("min_elements", 65536))
    for loaded, tensor, stats in _with_stats(ctx):
        if tensor.dtype not in FLOAT_DTYPES:
            continue
        if stats.count < minimum and not (stats.min == stats.max and stats.min in (0.0, 1.0)):
            continue   # _untrained_reason says None to these: a norm needs all 0 or 1, a matrix min_elements
        reason = _untrained_reason(tensor, stats, cfg, init_range)
        if reason:
            yield UNTRAINED.finding(loaded.path, f"{tensor.name} looks untrained: {reason}", tensor=tensor.name)


UNTRAINED = register(Rule(
    id="WA308", name="untrained-layer", summary="A tensor's statistics match its initialisation, not training.",
    severity=Severity.LOW, confidence="low", tags=("numerics",), needs_stats=True, check=_untrained_check,
    thresholds={"min_elements": 65536, "std_tolerance": 0.02, "normal_max_sigma": 6.5},
    help="A layer left at its initial values was never trained or never loaded: typically a new head, a key "
         "that a conversion dropped and the loader re-initialised, or a checkpoint saved before training. "
         "Signals (conservative, each exact or within `std_tolerance`): a norm weight exactly 1 or a norm bias "
         "exactly 0 everywhere; a weight matrix with mean ~0 whose std is 1/sqrt(3*fan_in) and whose max |x| "
         "sits at the bound 1/sqrt(fan_in) (torch's default kaiming-uniform); or, when config.json has "
         "initializer_range, std equal to it with Gaussian tails (trained matrices are heavy-tailed).\n\n"
         "What to do: check that the layer is meant to be untrained (e.g. frozen at init by design); otherwise "
         "find why its trained values were not saved.",
))
