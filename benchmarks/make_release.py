"""Generate a ~2 GB Llama-shaped safetensors release for the statistics benchmark.

Two shards plus ``model.safetensors.index.json`` and ``config.json`` under ``benchmarks/out/release`` (gitignored).
Matrices are BF16 (normal, std 0.02); the embedding is F32; norm weights are F32 LayerNorm-like (mean 1,
std 1e-4). Tensors are written one at a time, so generating needs little memory.

    python benchmarks/make_release.py [--out DIR] [--layers 16]
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np

HIDDEN, INTERMEDIATE, VOCAB = 2048, 5632, 32000
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "release"


def layer_tensors(i: int) -> list[tuple[str, str, tuple[int, ...]]]:
    p = f"model.layers.{i}"
    return [
        (f"{p}.input_layernorm.weight", "F32", (HIDDEN,)),
        (f"{p}.self_attn.q_proj.weight", "BF16", (HIDDEN, HIDDEN)),
        (f"{p}.self_attn.k_proj.weight", "BF16", (HIDDEN, HIDDEN)),
        (f"{p}.self_attn.v_proj.weight", "BF16", (HIDDEN, HIDDEN)),
        (f"{p}.self_attn.o_proj.weight", "BF16", (HIDDEN, HIDDEN)),
        (f"{p}.post_attention_layernorm.weight", "F32", (HIDDEN,)),
        (f"{p}.mlp.gate_proj.weight", "BF16", (INTERMEDIATE, HIDDEN)),
        (f"{p}.mlp.up_proj.weight", "BF16", (INTERMEDIATE, HIDDEN)),
        (f"{p}.mlp.down_proj.weight", "BF16", (HIDDEN, INTERMEDIATE)),
    ]


def values(dtype: str, shape: tuple[int, ...], name: str, rng: np.random.Generator) -> bytes:
    count = int(np.prod(shape))
    if "layernorm" in name or name.endswith("norm.weight"):
        return (1.0 + 1e-4 * rng.standard_normal(count, dtype=np.float32)).astype("<f4").tobytes()
    data = rng.standard_normal(count, dtype=np.float32)
    data *= 0.02
    if dtype == "F32":
        return data.astype("<f4").tobytes()
    return (data.view(np.uint32) >> 16).astype("<u2").tobytes()  # BF16 by truncation


def write_shard(path: Path, specs: list[tuple[str, str, tuple[int, ...]]], rng: np.random.Generator) -> int:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in specs:
        nbytes = int(np.prod(shape)) * (2 if dtype == "BF16" else 4)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for name, dtype, shape in specs:
            handle.write(values(dtype, shape, name, rng))
    return offset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--layers", type=int, default=16)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    half = args.layers // 2
    shards = [
        [("model.embed_tokens.weight", "F32", (VOCAB, HIDDEN))] + [t for i in range(half) for t in layer_tensors(i)],
        [t for i in range(half, args.layers) for t in layer_tensors(i)]
        + [("model.norm.weight", "F32", (HIDDEN,)), ("lm_head.weight", "BF16", (VOCAB, HIDDEN))],
    ]
    weight_map: dict[str, str] = {}
    total = 0
    for k, specs in enumerate(shards, 1):
        name = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(args.out / name, specs, rng)
        weight_map.update({spec[0]: name for spec in specs})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (args.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE, "num_hidden_layers": args.layers, "num_attention_heads": 16,
        "num_key_value_heads": 16, "vocab_size": VOCAB, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    }
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"wrote {total / 1e9:.2f} GB of tensors to {args.out}")


if __name__ == "__main__":
    main()
