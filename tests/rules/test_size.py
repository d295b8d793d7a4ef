"""WA2xx size and shape rules: each fires on a bad release and stays silent on a good one."""

from __future__ import annotations

from typing import Any

from weightaudit.model import LoadedFile, Release, Role, Severity, ShardIndex, TensorInfo
from weightaudit.rules import get_rule
from weightaudit.rules.base import AuditContext

SIZE_RULES = ("WA201", "WA202", "WA203", "WA204", "WA205", "WA206", "WA207")
CONFIG = {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "torch_dtype": "bfloat16"}


def tensor(name: str, shape: tuple[int, ...], dtype: str = "BF16", file: str = "model.safetensors",
           role: Role = Role.PARAMETER, storage: str | None = None) -> TensorInfo:
    return TensorInfo(name, dtype, shape, file, role=role, storage=storage)


def llama(layers: int = 2, vocab: int = 1000, hidden: int = 64) -> list[TensorInfo]:
    out = [tensor("model.embed_tokens.weight", (vocab, hidden)), tensor("lm_head.weight", (vocab, hidden))]
    for i in range(layers):
        out += [tensor(f"model.layers.{i}.input_layernorm.weight", (hidden,)),
                tensor(f"model.layers.{i}.self_attn.q_proj.weight", (hidden, hidden))]
    return out


def context(tensors: list[TensorInfo], config: dict[str, Any] | None = CONFIG,
            indexes: tuple[ShardIndex, ...] = ()) -> AuditContext:
    by_file: dict[str, list[TensorInfo]] = {}
    for t in tensors:
        by_file.setdefault(t.file, []).append(t)
    files = tuple(LoadedFile(path, "safetensors", 1, tensors=tuple(ts)) for path, ts in sorted(by_file.items()))
    side = {"config": ("config.json",)} if config is not None else {}
    release = Release(target=".", root=".", weight_files=(), shard_indexes=indexes, side_files=side)
    return AuditContext(release=release, files=files, config=config)


def run(rule_id: str, ctx: AuditContext, **overrides: Any) -> list:
    rule = get_rule(rule_id)
    return list(rule.check(ctx, {**rule.thresholds, **overrides}))


def run_all(ctx: AuditContext) -> list:
    return [f for rule_id in SIZE_RULES for f in run(rule_id, ctx)]


def test_consistent_release_has_no_findings() -> None:
    assert run_all(context(llama())) == []


def test_vocab_and_hidden_size_mismatch() -> None:
    findings = run("WA201", context(llama(vocab=900)))
    assert {f.tensor for f in findings} == {"model.embed_tokens.weight", "lm_head.weight"}
    assert all("vocab_size is 1,000" in f.message and f.severity == Severity.MEDIUM for f in findings)
    wide = run("WA201", context(llama(hidden=96)))
    assert any("hidden size is 64" in f.message for f in wide)
    assert any(f.tensor == "model.layers.0.input_layernorm.weight" for f in wide)


def test_vocab_padded_to_a_multiple_is_accepted() -> None:
    assert run("WA201", context(llama(vocab=1024))) == []
    assert run("WA201", context(llama(vocab=1024)), vocab_padding_multiple=0) != []


def test_layer_count_mismatch() -> None:
    missing = run("WA202", context(llama(layers=2), {**CONFIG, "num_hidden_layers": 4}))
    assert len(missing) == 1 and "missing 2-3" in missing[0].message and missing[0].path == "config.json"
    extra = run("WA202", context(llama(layers=3)))
    assert len(extra) == 1 and "unexpected 2" in extra[0].message
    gap = [t for t in llama(layers=4) if not t.name.startswith("model.layers.1.")]
    assert "missing 1" in run("WA202", context(gap, {**CONFIG, "num_hidden_layers": 4}))[0].message
    assert run("WA202", context(llama(layers=2), None)) == []


def test_f64_tensors() -> None:
    tensors = llama() + [tensor("extra.weight", (64, 64), "F64"), tensor("step", (1,), "F64")]
    findings = run("WA203", context(tensors))
    assert len(findings) == 1 and findings[0].tensor == "extra.weight" and findings[0].severity == Severity.LOW


def test_mixed_float_dtypes() -> None:
    tensors = llama() + [tensor("extra.weight", (64, 64), "F32")]
    findings = run("WA204", context(tensors))
    assert len(findings) == 1 and "BF16" in findings[0].message and "F32 4,096" in findings[0].message
    assert findings[0].severity == Severity.INFO
    assert run("WA204", context(tensors), min_elements=5000) == []


def test_dtype_config_mismatch() -> None:
    tensors = [tensor(t.name, t.shape, "F32") for t in llama()]
    findings = run("WA205", context(tensors))
    assert len(findings) == 1 and "bfloat16" in findings[0].message and "F32" in findings[0].message
    assert run("WA205", context(tensors, {**CONFIG, "torch_dtype": "float32"})) == []


def test_optimizer_state() -> None:
    tensors = llama() + [tensor("optimizer.state.0.exp_avg", (64, 64), "F32", "ckpt.pt", Role.OPTIMIZER)]
    findings = run("WA206", context(tensors))
    assert [f.path for f in findings] == ["ckpt.pt"] and findings[0].severity == Severity.MEDIUM
    assert "exp_avg" in findings[0].message


def test_total_size_against_the_index() -> None:
    tensors = [tensor("a", (10,), "F32", "model-1.safetensors"), tensor("b", (6,), "BF16", "model-2.safetensors")]
    weight_map = {"a": "model-1.safetensors", "b": "model-2.safetensors"}
    good = ShardIndex("model.safetensors.index.json", weight_map, {"total_size": 52})
    assert run("WA207", context(tensors, indexes=(good,))) == []
    bad = ShardIndex("model.safetensors.index.json", weight_map, {"total_size": 60, "total_parameters": 17})
    findings = run("WA207", context(tensors, indexes=(bad,)))
    assert len(findings) == 2 and "52" in findings[0].message and "-8" in findings[0].message
    assert "16 parameters" in findings[1].message
    assert run("WA207", context(tensors, indexes=(bad,)), tolerance_bytes=8) != []


def test_total_size_counts_shared_storage_once() -> None:
    tensors = [tensor("embed", (10,), "F32", "m.bin", storage="0"), tensor("head", (10,), "F32", "m.bin", storage="0")]
    index = ShardIndex("pytorch_model.bin.index.json", {"embed": "m.bin", "head": "m.bin"}, {"total_size": 40})
    assert run("WA207", context(tensors, indexes=(index,))) == []


def test_rules_are_documented() -> None:
    for rule_id in SIZE_RULES:
        rule = get_rule(rule_id)
        assert rule.help and rule.summary and rule.check is not None and not rule.needs_stats
