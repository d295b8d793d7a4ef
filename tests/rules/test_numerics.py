"""WA3xx numeric rules: each fires on a bad release and stays silent on a clean one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from weightaudit.formats.base import LoadOptions
from weightaudit.formats.safetensors import LOADER
from weightaudit.model import LoadedFile, Release, Severity, TensorInfo
from weightaudit.rules import get_rule
from weightaudit.rules.base import AuditContext
from weightaudit.stats import compute_stats, tensor_stats

RNG = np.random.default_rng(7)
NUMERIC_RULES = ("WA301", "WA302", "WA303", "WA304", "WA305", "WA306", "WA307", "WA308")


def trained(*shape: int) -> np.ndarray:
    """Heavy-tailed values like a trained matrix (Student t, 4 degrees of freedom), std ~0.02."""
    return (RNG.standard_t(4, size=shape) * 0.014).astype(np.float32)


def build(tmp_path: Path, tensors: dict[str, np.ndarray], config: dict[str, Any] | None = None,
          *, stats: bool = True) -> AuditContext:
    save_file(tensors, str(tmp_path / "model.safetensors"))
    side: dict[str, tuple[str, ...]] = {}
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        side["config"] = ("config.json",)
    loaded = LOADER.load(tmp_path / "model.safetensors", "model.safetensors", LoadOptions())
    release = Release(target=str(tmp_path), root=str(tmp_path), weight_files=(), side_files=side)
    computed = compute_stats(tmp_path, [loaded]) if stats else {}
    return AuditContext(release=release, files=(loaded,), stats=computed, config=config)


def run(rule_id: str, ctx: AuditContext, **overrides: Any) -> list:
    rule = get_rule(rule_id)
    return list(rule.check(ctx, {**rule.thresholds, **overrides}))


def run_all(ctx: AuditContext) -> list:
    return [finding for rule_id in NUMERIC_RULES for finding in run(rule_id, ctx)]


def clean_tensors() -> dict[str, np.ndarray]:
    return {
        "model.embed_tokens.weight": trained(512, 64),
        "model.layers.0.input_layernorm.weight": (1 + 0.05 * RNG.standard_normal(64)).astype(np.float32),
        "model.layers.0.mlp.down_proj.weight": trained(64, 256),
        "model.layers.0.mlp.up_proj.weight": trained(256, 64),
        "model.layers.0.mlp.up_proj.bias": trained(256),
        "model.norm.weight": (1 + 0.05 * RNG.standard_normal(64)).astype(np.float32),
    }


def test_issue_release_gets_exactly_the_expected_findings(tmp_path: Path) -> None:
    tensors = clean_tensors()
    with_nan = trained(64, 64)
    with_nan[3, 4] = np.nan
    with_inf = trained(64, 64)
    with_inf[0, 0], with_inf[1, 1] = np.inf, -np.inf
    overflow = trained(64)
    overflow[5] = 1e5
    copy = trained(64, 64)
    tensors.update({
        "model.layers.1.self_attn.q_proj.weight": with_nan,
        "model.layers.1.self_attn.k_proj.weight": with_inf,
        "model.layers.1.self_attn.v_proj.weight": np.zeros((64, 64), np.float32),
        "model.layers.1.mlp.gate_proj.bias": overflow,
        "model.layers.1.self_attn.o_proj.weight": copy,
        "model.layers.2.self_attn.o_proj.weight": copy.copy(),
    })
    ctx = build(tmp_path, tensors)
    found = {(f.rule_id, f.tensor) for f in run_all(ctx) if f.severity >= Severity.LOW}
    assert found == {
        ("WA301", "model.layers.1.self_attn.q_proj.weight"),
        ("WA302", "model.layers.1.self_attn.k_proj.weight"),
        ("WA303", "model.layers.1.self_attn.v_proj.weight"),
        ("WA305", "model.layers.1.mlp.gate_proj.bias"),
        ("WA306", "model.layers.2.self_attn.o_proj.weight"),
    }
    stats = ctx.stats[("model.safetensors", "model.layers.1.self_attn.k_proj.weight")]
    assert (stats.nan, stats.pos_inf, stats.neg_inf) == (0, 1, 1)
    assert ctx.stats[("model.safetensors", "model.layers.1.self_attn.q_proj.weight")].nan == 1
    severities = {f.rule_id: f.severity for f in run_all(ctx)}
    assert severities["WA301"] == severities["WA302"] == Severity.HIGH
    assert severities["WA303"] == severities["WA305"] == severities["WA306"] == Severity.MEDIUM


def test_clean_release_has_no_findings(tmp_path: Path) -> None:
    assert run_all(build(tmp_path, clean_tensors(), {"tie_word_embeddings": False})) == []


def test_rules_are_silent_without_statistics(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["model.layers.1.self_attn.q_proj.weight"] = np.full((8, 8), np.nan, np.float32)
    assert run_all(build(tmp_path, tensors, stats=False)) == []
    assert all(get_rule(rule_id).needs_stats for rule_id in NUMERIC_RULES)


def test_constant_tensor(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["model.layers.0.mlp.scale"] = np.full(100, 0.5, np.float32)
    tensors["model.layers.0.self_attn.masked_bias"] = np.full(100, -1e4, np.float32)  # ignored by name
    findings = run("WA304", build(tmp_path, tensors))
    assert [f.tensor for f in findings] == ["model.layers.0.mlp.scale"]
    assert "0.5" in findings[0].message


def test_zero_rule_honours_ignore_names(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["model.layers.0.mlp.up_proj.bias"] = np.zeros(256, np.float32)
    ctx = build(tmp_path, tensors)
    assert [f.tensor for f in run("WA303", ctx)] == ["model.layers.0.mlp.up_proj.bias"]
    assert run("WA303", ctx, ignore_names=["*.bias"]) == []


def test_fp16_overflow_is_high_in_a_float16_release(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["model.layers.0.mlp.up_proj.bias"][0] = -70000.0
    findings = run("WA305", build(tmp_path, tensors, {"torch_dtype": "float16"}))
    assert [f.severity for f in findings] == [Severity.HIGH]
    assert "1 values" in findings[0].message or "1 value" in findings[0].message
    quiet = run("WA305", build(tmp_path, tensors, {"torch_dtype": "bfloat16"}), only_half_precision_releases=True)
    assert quiet == []


def test_values_up_to_fp16_max_do_not_overflow(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["model.layers.0.mlp.up_proj.bias"][0] = 65504.0
    assert run("WA305", build(tmp_path, tensors)) == []


def test_declared_tie_is_not_a_duplicate(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    assert run("WA306", build(tmp_path, tensors, {"tie_word_embeddings": True})) == []
    untied = run("WA306", build(tmp_path, tensors, {"tie_word_embeddings": False}))
    assert [f.tensor for f in untied] == ["model.embed_tokens.weight"]


def test_shared_storage_is_a_declared_tie() -> None:
    values = trained(64, 64)
    stats = tensor_stats([values.tobytes()], "F32")
    a = TensorInfo("encoder.weight", "F32", (64, 64), "model.pt", storage="0")
    b = TensorInfo("decoder.weight", "F32", (64, 64), "model.pt", storage="0")
    c = TensorInfo("other.weight", "F32", (64, 64), "model.pt", storage="1")
    release = Release(target=".", root=".", weight_files=())
    tied = AuditContext(release, (LoadedFile("model.pt", "pytorch-zip", 1, tensors=(a, b)),),
                        stats={a.key: stats, b.key: stats})
    assert run("WA306", tied) == []
    copied = AuditContext(release, (LoadedFile("model.pt", "pytorch-zip", 1, tensors=(a, c)),),
                          stats={a.key: stats, c.key: stats})
    assert [f.tensor for f in run("WA306", copied)] == ["other.weight"]


def test_constant_tensors_are_not_duplicates(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["a.scale"] = np.full(2048, 0.25, np.float32)
    tensors["b.scale"] = np.full(2048, 0.25, np.float32)
    assert run("WA306", build(tmp_path, tensors)) == []


def test_outlier_lists_position_and_respects_sigma(tmp_path: Path) -> None:
    tensors = clean_tensors()
    spiky = (RNG.standard_normal((64, 256)) * 0.02).astype(np.float32)
    spiky[2, 7] = 40.0
    tensors["model.layers.0.mlp.down_proj.weight"] = spiky
    ctx = build(tmp_path, tensors)
    findings = run("WA307", ctx)
    assert [f.tensor for f in findings] == ["model.layers.0.mlp.down_proj.weight"]
    assert "[2, 7]" in findings[0].message and findings[0].severity == Severity.INFO
    assert run("WA307", ctx, sigma=1e6) == []
    assert len(run("WA307", ctx, sigma=3, top=2)) == 2


def test_untrained_norms(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["model.layers.0.input_layernorm.weight"] = np.ones(64, np.float32)
    tensors["encoder.layer.0.output.LayerNorm.bias"] = np.zeros(64, np.float32)
    ctx = build(tmp_path, tensors)
    found = sorted(f.tensor for f in run("WA308", ctx))
    assert found == ["encoder.layer.0.output.LayerNorm.bias", "model.layers.0.input_layernorm.weight"]
    assert run("WA303", ctx) == [] and run("WA304", ctx) == []


def test_untrained_default_uniform_init(tmp_path: Path) -> None:
    tensors = clean_tensors()
    fan_in = 512
    bound = 1 / np.sqrt(fan_in)
    tensors["classifier.weight"] = RNG.uniform(-bound, bound, (256, fan_in)).astype(np.float32)
    findings = run("WA308", build(tmp_path, tensors))
    assert [f.tensor for f in findings] == ["classifier.weight"]
    assert findings[0].severity == Severity.LOW


def test_untrained_normal_init_needs_initializer_range(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["score.weight"] = (RNG.standard_normal((256, 512)) * 0.02).astype(np.float32)
    assert run("WA308", build(tmp_path, tensors)) == []
    findings = run("WA308", build(tmp_path, tensors, {"initializer_range": 0.02}))
    assert [f.tensor for f in findings] == ["score.weight"]


def test_trained_matrices_are_not_untrained(tmp_path: Path) -> None:
    tensors = clean_tensors()
    tensors["score.weight"] = trained(256, 512)
    assert run("WA308", build(tmp_path, tensors, {"initializer_range": 0.02})) == []


@pytest.mark.parametrize("rule_id", NUMERIC_RULES)
def test_rules_are_documented(rule_id: str) -> None:
    rule = get_rule(rule_id)
    assert rule.help and rule.summary and rule.name and rule.check is not None


def test_identical_optimizer_moments_are_not_duplicates(tmp_path: Path) -> None:
    """Adam moments of parameters that saw equal gradients are alike by design (Resemblyzer ships such)."""
    import dataclasses

    from weightaudit.model import Role

    moment = trained(64, 64)
    ctx = build(tmp_path, {"optimizer.state.0.exp_avg": moment, "optimizer.state.1.exp_avg": moment.copy()})
    (loaded,) = ctx.files
    as_optimizer = dataclasses.replace(loaded, tensors=tuple(dataclasses.replace(t, role=Role.OPTIMIZER)
                                                             for t in loaded.tensors))
    assert run("WA306", dataclasses.replace(ctx, files=(as_optimizer,))) == []
    assert [f.rule_id for f in run("WA306", ctx)] == ["WA306"]


def test_all_zero_bias_is_low_and_all_zero_matrix_medium(tmp_path: Path) -> None:
    ctx = build(tmp_path, {"pooler.dense.bias": np.zeros(384, np.float32),
                           "pooler.dense.weight": np.zeros((8, 8), np.float32)})
    found = {f.tensor: f.severity for f in run("WA303", ctx)}
    assert found == {"pooler.dense.bias": Severity.LOW, "pooler.dense.weight": Severity.MEDIUM}


def test_fp16_overflow_ignores_optimizer_counters(tmp_path: Path) -> None:
    import dataclasses

    from weightaudit.model import Role

    ctx = build(tmp_path, {"optimizer.iterations": np.array([92494.0], np.float32)})
    assert [f.rule_id for f in run("WA305", ctx)] == ["WA305"]
    (loaded,) = ctx.files
    as_optimizer = dataclasses.replace(loaded, tensors=tuple(dataclasses.replace(t, role=Role.OPTIMIZER)
                                                             for t in loaded.tensors))
    assert run("WA305", dataclasses.replace(ctx, files=(as_optimizer,))) == []
