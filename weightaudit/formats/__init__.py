"""The loader registry. Adding a format = one new module plus one line in ``_LOADER_SPECS``.

Order matters: the first loader whose ``sniff`` claims a file wins, so specific magic comes before fuzzy
matches (a raw pickle is the last resort). Loader modules are imported lazily, on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Iterator

from weightaudit.formats.base import DEFAULT_CHUNK, Loader, LoadOptions, Probe, iter_contiguous_chunks, read_probe
from weightaudit.model import TensorInfo

__all__ = ["Loader", "LoadOptions", "Probe", "all_loaders", "get_loader", "sniff", "read_probe", "iter_tensor_chunks"]

# (module, attribute) of each registered loader instance, in sniffing order.
_LOADER_SPECS: tuple[tuple[str, str], ...] = (
    ("weightaudit.formats.safetensors", "LOADER"),
    ("weightaudit.formats.gguf", "LOADER"),
    ("weightaudit.formats.torch_pickle", "TORCHSCRIPT"),
    ("weightaudit.formats.torch_pickle", "PYTORCH_ZIP"),
    ("weightaudit.formats.torch_pickle", "PICKLE_ARCHIVE"),
    ("weightaudit.formats.torch_pickle", "LEGACY"),
    ("weightaudit.formats.numpy_npy", "NUMPY"),
    ("weightaudit.formats.keras_h5", "KERAS_ZIP_LOADER"),
    ("weightaudit.formats.keras_h5", "HDF5_LOADER"),
    ("weightaudit.formats.savedmodel", "SAVEDMODEL_LOADER"),
    ("weightaudit.formats.savedmodel", "CHECKPOINT_LOADER"),
    ("weightaudit.formats.tar_legacy", "LOADER"),
    ("weightaudit.formats.compressed", "LOADER"),
    ("weightaudit.formats.onnx", "LOADER"),
    # The raw pickle loader must stay LAST: it claims any content that parses as a pickle.
    ("weightaudit.formats.raw_pickle", "LOADER"),
)

_cache: list[Loader] | None = None


def all_loaders() -> list[Loader]:
    global _cache
    if _cache is None:
        _cache = [getattr(importlib.import_module(mod), attr) for mod, attr in _LOADER_SPECS]
    return _cache


def _loaders_in_order() -> Iterator[Loader]:
    """The registered loaders in sniffing order, each module imported only when it is reached.

    So a safetensors file imports the safetensors loader alone (not h5py, numpy or the pickle machine): the
    first loader that claims a file stops the walk, exactly as a walk over ``all_loaders()`` would.
    """
    if _cache is not None:
        yield from _cache
        return
    for mod, attr in _LOADER_SPECS:
        yield getattr(importlib.import_module(mod), attr)


_by_name: dict[str, Loader] = {}


def get_loader(name: str) -> Loader:
    """The loader registered under ``name`` (remembered: statistics ask once per tensor)."""
    found = _by_name.get(name)
    if found is not None:
        return found
    for loader in _loaders_in_order():
        if loader.name == name:
            return _by_name.setdefault(name, loader)
    raise KeyError(name)


def sniff(probe: Probe) -> Loader | None:
    """The first registered loader that recognises this content, or None (later loaders not imported)."""
    for loader in _loaders_in_order():
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
