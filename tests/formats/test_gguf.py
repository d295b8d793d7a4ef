"""The GGUF header parser: inventory, shapes, quantized sizes, facts, bounds, and robustness to hostile bytes."""

from __future__ import annotations

import random
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from weightaudit.formats import read_probe, sniff
from weightaudit.formats.base import LoadOptions, tensor_view
from weightaudit.formats.gguf import GGML_TYPES, LOADER, parse
from weightaudit.model import FileStatus

from tests.conftest import FIXTURES

sys.path.insert(0, str(FIXTURES))
import make_gguf_fixtures as mk  # noqa: E402

GGUF = FIXTURES / "gguf"
VALID = GGUF / "valid-f32-f16.gguf"
QUANTIZED = GGUF / "quantized-q8_0-q4_0.gguf"


def _write(tmp_path: Path, data: bytes, name: str = "m.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_sniffed_by_magic_not_extension(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.read_bytes(), "weights.bin")
    assert sniff(read_probe(path)) is LOADER
    assert sniff(read_probe(_write(tmp_path, b"GGUX" + bytes(40), "x.gguf"))) is not LOADER


def test_valid_file_inventory_shapes_are_outermost_first_and_bytes_match() -> None:
    loaded = parse(VALID, VALID.name)
    assert loaded.findings == () and loaded.status is FileStatus.OK and loaded.verified
    by_name = {t.name: t for t in loaded.tensors}
    expected = {t.name: t for t in mk.valid_tensors()}
    assert list(by_name) == [t.name for t in mk.valid_tensors()]
    assert by_name["token_embd.weight"].shape == (16, 8)          # ne = [8, 16]
    assert by_name["blk.0.attn_q.weight"].dtype == "F32" and by_name["token_embd.weight"].dtype == "F16"
    for name, tensor in by_name.items():
        assert tuple(reversed(tensor.shape)) == expected[name].ne
        assert bytes(tensor_view(VALID, tensor)) == expected[name].data
        assert tensor.data_offsets[0] % 32 == 0
    embed = np.frombuffer(tensor_view(VALID, by_name["token_embd.weight"]), np.float16).reshape(16, 8)
    np.testing.assert_array_equal(embed, np.frombuffer(expected["token_embd.weight"].data, np.float16).reshape(16, 8))


def test_quantized_sizes_are_whole_blocks() -> None:
    loaded = parse(QUANTIZED, QUANTIZED.name)
    assert loaded.findings == () and loaded.verified
    by_name = {t.name: t for t in loaded.tensors}
    up, down = by_name["blk.0.ffn_up.weight"], by_name["blk.0.ffn_down.weight"]
    assert (up.dtype, up.shape, up.nbytes) == ("Q8_0", (4, 32), 4 * 34)     # 128 elements = 4 blocks of 34 bytes
    assert (down.dtype, down.shape, down.nbytes) == ("Q4_0", (2, 64), 4 * 18)
    assert up.parameter_count == 128 and down.parameter_count == 128
    quantized = {t.name: t.data for t in mk.quantized_tensors()}
    assert bytes(tensor_view(QUANTIZED, up)) == quantized[up.name]


def test_ggml_type_table_matches_ggml() -> None:
    sizes = {t.code: (t.block_elements, t.block_bytes) for t in GGML_TYPES.values()}
    assert sizes["Q4_0"] == (32, 18) and sizes["Q8_0"] == (32, 34) and sizes["Q4_K"] == (256, 144)
    assert sizes["Q6_K"] == (256, 210) and sizes["IQ2_XXS"] == (256, 66) and sizes["TQ2_0"] == (256, 66)
    assert sizes["BF16"] == (1, 2) and sizes["I64"] == (1, 8) and sizes["MXFP4"] == (32, 17)
    assert not set(GGML_TYPES) & {4, 5, 31, 32, 33, 36, 37, 38}       # removed types


def test_facts_and_metadata() -> None:
    facts = parse(VALID, VALID.name).facts
    assert facts["metadata"] == {"general.architecture": "llama", "general.name": "tiny-llama-gguf",
                                 "general.license": "apache-2.0", "general.file_type": "1",
                                 "general.quantization_version": "2"}
    assert (facts["architecture"], facts["model_name"], facts["license"]) == ("llama", "tiny-llama-gguf", "apache-2.0")
    assert facts["file_type"] == "MOSTLY_F16" and facts["context_length"] == 128
    assert facts["tokenizer_model"] == "gpt2" and facts["chat_template_keys"] == ["tokenizer.chat_template"]
    assert facts["gguf_version"] == 3 and facts["alignment"] == 32 and facts["data_start"] % 32 == 0
    assert parse(QUANTIZED, QUANTIZED.name).facts["file_type"] == "MOSTLY_Q8_0"


def test_committed_fixtures_match_the_generator() -> None:
    for name, data in mk.all_files().items():
        assert (GGUF / name).read_bytes() == data, f"regenerate fixtures: {name} is stale"


def test_version_2_reads_like_version_3(tmp_path: Path) -> None:
    path = _write(tmp_path, mk.gguf_file(mk.model_kvs(), mk.valid_tensors(), version=2))
    loaded = parse(path, "m.gguf")
    assert loaded.findings == () and [t.name for t in loaded.tensors] == [t.name for t in mk.valid_tensors()]


def test_custom_alignment_moves_the_data_section(tmp_path: Path) -> None:
    kvs = mk.model_kvs() + [("general.alignment", mk.U32, 64)]
    path = _write(tmp_path, mk.gguf_file(kvs, mk.valid_tensors(), alignment=64))
    loaded = parse(path, "m.gguf")
    assert loaded.findings == () and loaded.facts["alignment"] == 64
    assert all(t.data_offsets[0] % 64 == 0 for t in loaded.tensors)


def test_vocabulary_only_file_with_or_without_padding_has_no_findings(tmp_path: Path) -> None:
    padded = mk.gguf_file([("general.architecture", mk.STR, "llama")], [])
    header_end = len(padded.rstrip(b"\0"))      # the value "llama" ends the header; padding follows
    for data in (padded, padded[:header_end]):
        loaded = parse(_write(tmp_path, data), "m.gguf")
        assert loaded.findings == () and loaded.tensors == () and loaded.verified
    extra = parse(_write(tmp_path, padded + b"x"), "m.gguf")
    assert [f.rule_id for f in extra.findings] == ["WA189"]


def test_header_limit_is_enforced(tmp_path: Path) -> None:
    loaded = parse(VALID, VALID.name, LoadOptions(max_header_bytes=200))
    assert [f.rule_id for f in loaded.findings] == ["WA182"] and not loaded.verified


def test_huge_dimension_count_is_rejected_without_reading(tmp_path: Path) -> None:
    data = (b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + mk.gguf_string("w") + struct.pack("<I", 2**32 - 1)
            + bytes(64))
    loaded = parse(_write(tmp_path, data), "m.gguf")
    assert [f.rule_id for f in loaded.findings] == ["WA182"] and loaded.status is FileStatus.ERROR


def test_big_vocabulary_is_parsed_quickly(tmp_path: Path) -> None:
    tokens = [f"tok{i}" for i in range(150_000)]
    kvs = [("general.architecture", mk.STR, "llama"), ("tokenizer.ggml.tokens", mk.ARR, (mk.STR, tokens)),
           ("tokenizer.ggml.token_type", mk.ARR, (mk.I32, [1] * 150_000))]
    path = _write(tmp_path, mk.gguf_file(kvs, [mk._small()]))
    start = time.perf_counter()
    loaded = parse(path, "m.gguf")
    assert time.perf_counter() - start < 5.0
    assert loaded.findings == () and loaded.verified


def test_hostile_names_give_one_line_reasons(tmp_path: Path) -> None:
    data = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + mk.gguf_string(b"evil\nkey\xff") + struct.pack("<IQ", 13, 0))
    loaded = parse(_write(tmp_path, data), "m.gguf")
    assert loaded.reason and "\n" not in loaded.reason and loaded.findings[0].rule_id == "WA184"


def test_empty_and_tiny_files_are_errors(tmp_path: Path) -> None:
    for data in (b"", b"GGUF", b"GGUF\x03\x00\x00\x00" + bytes(15)):
        loaded = parse(_write(tmp_path, data), "m.gguf")
        assert loaded.status is FileStatus.ERROR and not loaded.verified
        assert [f.rule_id for f in loaded.findings] == ["WA180"]


def _mutations(data: bytes, count: int, seed: int = 1234):
    rng = random.Random(seed)
    for i in range(count):
        if i % 3 == 0:
            yield data[: rng.randrange(len(data))]
        else:
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                position = rng.randrange(len(buf))
                buf[position] = rng.randrange(256) if i % 3 == 1 else buf[position] ^ (1 << rng.randrange(8))
            yield bytes(buf)


def test_fuzzed_files_never_raise_or_hang(tmp_path: Path) -> None:
    data = VALID.read_bytes()
    for index, mutated in enumerate(_mutations(data, 50)):
        path = _write(tmp_path, mutated, f"fuzz{index}.gguf")
        start = time.perf_counter()
        loaded = parse(path, path.name)
        assert time.perf_counter() - start < 2.0, f"mutation {index} took too long"
        assert loaded.path == path.name
        if not loaded.verified:
            assert loaded.reason and "\n" not in loaded.reason
        for tensor in loaded.tensors:
            assert tensor.data_offsets[1] >= tensor.data_offsets[0]


def test_reference_reader_agrees() -> None:
    """gguf.GGUFReader (the test extra's gguf package, run in this interpreter) reads what we read."""
    pytest.importorskip("gguf")
    mk.cross_check(sys.executable)
