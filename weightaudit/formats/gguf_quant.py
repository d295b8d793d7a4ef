"""Dequantization of ggml's block-quantized tensor types with vectorised numpy, streamed in whole blocks.

Block layouts and formulas follow ggml (``ggml-common.h`` block structs, ``dequantize_row_*`` in
``ggml-quants.c``); tests check every type against the ``gguf`` Python package's own dequantizer
(``gguf.quants.dequantize``) on random blocks, and statistics of files written by ``gguf.GGUFWriter``.

Types: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0, K-quants Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K. Not dequantized (inventoried,
"statistics not computed"): the IQ* types (lattice codebooks), TQ1_0/TQ2_0, MXFP4, NVFP4, Q1_0, and Q8_1 (an
intermediate type of ggml's dot products, never written by llama.cpp's tools; its block size differs between
ggml, 36 bytes, and the gguf package, 40).

``dequantized_chunks`` turns a stream of raw bytes (chunks of any size) into float32 little-endian bytes,
about ``VALUES_PER_CHUNK`` values at a time, so memory stays bounded whatever the tensor size.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from weightaudit.formats.gguf_types import GGML_TYPES, QK_K

VALUES_PER_CHUNK = 65536          # values dequantized at once: 256 KiB of float32, cache-sized (measured best
                                  # here: 2x faster than 1M-value chunks)
_F16 = np.dtype("<f2")


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    """The f16 at byte ``at`` of every block, as a (blocks, 1) float32 column."""
    return np.ascontiguousarray(blocks[:, at:at + 2]).view(_F16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (qs & 0x0F).astype(np.int16), (qs >> 4).astype(np.int16)


def _q4_0(b: np.ndarray) -> np.ndarray:
    low, high = _nibbles(b[:, 2:18])
    return (np.concatenate([low, high], axis=1) - 8) * _f16(b, 0)


def _q4_1(b: np.ndarray) -> np.ndarray:
    low, high = _nibbles(b[:, 4:20])
    return np.concatenate([low, high], axis=1) * _f16(b, 0) + _f16(b, 2)


def _q5_high(qh_bytes: np.ndarray) -> np.ndarray:
    """The 32 fifth bits of a Q5 block (bit j of the little-endian u32 qh belongs to element j), as 0/16."""
    qh = np.ascontiguousarray(qh_bytes).view("<u4")
    return (((qh >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.int16)


def _q5_0(b: np.ndarray) -> np.ndarray:
    low, high = _nibbles(b[:, 6:22])
    return (np.concatenate([low, high], axis=1) + _q5_high(b[:, 2:6]) - 16) * _f16(b, 0)


def _q5_1(b: np.ndarray) -> np.ndarray:
    low, high = _nibbles(b[:, 8:24])
    return (np.concatenate([low, high], axis=1) + _q5_high(b[:, 4:8])) * _f16(b, 0) + _f16(b, 2)


def _q8_0(b: np.ndarray) -> np.ndarray:
    return b[:, 2:34].view(np.int8).astype(np.float32) * _f16(b, 0)


def _q8_k(b: np.ndarray) -> np.ndarray:
    d = np.ascontiguousarray(b[:, 0:4]).view("<f4")
    return b[:, 4:4 + QK_K].view(np.int8).astype(np.float32) * d


def _q2_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    scales, qs = b[:, 0:16], b[:, 16:80].reshape(n, 2, 1, 32)
    d, dmin = _f16(b, 80).reshape(n, 1, 1, 1, 1), _f16(b, 82).reshape(n, 1, 1, 1, 1)
    q = ((qs >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3).reshape(n, 2, 4, 2, 16)
    sc = scales.reshape(n, 2, 4, 2, 1)
    return (d * (sc & 0xF) * q - dmin * (sc >> 4)).reshape(n, QK_K)


def _q3_k_scales(raw: np.ndarray) -> np.ndarray:
    """The 16 signed 6-bit scales of Q3_K blocks (ggml's kmask1/kmask2 unpacking), minus 32."""
    k = np.arange(16)
    group, byte = k // 4, k % 4
    low = (raw[:, (group % 2) * 4 + byte] >> (4 * (group // 2))) & 0x0F
    high = (raw[:, 8 + byte] >> (2 * group)) & 0x03
    return (low | (high << 4)).astype(np.int16) - 32


def _q3_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    hmask, qs = b[:, 0:32], b[:, 32:96].reshape(n, 2, 1, 32)
    scales = _q3_k_scales(b[:, 96:108]).reshape(n, 2, 4, 2, 1).astype(np.float32)
    d = _f16(b, 108).reshape(n, 1, 1, 1, 1)
    low = ((qs >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3).astype(np.int16)
    bit = np.arange(8, dtype=np.uint8).reshape(1, 2, 4, 1)
    high = (hmask.reshape(n, 1, 1, 32) >> bit) & 1
    q = (low - np.where(high == 0, 4, 0)).reshape(n, 2, 4, 2, 16)
    return (d * scales * q).reshape(n, QK_K)


def _k4_scales(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 (scale, min) 6-bit pairs of Q4_K/Q5_K blocks (ggml's get_scale_min_k4)."""
    scale = np.empty((raw.shape[0], 8), np.float32)
    minimum = np.empty((raw.shape[0], 8), np.float32)
    scale[:, :4], minimum[:, :4] = raw[:, 0:4] & 63, raw[:, 4:8] & 63
    scale[:, 4:] = (raw[:, 8:12] & 0x0F) | ((raw[:, 0:4] >> 6) << 4)
    minimum[:, 4:] = (raw[:, 8:12] >> 4) | ((raw[:, 4:8] >> 6) << 4)
    return scale, minimum


def _q4_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    scale, minimum = _k4_scales(b[:, 4:16])
    qs = b[:, 16:144].reshape(n, 4, 1, 32)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32)
    d, dmin = _f16(b, 0), _f16(b, 2)
    return ((d * scale)[:, :, None] * q - (dmin * minimum)[:, :, None]).reshape(n, QK_K)


def _q5_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    scale, minimum = _k4_scales(b[:, 4:16])
    qh, qs = b[:, 16:48], b[:, 48:176].reshape(n, 4, 1, 32)
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32).astype(np.int16)
    high = ((qh.reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1).astype(np.int16) << 4
    d, dmin = _f16(b, 0), _f16(b, 2)
    return ((d * scale)[:, :, None] * (low + high) - (dmin * minimum)[:, :, None]).reshape(n, QK_K)


def _q6_k(b: np.ndarray) -> np.ndarray:
    n = b.shape[0]
    ql, qh = b[:, 0:128].reshape(n, 2, 2, 32), b[:, 128:192].reshape(n, 2, 1, 32)
    scales = b[:, 192:208].view(np.int8).astype(np.float32).reshape(n, 2, 4, 2, 1)
    d = _f16(b, 208).reshape(n, 1, 1, 1, 1)
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2)                       # (n, half, 4 quarters, 32)
    high = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
    q = ((low | (high << 4)).astype(np.int16) - 32).reshape(n, 2, 4, 2, 16)
    return (d * scales * q).reshape(n, QK_K)


DEQUANTIZERS: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {
    "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1, "Q8_0": _q8_0,
    "Q2_K": _q2_k, "Q3_K": _q3_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k, "Q8_K": _q8_k,
}
_LAYOUT = {t.code: t for t in GGML_TYPES.values() if t.code in DEQUANTIZERS}


def dequantizable(dtype: str) -> bool:
    return dtype in DEQUANTIZERS


def not_dequantized(dtype: str) -> bool:
    """A ggml block-quantized type whose statistics are not computed (IQ*, TQ*, MXFP4, NVFP4, Q1_0)."""
    return dtype not in DEQUANTIZERS and any(t.code == dtype and t.block_elements > 1 for t in GGML_TYPES.values())


def dequantize(raw: bytes | memoryview, dtype: str) -> np.ndarray:
    """float32 values of whole blocks of ``dtype`` (raises ValueError on a partial block)."""
    layout = _LAYOUT[dtype]
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size % layout.block_bytes:
        raise ValueError(f"{data.size} bytes are not whole {dtype} blocks of {layout.block_bytes} bytes")
    blocks = data.reshape(-1, layout.block_bytes)
    with np.errstate(all="ignore"):     # NaN/Inf scales are data: the statistics count them
        return DEQUANTIZERS[dtype](blocks).astype(np.float32, copy=False).reshape(-1)


def _as_bytes(values: np.ndarray) -> memoryview:
    return memoryview(values.astype("<f4", copy=False).view(np.uint8))


def dequantized_chunks(chunks: Iterable[memoryview | bytes], dtype: str) -> Iterator[memoryview]:
    """float32 little-endian bytes of a quantized tensor streamed as raw chunks of any size, about
    ``VALUES_PER_CHUNK`` values (whole blocks) at a time. A trailing partial block (a cut-off tensor) raises
    ValueError: no statistics then."""
    layout = _LAYOUT[dtype]
    block_bytes = layout.block_bytes
    step = block_bytes * max(1, VALUES_PER_CHUNK // layout.block_elements)
    pending = b""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        if pending:
            take = min(block_bytes - len(pending), len(view))
            pending += bytes(view[:take])
            view = view[take:]
            if len(pending) < block_bytes:
                continue
            yield _as_bytes(dequantize(pending, dtype))
            pending = b""
        whole = len(view) - len(view) % block_bytes
        for start in range(0, whole, step):
            yield _as_bytes(dequantize(view[start:min(start + step, whole)], dtype))
        pending = bytes(view[whole:])
    if pending:
        raise ValueError(f"{dtype} tensor ends inside a block ({len(pending)} stray bytes)")
