"""Quantized GGUF statistics: our block dequantizers equal the gguf package's (``gguf.quants.dequantize``) bit
for bit on random blocks of every type it implements, and files written by ``gguf.GGUFWriter`` get statistics
within quantization error of the original float32 weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize as reference_dequantize  # noqa: E402

from weightaudit.formats.gguf import GGML_TYPES, parse  # noqa: E402
from weightaudit.formats.gguf_quant import (  # noqa: E402
    VALUES_PER_CHUNK, DEQUANTIZERS, dequantize, dequantized_chunks, not_dequantized,
)
from weightaudit.pipeline import stats_coverage  # noqa: E402
from weightaudit.stats import compute_stats, has_statistics  # noqa: E402

Q = gguf.GGMLQuantizationType
LAYOUT = {t.code: t for t in GGML_TYPES.values()}
REFERENCE_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def _random_blocks(dtype: str, blocks: int, seed: int) -> bytes:
    """Random bytes of valid structure: every bit pattern is a valid block; f16 scales kept finite."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (blocks, LAYOUT[dtype].block_bytes), dtype=np.uint8)
    return data.tobytes()


@pytest.mark.parametrize("dtype", REFERENCE_TYPES)
def test_dequantization_equals_the_gguf_package_bit_for_bit(dtype: str) -> None:
    raw = _random_blocks(dtype, 300, seed=len(dtype) * 31 + ord(dtype[1]))
    blocks = np.frombuffer(raw, np.uint8).reshape(300, LAYOUT[dtype].block_bytes)
    with np.errstate(all="ignore"):
        expected = reference_dequantize(blocks, Q[dtype]).astype(np.float32).ravel()
    ours = dequantize(raw, dtype)
    assert ours.shape == expected.shape
    assert np.array_equal(ours, expected, equal_nan=True)


def test_q8_k_follows_the_ggml_formula() -> None:
    """The gguf package cannot dequantize Q8_K: check ggml's formula (f32 d, int8 values) on a built block."""
    k = np.arange(-128, 128, dtype=np.int8)
    q8_k = np.float32(0.25).tobytes() + k.tobytes() + bytes(32)
    assert np.array_equal(dequantize(q8_k, "Q8_K"), k.astype(np.float32) * 0.25)


def test_streaming_cuts_whole_blocks_whatever_the_chunks() -> None:
    raw = _random_blocks("Q4_K", VALUES_PER_CHUNK // 256 * 3 + 77, seed=5)
    whole = dequantize(raw, "Q4_K")
    pieces = [memoryview(raw)[i:i + 1001] for i in range(0, len(raw), 1001)]
    streamed = np.concatenate([np.frombuffer(c, "<f4") for c in dequantized_chunks(pieces, "Q4_K")])
    assert np.array_equal(streamed, whole, equal_nan=True)
    with pytest.raises(ValueError):
        list(dequantized_chunks([raw[:-3]], "Q4_K"))


def test_iq_types_are_inventoried_without_statistics() -> None:
    assert set(DEQUANTIZERS) >= {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
    for dtype in ("IQ2_XXS", "IQ4_NL", "IQ1_M", "TQ1_0", "MXFP4", "Q8_1"):
        assert not_dequantized(dtype) and not has_statistics(dtype)
    assert not not_dequantized("F16") and has_statistics("Q6_K")


# --------------------------------------------------------------- files written by gguf.GGUFWriter


def _quantize_q4_k(values: np.ndarray) -> bytes:
    """A plain Q4_K quantizer (the gguf package cannot quantize K-quants): per 32-value sub-block a 6-bit scale
    and min against the block's f16 d / dmin, 4-bit values, packed as ggml's block_q4_K."""
    x = values.reshape(-1, 8, 32).astype(np.float64)
    low = np.minimum(x.min(axis=2), 0.0)
    scale = (x.max(axis=2) - low) / 15.0
    d = np.maximum(scale.max(axis=1), 1e-12) / 63.0
    dmin = np.maximum(-low.min(axis=1), 1e-12) / 63.0
    d16, dmin16 = d.astype(np.float16), dmin.astype(np.float16)
    ls = np.clip(np.round(scale / d16.astype(np.float64)[:, None]), 1, 63).astype(np.uint8)
    lm = np.clip(np.round(-low / dmin16.astype(np.float64)[:, None]), 0, 63).astype(np.uint8)
    step = d16.astype(np.float64)[:, None] * ls
    q = np.clip(np.round((x + (dmin16.astype(np.float64)[:, None] * lm)[:, :, None]) / step[:, :, None]), 0, 15)
    q = q.astype(np.uint8)
    scales = np.zeros((x.shape[0], 12), np.uint8)
    scales[:, 0:4] = (ls[:, 0:4] & 63) | ((ls[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = (lm[:, 0:4] & 63) | ((lm[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (ls[:, 4:8] & 0x0F) | ((lm[:, 4:8] & 0x0F) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)
    head = np.stack([d16, dmin16], axis=1).view(np.uint8).reshape(-1, 4)
    return np.concatenate([head, scales, qs], axis=1).tobytes()


def _write(path: Path, originals: dict[str, np.ndarray]) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_license("apache-2.0")
    writer.add_base_model_count(1)
    writer.add_base_model_name(0, "Llama 3 8B")
    writer.add_base_model_organization(0, "Meta Llama")
    writer.add_base_model_repo_url(0, "https://huggingface.co/meta-llama/Meta-Llama-3-8B")
    for name, values in originals.items():
        dtype = name.split("-")[0]
        if dtype == "Q4_K":
            raw = np.frombuffer(_quantize_q4_k(values), np.uint8)
        else:
            raw = gguf.quants.quantize(values, Q[dtype])
        writer.add_tensor(name, raw.reshape(values.shape[0], -1), raw_shape=raw.reshape(values.shape[0], -1).shape,
                          raw_dtype=Q[dtype])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_statistics_of_gguf_written_tensors_are_within_quantization_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    originals = {f"{dtype}-w": (rng.standard_normal((96, 512)) * 0.05 + 0.01).astype(np.float32)
                 for dtype in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K")}
    path = tmp_path / "model.gguf"
    _write(path, originals)
    loaded = parse(path, "model.gguf")
    assert loaded.findings == () and loaded.verified
    assert {t.name: t.dtype for t in loaded.tensors} == {name: name.split("-")[0] for name in originals}
    stats = compute_stats(tmp_path, [loaded], workers=1)
    reader = gguf.GGUFReader(str(path))
    for tensor in reader.tensors:
        name = tensor.name
        original = originals[name]
        with np.errstate(all="ignore"):
            dequantized = reference_dequantize(tensor.data, tensor.tensor_type).astype(np.float64).ravel()
        result = stats[("model.gguf", name)]
        # exact against the gguf package's dequantization of the same bytes ...
        assert result.count == original.size == dequantized.size
        assert result.min == pytest.approx(dequantized.min(), abs=1e-7)
        assert result.max == pytest.approx(dequantized.max(), abs=1e-7)
        assert result.mean == pytest.approx(dequantized.mean(), rel=1e-5, abs=1e-8)
        assert result.std == pytest.approx(dequantized.std(), rel=1e-5)
        # ... and within quantization error of the original weights
        error = np.abs(dequantized - original.ravel()).max()
        bits = {"Q8_0": 8, "Q4_0": 4, "Q4_1": 4, "Q5_0": 5, "Q5_1": 5, "Q4_K": 4}[name.split("-")[0]]
        assert error <= (original.max() - original.min()) / 2 ** (bits - 1), name
        assert abs(result.mean - original.mean()) <= error and abs(result.std - original.std()) <= error
        assert abs(result.min - original.min()) <= error and abs(result.max - original.max()) <= error
    _, notes = stats_coverage((loaded,), stats)
    assert notes == []                   # no "no statistics for Q4_0" note any more
    assert loaded.facts["license"] == "apache-2.0"
    assert loaded.facts["base_models"] == [{"name": "Llama 3 8B", "organization": "Meta Llama",
                                            "repo_url": "https://huggingface.co/meta-llama/Meta-Llama-3-8B"}]


def test_iq_tensor_gets_a_note_and_no_statistics(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), "llama")
    raw = np.frombuffer(_random_blocks("IQ4_NL", 8, seed=2), np.uint8).reshape(2, -1)
    writer.add_tensor("iq", raw, raw_shape=raw.shape, raw_dtype=Q.IQ4_NL)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    loaded = parse(tmp_path / "iq.gguf", "iq.gguf")
    assert [(t.name, t.dtype, t.shape) for t in loaded.tensors] == [("iq", "IQ4_NL", (2, 128))]
    stats = compute_stats(tmp_path, [loaded], workers=1)
    assert stats == {}
    checked, notes = stats_coverage((loaded,), stats)
    assert checked[0].verified and len(notes) == 1 and "IQ4_NL" in notes[0]
