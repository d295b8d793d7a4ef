"""The pure-Python TensorBundle reader against TensorFlow's own listing (fixtures/keras_tf/ground_truth.json)."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from weightaudit.formats import tensorbundle as tb

sys.path.insert(0, str(FIXTURES))
from savedmodel_proto import varint  # noqa: E402 - the protobuf varint writer the SavedModel tests use

KERAS_TF = FIXTURES / "keras_tf"
TRUTH = json.loads((KERAS_TF / "ground_truth.json").read_text())
TF_DTYPES = {"float32": "F32", "bfloat16": "BF16", "int64": "I64", "string": "STRING"}
PREFIXES = {
    "sm_module": KERAS_TF / "sm_module/variables/variables",
    "sm_keras": KERAS_TF / "sm_keras/variables/variables",
    "sm_readfile": KERAS_TF / "sm_readfile/variables/variables",
    "ckpt": KERAS_TF / "ckpt/ckpt-1",
}


# ---------------------------------------------------------------- a tiny SSTable writer for crafted indexes

def field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = varint(number << 3 | wire)
    if wire == 0:
        return key + varint(int(payload))
    if wire == 5:
        return key + struct.pack("<I", int(payload))
    return key + varint(len(payload)) + payload  # type: ignore[arg-type]


def entry_proto(dtype: int, shape: tuple[int, ...], offset: int, size: int, shard: int = 0, crc: int | None = None) -> bytes:
    dims = b"".join(field(2, 2, field(1, 0, d)) for d in shape)
    body = field(1, 0, dtype) + field(2, 2, dims) + (field(3, 0, shard) if shard else b"")
    body += field(4, 0, offset) + field(5, 0, size)
    return body + (field(6, 5, crc) if crc is not None else b"")


def header_proto(num_shards: int = 1, endianness: int = 0) -> bytes:
    return field(1, 0, num_shards) + (field(2, 0, endianness) if endianness else b"") + field(3, 2, field(1, 0, 1))


def _block(items: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in items)
    return body + struct.pack("<II", 0, 1)


def write_index(path: Path, items: list[tuple[bytes, bytes]], compression: int = 0) -> None:
    """Write a one-data-block SSTable with valid block CRCs (keys must be sorted)."""
    out = bytearray()

    def add(contents: bytes) -> tuple[int, int]:
        offset = len(out)
        out.extend(contents + bytes([compression]))
        out.extend(struct.pack("<I", tb.mask_crc(tb.crc32c(contents + bytes([compression])))))
        return offset, len(contents)

    data_offset, data_size = add(_block(items))
    meta_offset, meta_size = add(_block([]))
    index_offset, index_size = add(_block([(items[-1][0] + b"\xff", varint(data_offset) + varint(data_size))]))
    handles = varint(meta_offset) + varint(meta_size) + varint(index_offset) + varint(index_size)
    out.extend(handles.ljust(40, b"\x00") + struct.pack("<Q", tb.TABLE_MAGIC))
    path.write_bytes(bytes(out))


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("name", sorted(PREFIXES))
def test_entries_match_tensorflow_listing(name: str) -> None:
    bundle = tb.read_bundle(PREFIXES[name].with_name(PREFIXES[name].name + ".index"))
    ours = {e.key: (list(e.shape), e.dtype) for e in bundle.entries}
    theirs = {v["name"]: (v["shape"], TF_DTYPES[v["dtype"]]) for v in TRUTH["tf"][name]["variables"]}
    assert ours == theirs
    assert bundle.header.num_shards == 1 and bundle.header.endianness == "little" and bundle.header.producer == 1


@pytest.mark.parametrize("name", sorted(PREFIXES))
def test_every_stored_crc_matches(name: str) -> None:
    prefix = PREFIXES[name]
    bundle = tb.read_bundle(prefix.with_name(prefix.name + ".index"))
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    assert bundle.entries and all(tb.entry_crc(data, e) == e.crc32c for e in bundle.entries)


def test_crc32c_check_value_and_mask() -> None:
    assert tb.crc32c(b"123456789") == 0xE3069283          # CRC-32C catalogue check value
    assert tb._crc32c_python(0, b"123456789") == 0xE3069283
    split = tb.crc32c_extend(tb.crc32c_extend(0, b"1234"), b"56789")
    assert split == 0xE3069283
    assert tb.mask_crc(0) == tb.CRC_MASK_DELTA


def test_varint_and_fields() -> None:
    assert tb.read_varint(varint(300), 0) == (300, 2)
    assert tb.as_int64(tb.read_varint(varint(-5), 0)[0]) == -5
    assert list(tb.iter_fields(field(1, 0, 7) + field(2, 2, b"ab"))) == [(1, 0, 7), (2, 2, b"ab")]
    with pytest.raises(tb.BundleError):
        list(tb.iter_fields(bytes([0x0B])))                  # wire type 3 (group)
    with pytest.raises(tb.BundleError):
        list(tb.iter_fields(field(2, 2, b"abc")[:-1]))       # truncated LEN


def test_dtype_mapping() -> None:
    assert tb.dtype_code(1) == "F32" and tb.dtype_code(101) == "F32"   # _REF variant
    assert tb.dtype_code(14) == "BF16" and tb.dtype_code(19) == "F16" and tb.dtype_code(25) == "F8_E4M3"
    assert tb.dtype_code(20) == "TF_RESOURCE"


def test_has_table_magic() -> None:
    index = PREFIXES["ckpt"].with_name("ckpt-1.index")
    assert tb.has_table_magic(index.read_bytes()[-8:])
    assert not tb.has_table_magic(b"\x00" * 8)


def test_crafted_index_round_trips(tmp_path: Path) -> None:
    index = tmp_path / "x.index"
    write_index(index, [(b"", header_proto()), (b"a", entry_proto(1, (2, 3), 0, 24)), (b"b", entry_proto(9, (), 24, 8))])
    bundle = tb.read_bundle(index)
    assert [(e.key, e.dtype, e.shape, e.offset, e.size) for e in bundle.entries] == [
        ("a", "F32", (2, 3), 0, 24), ("b", "I64", (), 24, 8)]


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "empty"])
def test_damaged_index_raises_bundle_error(tmp_path: Path, damage: str) -> None:
    index = tmp_path / "ckpt-1.index"
    shutil.copy(PREFIXES["ckpt"].with_name("ckpt-1.index"), index)
    raw = bytearray(index.read_bytes())
    if damage == "flip":
        raw[5] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 2] + raw[-48:]
    elif damage == "magic":
        raw[-1] ^= 0x01
    else:
        raw = bytearray()
    index.write_bytes(bytes(raw))
    with pytest.raises(tb.BundleError):
        tb.read_bundle(index)


def test_snappy_block_is_reported_unsupported(tmp_path: Path) -> None:
    index = tmp_path / "s.index"
    write_index(index, [(b"", header_proto()), (b"a", entry_proto(1, (1,), 0, 4))], compression=1)
    with pytest.raises(tb.BundleError) as info:
        tb.read_bundle(index)
    assert info.value.kind == "unsupported"


def test_missing_header_is_an_error(tmp_path: Path) -> None:
    index = tmp_path / "h.index"
    write_index(index, [(b"a", entry_proto(1, (1,), 0, 4))])
    with pytest.raises(tb.BundleError, match="BundleHeaderProto"):
        tb.read_bundle(index)


def test_crc_backends_agree_on_test_data() -> None:
    """google-crc32c's C extension (the dependency) and the pure-Python fallback give identical CRCs."""
    assert tb.CRC32C_BACKEND == "google_crc32c"
    samples = [b"", b"a", b"123456789", bytes(range(256)) * 37, b"\xff" * 4097]
    samples += [(PREFIXES[name].with_name(PREFIXES[name].name + ".data-00000-of-00001")).read_bytes()
                for name in sorted(PREFIXES)]
    for data in samples:
        fast = tb.crc32c_extend(0, data)
        assert fast == tb._crc32c_python(0, data)
        assert tb.crc32c_extend(tb.crc32c_extend(0, memoryview(data)[:7]), memoryview(data)[7:]) == fast
        assert tb.mask_crc(fast) == tb.mask_crc(tb._crc32c_python(0, data))


def test_pure_python_fallback_when_the_extension_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_crc_packages(name, *args, **kwargs):
        if name in ("google_crc32c", "crc32c"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_crc_packages)
    extend, backend = tb._fast_crc32c()
    assert backend == "python" and extend(0, b"123456789") == 0xE3069283


def test_sixty_megabyte_block_is_checked_fast_and_a_huge_record_refused(tmp_path: Path) -> None:
    """Issue 10: an SSTable with a 60 MB block (CRC32C in C, not pure Python) whose one record is 60 MB of
    protobuf fields (30 M of them): refused by size before decoding, not walked field by field."""
    index = tmp_path / "x.index"
    huge = entry_proto(1, (2,), 0, 8) + b"\x50\x00" * 30_000_000
    write_index(index, [(b"", header_proto()), (b"w", huge)])
    with pytest.raises(tb.BundleError) as caught:
        tb.read_bundle(index)
    assert caught.value.kind == "limit" and "byte record" in str(caught.value)
    assert "limits.bundle_entry_bytes = 1,048,576" in str(caught.value)


def _raw_index(path: Path, data_blocks: list[bytes], handles: list[tuple[int, int]]) -> None:
    """An SSTable whose index block lists ``handles`` (offset, size) into the concatenated ``data_blocks``."""
    out = bytearray()

    def add(contents: bytes) -> tuple[int, int]:
        offset = len(out)
        out.extend(contents + b"\x00" + struct.pack("<I", tb.mask_crc(tb.crc32c(contents + b"\x00"))))
        return offset, len(contents)

    for block in data_blocks:
        add(block)
    meta = add(_block([]))
    index_items = [(b"%05d" % n, varint(o) + varint(sz)) for n, (o, sz) in enumerate(handles)]
    index = add(_block(index_items))
    handles_bytes = varint(meta[0]) + varint(meta[1]) + varint(index[0]) + varint(index[1])
    out.extend(handles_bytes.ljust(40, b"\x00") + struct.pack("<Q", tb.TABLE_MAGIC))
    path.write_bytes(bytes(out))


def test_index_handles_reusing_one_block_are_refused(tmp_path: Path) -> None:
    block = _block([(b"", header_proto())])
    index = tmp_path / "x.index"
    _raw_index(index, [block], [(0, len(block))] * 1000)       # 1000 handles to the same block
    with pytest.raises(tb.BundleError, match="overlaps"):
        list(tb.iter_table(index))


def test_shared_prefix_keys_are_capped(tmp_path: Path) -> None:
    long_key = b"k" * 60_000
    first = varint(0) + varint(len(long_key)) + varint(0) + long_key
    repeat = (varint(len(long_key)) + varint(0) + varint(0)) * 200_000    # 200,000 empty entries, same long key
    block = first + repeat + struct.pack("<II", 0, 1)
    index = tmp_path / "x.index"
    _raw_index(index, [block], [(0, len(block))])
    with pytest.raises(tb.BundleLimit, match="limits.bundle_keys_total_bytes = 1,073,741,824"):
        list(tb.iter_table(index))


# ---------------------------------------------------------------- issue 10: caps are the user's named limits

@pytest.mark.parametrize("limit, value", [
    ("bundle_entry_bytes", 8),           # the entry record below is 14 bytes
    ("bundle_key_bytes", 8),             # its key is 12 bytes
    ("bundle_keys_total_bytes", 12),     # the two keys together are 12 bytes
    ("bundle_block_bytes", 32),          # the data block is about 40 bytes
    ("bundle_index_bytes", 64),          # the whole index is over 100 bytes
])
def test_a_record_cap_is_a_named_limit(tmp_path: Path, limit: str, value: int) -> None:
    from dataclasses import replace

    from weightaudit.limits import DEFAULT_LIMITS

    index = tmp_path / "x.index"
    write_index(index, [(b"", header_proto()), (b"layer/kernel", entry_proto(1, (2, 3), 0, 24))])
    with pytest.raises(tb.BundleLimit) as caught:
        tb.read_bundle(index, replace(DEFAULT_LIMITS, **{limit: value}))
    assert caught.value.limit == limit and f"limits.{limit} = {value:,}" in str(caught.value)
    assert [e.key for e in tb.read_bundle(index).entries] == ["layer/kernel"]      # defaults: read
