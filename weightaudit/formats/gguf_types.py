"""GGUF's type tables as ggml defines them (ggml/include/ggml.h, ggml/src/ggml.c type traits): metadata value
types and the ggml tensor types with their block layouts. Data only; ``gguf`` reads headers with them and
``gguf_quant`` dequantizes blocks with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# Metadata value types: type id -> (struct format, byte size) for scalars.
STRING, ARRAY, BOOL = 8, 9, 7
SCALAR_TYPES: Mapping[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4), 6: ("<f", 4),
    7: ("<B", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
VALUE_TYPE_NAMES: Mapping[int, str] = {
    0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "str", 9: "arr",
    10: "u64", 11: "i64", 12: "f64",
}
U32 = 4


@dataclass(frozen=True)
class GGMLType:
    """A ggml tensor type: our dtype code and its block layout (elements per block, bytes per block)."""

    code: str
    block_elements: int
    block_bytes: int


QK_K = 256
GGML_TYPES: Mapping[int, GGMLType] = {
    0: GGMLType("F32", 1, 4), 1: GGMLType("F16", 1, 2), 2: GGMLType("Q4_0", 32, 18), 3: GGMLType("Q4_1", 32, 20),
    6: GGMLType("Q5_0", 32, 22), 7: GGMLType("Q5_1", 32, 24), 8: GGMLType("Q8_0", 32, 34),
    9: GGMLType("Q8_1", 32, 40), 10: GGMLType("Q2_K", QK_K, 84), 11: GGMLType("Q3_K", QK_K, 110),
    12: GGMLType("Q4_K", QK_K, 144), 13: GGMLType("Q5_K", QK_K, 176), 14: GGMLType("Q6_K", QK_K, 210),
    15: GGMLType("Q8_K", QK_K, 292), 16: GGMLType("IQ2_XXS", QK_K, 66), 17: GGMLType("IQ2_XS", QK_K, 74),
    18: GGMLType("IQ3_XXS", QK_K, 98), 19: GGMLType("IQ1_S", QK_K, 50), 20: GGMLType("IQ4_NL", 32, 18),
    21: GGMLType("IQ3_S", QK_K, 110), 22: GGMLType("IQ2_S", QK_K, 82), 23: GGMLType("IQ4_XS", QK_K, 136),
    24: GGMLType("I8", 1, 1), 25: GGMLType("I16", 1, 2), 26: GGMLType("I32", 1, 4), 27: GGMLType("I64", 1, 8),
    28: GGMLType("F64", 1, 8), 29: GGMLType("IQ1_M", QK_K, 56), 30: GGMLType("BF16", 1, 2),
    34: GGMLType("TQ1_0", QK_K, 54), 35: GGMLType("TQ2_0", QK_K, 66), 39: GGMLType("MXFP4", 32, 17),
    40: GGMLType("NVFP4", 64, 36), 41: GGMLType("Q1_0", 128, 18),
}
REMOVED_GGML_TYPES: Mapping[int, str] = {
    4: "Q4_2", 5: "Q4_3", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8", 36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8",
    38: "IQ4_NL_8_8",
}
