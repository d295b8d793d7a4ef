"""The loader registry. Adding a format = one new module plus one line in ``_LOADERS``.

Order matters: the first loader whose ``sniff`` claims a file wins, so specific magic comes before fuzzy
matches (a raw pickle is the last resort). Loader modules are imported lazily, on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Iterator

from weightaudit.formats.base import DEFAULT_CHUNK, Loader, LoadOptions, Probe, iter_contiguous_chunks, read_probe
from weightaudit.model import TensorInfo

__all__ = ["Loader", "LoadOptions", "Probe", "all_loaders", "get_loader", "sniff", "read_probe", "iter_tensor_chunks"]

# Gates: a cheap test on the probe that is a NECESSARY condition of the loader's own ``sniff`` (its first checks,
# the same magic bytes), so a loader whose gate fails could not have claimed the file and its module (h5py, numpy,
# the pickle machine, the SavedModel reader) is not imported to be asked. The loader's ``sniff`` still decides;
# tests/formats/test_registry_gates.py checks each gate against its loader on every fixture.
ZIP_MAGIC = b"PK\x03\x04"
SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
GGUF_MAGIC = b"GGUF"
NPY_MAGIC = b"\x93NUMPY"
SAVEDMODEL_PREFIX = "saved_model."     # saved_model.pb / .pbtxt / .cpb (formats/savedmodel.py GRAPH_FILES, CHUNKED_GRAPH)
TABLE_MAGIC = 0xDB4775248B80FB57       # a TensorBundle index ends with it (formats/tensorbundle.py)
TAR_BLOCK = 512
# Bytes a pickle can start with (formats/raw_pickle.py _OPCODE_BYTES; a protocol 2+ pickle starts with 0x80)
PICKLE_FIRST_BYTES = frozenset(b"(.012FIJKLMNPQRSTUVabcd}eghijl]opqrst)uGBC") | frozenset(range(0x80, 0x99))
# First bytes of the compressed containers (formats/compressed.py CODECS): gzip, bz2, xz, lzma, joblib ZF, lz4;
# zlib is told by its two-byte header instead.
COMPRESSED_FIRST_BYTES = frozenset(b"\x1fB\xfd\x5dZ\x04")


def _a_file(probe: Probe) -> bool:
    return not probe.is_dir


def _zip_or_7z(probe: Probe) -> bool:
    return not probe.is_dir and probe.head.startswith((ZIP_MAGIC, SEVENZIP_MAGIC))


def _zip(probe: Probe) -> bool:
    return not probe.is_dir and probe.head.startswith(ZIP_MAGIC)


def _gguf(probe: Probe) -> bool:
    return not probe.is_dir and probe.head.startswith(GGUF_MAGIC)


def _npy(probe: Probe) -> bool:
    return not probe.is_dir and probe.head.startswith(NPY_MAGIC)


def _hdf5(probe: Probe) -> bool:
    """The HDF5 loader's own test (a superblock signature where libhdf5 looks), without importing h5py."""
    if probe.is_dir:
        return False
    from weightaudit.formats.hdf5_userblock import superblock_offset

    return superblock_offset(probe) is not None


def _savedmodel_folder(probe: Probe) -> bool:
    return probe.is_dir and any(name.startswith(SAVEDMODEL_PREFIX) for name in probe.entries)


def _bundle_index(probe: Probe) -> bool:
    return not probe.is_dir and len(probe.tail) == 8 and int.from_bytes(probe.tail, "little") == TABLE_MAGIC


def _legacy_torch(probe: Probe) -> bool:
    return not probe.is_dir and probe.head[:1] in (b"\x80", b"I", b"L")


def _tar(probe: Probe) -> bool:
    """A first block whose checksum field reads as tarfile reads it (the loader then checks the sum)."""
    if probe.is_dir or len(probe.head) < TAR_BLOCK:
        return False
    try:
        int(probe.head[148:156].split(b"\x00", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return True


def _compressed(probe: Probe) -> bool:
    head = probe.head
    if probe.is_dir or len(head) < 2:
        return False
    return head[0] in COMPRESSED_FIRST_BYTES or (head[0] & 0x0F == 8 and head[0] >> 4 <= 7)


def _pickle(probe: Probe) -> bool:
    return not probe.is_dir and probe.head[:1] != b"" and probe.head[0] in PICKLE_FIRST_BYTES


def _onnx(probe: Probe) -> bool:
    return not probe.is_dir and len(probe.head) >= 2 and probe.head[0] == 0x08


# (format name, module, attribute of the loader instance, gate) of each registered loader, in sniffing order.
_LOADERS: tuple[tuple[str, str, str, Callable[[Probe], bool]], ...] = (
    ("safetensors", "weightaudit.formats.safetensors", "LOADER", _a_file),
    ("gguf", "weightaudit.formats.gguf", "LOADER", _gguf),
    ("torchscript", "weightaudit.formats.torch_pickle", "TORCHSCRIPT", _zip_or_7z),
    ("pytorch-zip", "weightaudit.formats.torch_pickle", "PYTORCH_ZIP", _zip_or_7z),
    ("pickle-archive", "weightaudit.formats.torch_pickle", "PICKLE_ARCHIVE", _zip_or_7z),
    ("pytorch-legacy", "weightaudit.formats.torch_pickle", "LEGACY", _legacy_torch),
    ("numpy", "weightaudit.formats.numpy_npy", "NUMPY", _npy),
    ("keras-zip", "weightaudit.formats.keras_h5", "KERAS_ZIP_LOADER", _zip),
    ("hdf5", "weightaudit.formats.keras_h5", "HDF5_LOADER", _hdf5),
    ("tf-savedmodel", "weightaudit.formats.savedmodel", "SAVEDMODEL_LOADER", _savedmodel_folder),
    ("tf-checkpoint", "weightaudit.formats.savedmodel", "CHECKPOINT_LOADER", _bundle_index),
    ("pytorch-tar", "weightaudit.formats.tar_legacy", "LOADER", _tar),
    ("compressed-pickle", "weightaudit.formats.compressed", "LOADER", _compressed),
    ("onnx", "weightaudit.formats.onnx", "LOADER", _onnx),
    # The raw pickle loader must stay LAST: it claims any content that parses as a pickle.
    ("pickle", "weightaudit.formats.raw_pickle", "LOADER", _pickle),
)
# (module, attribute) of each registered loader instance, in sniffing order.
_LOADER_SPECS: tuple[tuple[str, str], ...] = tuple((mod, attr) for _, mod, attr, _ in _LOADERS)


def _instance(mod: str, attr: str) -> Loader:
    return getattr(importlib.import_module(mod), attr)


def all_loaders() -> list[Loader]:
    """Every registered loader, in sniffing order (imports every loader module)."""
    return [_instance(mod, attr) for mod, attr in _LOADER_SPECS]


_by_name: dict[str, Loader] = {}


def get_loader(name: str) -> Loader:
    """The loader registered under ``name`` (remembered: statistics ask once per tensor); only its own module is
    imported."""
    found = _by_name.get(name)
    if found is not None:
        return found
    for registered, mod, attr, _ in _LOADERS:
        if registered == name:
            return _by_name.setdefault(name, _instance(mod, attr))
    raise KeyError(name)


def sniff(probe: Probe) -> Loader | None:
    """The first registered loader that recognises this content, or None. A loader whose gate rules the probe
    out is skipped without importing its module: a safetensors file or a release folder imports the safetensors
    loader alone (not h5py, numpy or the pickle machine)."""
    for _, mod, attr, gate in _LOADERS:
        if gate(probe):
            loader = _instance(mod, attr)
            if loader.sniff(probe):
                return loader
    return None


def iter_tensor_chunks(path: Path, fmt: str, tensor: TensorInfo, chunk_bytes: int = DEFAULT_CHUNK) -> Iterator[memoryview]:
    """Stream a tensor's raw bytes: the loader's own ``iter_chunks`` if it has one, else its byte range."""
    loader = get_loader(fmt)
    custom = getattr(loader, "iter_chunks", None)
    if custom is not None:
        return custom(path, tensor, chunk_bytes)
    if tensor.data_offsets is None:
        raise ValueError(f"{tensor.file}: tensor {tensor.name!r} has no readable byte range")
    return iter_contiguous_chunks(path, tensor.data_offsets[0], tensor.data_offsets[1], chunk_bytes)
