"""Model facts from config.json (aliases, text_config) and PEFT adapters (facts shown; WA209 on a rank mismatch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.conftest import invoke, invoke_json
from weightaudit.model import TensorInfo
from weightaudit.model_facts import adapter_facts, facts_line, model_facts, rank_mismatches


def test_hugging_face_names() -> None:
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 32,
              "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 11008,
              "vocab_size": 32000, "max_position_embeddings": 4096}
    assert model_facts(config) == {"architecture": "LlamaForCausalLM", "model_type": "llama", "layers": 32,
                                   "hidden_size": 4096, "heads": 32, "kv_heads": 8, "intermediate_size": 11008,
                                   "vocab_size": 32000, "context_length": 4096}
    assert facts_line(model_facts(config)) == ("LlamaForCausalLM (llama): 32 layers, hidden 4,096, 32 heads (8 kv), "
                                               "ffn 11,008, vocab 32,000, context 4,096")


def test_gpt2_aliases() -> None:
    config = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024,
              "vocab_size": 50257}
    assert model_facts(config) == {"model_type": "gpt2", "layers": 12, "hidden_size": 768, "heads": 12,
                                   "vocab_size": 50257, "context_length": 1024}


def test_multimodal_text_config_fills_what_the_top_lacks() -> None:
    config = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
              "text_config": {"num_hidden_layers": 40, "hidden_size": 5120, "vocab_size": 32064,
                              "max_position_embeddings": 4096}, "vision_config": {"num_hidden_layers": 24}}
    facts = model_facts(config)
    assert facts["layers"] == 40 and facts["hidden_size"] == 5120 and facts["vocab_size"] == 32064


def test_hostile_values_are_dropped() -> None:
    config = {"architectures": [{"x": 1}], "model_type": "a" * 10_000, "num_hidden_layers": True,
              "hidden_size": -4, "n_embd": "768", "vocab_size": 3.5}
    facts = model_facts(config)
    assert facts == {"model_type": "a" * 120 + "…"}
    assert model_facts({}) is None and model_facts(None) is None


def lora(name: str, shape: tuple[int, ...]) -> TensorInfo:
    return TensorInfo(name, "F32", shape, "adapter_model.safetensors")


def test_rank_checks() -> None:
    config = {"peft_type": "LORA", "r": 8, "rank_pattern": {"layers.1.self_attn.q_proj": 4}}
    tensors = [lora("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", (8, 64)),
               lora("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", (64, 8)),
               lora("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", (4, 64)),
               lora("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", (64, 8)),   # pattern: 4
               lora("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight", (64, 16)),
               lora("base_model.model.model.embed_tokens.lora_embedding_A", (8, 100)),
               lora("base_model.model.model.embed_tokens.lora_embedding_B", (64, 2)),
               lora("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", (64, 1))]
    bad = sorted((m.tensor.name, m.expected) for m in rank_mismatches(config, tensors))
    assert bad == [("base_model.model.model.embed_tokens.lora_embedding_B", 8),
                   ("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight", 8),
                   ("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", 4)]
    assert rank_mismatches({"peft_type": "PROMPT_TUNING", "r": 8}, tensors) == []
    assert rank_mismatches({"peft_type": "LORA", "r": "8"}, tensors) == []


def adapter_release(folder: Path, rank_a: int = 8, rank_b: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((rank_a, 32), np.float32),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((32, rank_b), np.float32)},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "org/base-7b", "task_type": "CAUSAL_LM"}))
    return folder


def test_adapter_is_shown_and_clean(tmp_path: Path, runner) -> None:
    folder = adapter_release(tmp_path / "a")
    code, doc = invoke_json(runner, "inspect", folder)
    assert doc["summary"]["adapter"] == {"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                         "target_modules": ["q_proj", "v_proj"], "base_model": "org/base-7b"}
    assert [f for f in doc["findings"] if f["rule_id"] == "WA209"] == []
    text = invoke(runner, "inspect", folder).stdout
    assert "LORA r=8, alpha 16 on q_proj, v_proj; base org/base-7b" in " ".join(text.split())


def test_adapter_rank_mismatch_is_wa209(tmp_path: Path, runner) -> None:
    folder = adapter_release(tmp_path / "a", rank_b=4)
    _, doc = invoke_json(runner, "inspect", folder)
    found = [(f["rule_id"], f["severity"], f["tensor"]) for f in doc["findings"] if f["rule_id"] == "WA209"]
    assert found == [("WA209", "medium", "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")]


def test_model_facts_in_json_and_text(tmp_path: Path, runner) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    save_file({"transformer.wte.weight": np.zeros((50, 8), np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                                                    "n_layer": 2, "n_embd": 8, "n_head": 2, "vocab_size": 50,
                                                    "n_positions": 64}))
    code, doc = invoke_json(runner, "inspect", folder)
    assert doc["summary"]["model"] == {"architecture": "GPT2LMHeadModel", "model_type": "gpt2", "layers": 2,
                                       "hidden_size": 8, "heads": 2, "vocab_size": 50, "context_length": 64}
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("weightaudit").joinpath("schemas/report.v1.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    text = " ".join(invoke(runner, "inspect", folder).stdout.split())
    assert "GPT2LMHeadModel (gpt2): 2 layers, hidden 8, 2 heads, vocab 50, context 64" in text


def test_adapter_facts_of_odd_values() -> None:
    assert adapter_facts({"peft_type": "LORA", "r": True, "lora_alpha": "x", "target_modules": "all-linear"}) == {
        "peft_type": "LORA", "target_modules": "all-linear"}
    assert adapter_facts([]) is None


def test_one_layer_one_head_read_as_words() -> None:
    assert facts_line({"model_type": "tiny", "layers": 1, "heads": 1}) == "tiny: 1 layer, 1 head"


def test_huge_rank_pattern_is_looked_up_not_scanned() -> None:
    pattern = {f"layers.{i}.q_proj": 4 for i in range(200_000)}
    tensors = [lora(f"base_model.model.layers.{i}.q_proj.lora_A.weight", (4 if i % 2 else 8, 16)) for i in range(2000)]
    bad = rank_mismatches({"peft_type": "LORA", "r": 8, "rank_pattern": pattern}, tensors)
    assert len(bad) == 1000 and all(m.expected == 4 for m in bad)


def test_regex_rank_pattern_keys_are_not_run_and_do_not_raise_false_mismatches() -> None:
    config = {"peft_type": "LORA", "r": 8, "rank_pattern": {"^model.layers.(0|1).*q_proj$": 4}}
    tensors = [lora("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", (4, 64)),
               lora("base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight", (16, 64))]
    assert [m.tensor.name for m in rank_mismatches(config, tensors)] == [
        "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight"]
