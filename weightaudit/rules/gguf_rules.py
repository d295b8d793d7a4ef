"""WA180–WA189: integrity of GGUF files (llama.cpp / ggml), raised by the GGUF loader while it parses.

Chat templates stored in GGUF metadata are reported with the chat-template rules WA460–WA462
(``weightaudit.rules.template_rules``); no new code-execution rule is needed.
"""

from __future__ import annotations

from weightaudit.model import Severity
from weightaudit.rules import rule_family

_FORMAT_HELP = (
    "GGUF (ggml-org/ggml docs/gguf.md; reader: ggml/src/gguf.cpp) is little-endian: the magic 'GGUF', a u32 "
    "version (2 or 3), u64 tensor and metadata counts, the metadata key/value pairs (strings carry a u64 length), "
    "then one info record per tensor (name, u32 n_dims <= 4, u64 dims innermost-first, u32 ggml type, u64 offset "
    "into the data section), then padding to general.alignment (a power of two, default 32) and the tensor data. "
    "llama.cpp refuses a file that breaks any of these rules; other readers (the gguf Python package, ports in "
    "other languages) are more lenient, so a file that breaks them may be read differently by different tools."
)


_gguf_rule = rule_family(
    ("integrity", "gguf"),
    f"\n\n{_FORMAT_HELP}\n\nWhat to do: re-download the file, or re-convert it from trusted "
    "weights with llama.cpp's convert_hf_to_gguf.py / llama-quantize.")


HEADER_TRUNCATED = _gguf_rule(
    "WA180", "gguf-header-truncated", "The GGUF header ends before its last field.", Severity.HIGH,
    "The file ends inside the fixed-size header, a metadata entry or a tensor info record (or inside the "
    "padding before the data section): it is usually an interrupted download or a cut-off copy.")
BAD_VERSION = _gguf_rule(
    "WA181", "gguf-unsupported-version", "The GGUF version is not 2 or 3 (or the file is big-endian).",
    Severity.HIGH,
    "llama.cpp reads versions 2 and 3 only: version 0 is invalid, GGUFv1 (32-bit lengths) is no longer "
    "supported, later versions are unknown, and a version whose low 16 bits are zero (3 reads as 0x03000000) "
    "means the file was written big-endian. weightaudit, like llama.cpp, does not read such files.")
LENGTH_OUT_OF_BOUNDS = _gguf_rule(
    "WA182", "gguf-length-out-of-bounds", "A declared count or length does not fit in the file or a safety limit.",
    Severity.HIGH,
    "A tensor count, metadata count, string length, array length or dimension count is larger than what the "
    "rest of the file can hold, or than weightaudit's limits (1,000,000 tensors or keys, arrays nested 4 deep, "
    "a header of LoadOptions.max_header_bytes). A reader that allocates from such a length before checking it "
    "can be made to exhaust memory or overflow a size computation (llama.cpp's GGUF reader had several such "
    "bugs before it added these bounds).", cwe=770)
DUPLICATE_NAME = _gguf_rule(
    "WA183", "gguf-duplicate-name", "A metadata key or a tensor name appears twice.", Severity.HIGH,
    "llama.cpp refuses duplicate keys and duplicate tensor names, but the gguf Python package keeps the first "
    "key and renames later ones, and other readers keep the last. Two tools can therefore see different "
    "metadata (a different chat template) or different tensors in the same file: a parser differential.",
    cwe=436)
UNKNOWN_TYPE = _gguf_rule(
    "WA184", "gguf-unknown-type", "A metadata value or tensor has a type llama.cpp does not know.", Severity.HIGH,
    "Metadata value types are 0..12; llama.cpp also refuses arrays of arrays (the gguf Python package reads "
    "them). Tensor ggml types must be in ggml's table (F32, F16, Q4_0 ... Q1_0); removed types (Q4_2, Q4_3, "
    "Q4_0_4_4, IQ4_NL_4_4 ...) and unknown numbers are refused. A value of unknown type cannot be skipped, so "
    "the rest of the header cannot be read.")
BAD_ALIGNMENT = _gguf_rule(
    "WA185", "gguf-bad-alignment", "general.alignment is invalid or a tensor's offset is not aligned.",
    Severity.HIGH,
    "general.alignment must be a u32 power of two (both llama.cpp and the gguf Python package refuse anything "
    "else), and every tensor's offset must be a multiple of it so the data can be memory-mapped and read "
    "with aligned loads.")
TENSOR_OUT_OF_BOUNDS = _gguf_rule(
    "WA186", "gguf-tensor-out-of-bounds", "A tensor's data extends past the end of the file.", Severity.HIGH,
    "The tensor's offset plus its size (from its shape and ggml type) is beyond the end of the file: the file "
    "is truncated. llama.cpp stops with 'tensor data is not within the file bounds'.")
TENSOR_OVERLAP = _gguf_rule(
    "WA187", "gguf-tensor-overlap", "Two tensors' data ranges overlap.", Severity.HIGH,
    "Two tensors that share bytes are aliases: writing one changes the other, and readers that check the "
    "layout (llama.cpp) refuse the file while readers that do not (the gguf Python package) accept it.",
    cwe=436)
INVALID_TENSOR_INFO = _gguf_rule(
    "WA188", "gguf-invalid-tensor-info", "A tensor info record breaks ggml's limits, so its size is unknown.",
    Severity.HIGH,
    "ggml requires a tensor name shorter than 64 bytes, at most 4 dimensions, every dimension in 0..2^63-1 "
    "with a representable element count, and a row length (ne[0], the innermost dimension) that is a whole "
    "number of the type's blocks (e.g. 32 elements per 18-byte Q4_0 block); the byte size of the tensor is "
    "blocks x block bytes. A record that breaks these is refused by llama.cpp and its size cannot be checked.")
UNUSED_BYTES = _gguf_rule(
    "WA189", "gguf-unused-bytes", "Bytes in the data section belong to no tensor.", Severity.LOW,
    "llama.cpp expects the tensors in header order, each starting where the previous one ends (padded to the "
    "alignment): a gap or a different order is refused by llama.cpp (reported at medium), though the gguf "
    "Python package accepts it. Bytes after the last tensor are ignored by every reader (reported at low); "
    "unused bytes can carry data no tool looks at.", cwe=None)
