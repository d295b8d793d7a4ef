"""The ``numpy`` loader: ``.npy`` arrays, alone or as members of a zip (``.npz``, pickle archives).

Numeric arrays become tensors (zero-copy byte ranges when stored); object arrays (every spelling numpy accepts,
see :mod:`~weightaudit.formats.numpy_header`) carry a pickle, which is scanned like any other. A header numpy would
refuse is refused likewise (WA157, not verified). Facts: ``npy_unsupported_dtype`` when the dtype is neither.
"""

from __future__ import annotations

from pathlib import Path

from weightaudit.formats.base import LoadOptions, Probe
from weightaudit.formats.numpy_header import NPY_MAGIC, NpyRefused, describe_dtype, read_npy_header
from weightaudit.formats.pickle_scan import FileScan, PickleFamilyLoader, limits_for, report_trailing_data, safe_load
from weightaudit.formats.pickle_vm import scan_stream
from weightaudit.formats.torch_tensors import TENSOR_LAYOUTS, Storage, TensorLayout, contiguous_strides, itemsize
from weightaudit.formats.zipread import ZipEntry
from weightaudit.model import LoadedFile, TensorInfo, element_count
from weightaudit.rules import pickle_rules as R
from weightaudit.rules.container_rules import LOADER_REFUSES

__all__ = ["NPY_MAGIC", "scan_npy", "NumpyLoader", "NUMPY"]


def scan_npy(scan: FileScan, data: memoryview, where: str, options: LoadOptions, absolute: int | None,
             compressed: tuple[str, ZipEntry] | None = None, path_key: str | None = None) -> None:
    """Read one ``.npy`` into ``scan``. ``absolute``: its file offset when stored uncompressed; ``compressed``:
    (file key, zip member) when deflated, so its bytes can be streamed later by inflating the member."""
    try:
        header = read_npy_header(data)
    except NpyRefused as exc:
        scan.findings.append(LOADER_REFUSES.finding(scan.rel, f"numpy.load refuses {where or 'the array'}: {exc}",
                                                    where=where or None))
        raise
    body, shape, info = header.data_start, header.shape, describe_dtype(header.descr)
    if info.dtype is not None:
        dtype = info.dtype
        nbytes = element_count(shape) * itemsize(dtype)
        if body + nbytes > len(data):
            raise NpyRefused(f"{where or 'array'}: array data is truncated")
        name = where.rsplit("/", 1)[-1].removesuffix(".npy") if where else "array"
        offsets = (absolute + body, absolute + body + nbytes) if absolute is not None else None
        strides = _fortran_strides(shape) if header.fortran_order else None
        scan.tensors.append(TensorInfo(name=name, dtype=dtype, shape=shape, file=scan.rel, data_offsets=offsets,
                                       strides=strides, byte_order=info.byte_order))
        if offsets is None and compressed is not None:
            _register_compressed(compressed, name, dtype, shape, body, nbytes)
        elif offsets is None:
            scan.verified = False
        elif path_key is not None:
            TENSOR_LAYOUTS[(path_key, name)] = None      # contiguous: iter_chunks reads the range, no reload
        return
    if info.has_object:
        scan.findings.append(R.OBJECT_ARRAY.finding(scan.rel, f"{where or 'array'} has dtype object "
                                                              f"({render_descr(header.descr)})", where=where or None))
        _scan_body_pickle(scan, data, body, where, options)
        return
    scan.verified = False
    scan.facts["npy_unsupported_dtype"] = render_descr(header.descr)
    if _looks_like_pickle(bytes(data[body:body + 2])):     # not an object dtype we know, but a pickle follows
        _scan_body_pickle(scan, data, body, where, options)


def _fortran_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a column-major (fortran_order) array: the first axis varies fastest."""
    strides, step = [], 1
    for dim in shape:
        strides.append(step)
        step *= max(dim, 1)
    return tuple(strides)


def _looks_like_pickle(head: bytes) -> bool:
    return len(head) == 2 and head[0] == 0x80 and head[1] <= 5


def render_descr(descr: object) -> str:
    text = repr(descr)
    return text if len(text) <= 80 else text[:77] + "..."


def _scan_body_pickle(scan: FileScan, data: memoryview, body: int, where: str, options: LoadOptions) -> None:
    results, stopped = scan_stream(data, body, limits=limits_for(options))
    for result in results:
        scan.add_pickle(f"{where} pickle" if where else "pickle", 0, result, data)
    report_trailing_data(scan, results, stopped, len(data), where)


def _register_compressed(compressed: tuple[str, ZipEntry], name: str, dtype: str, shape: tuple[int, ...],
                         body: int, nbytes: int) -> None:
    """Let iter_chunks stream a deflated member's array by inflating it (flat memory)."""
    path_key, entry = compressed
    size = itemsize(dtype)
    storage = Storage(key=entry.name, dtype=dtype, numel=element_count(shape), location="cpu", data_offset=None,
                      available=entry.size, record=entry.name, entry=entry)
    strides = tuple(s * size for s in contiguous_strides(shape))
    TENSOR_LAYOUTS[(path_key, name)] = TensorLayout(storage, body, shape, strides, size, nbytes)


def _load_npy(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    scan_npy(scan, view, "", options, 0, path_key=path_key)


class NumpyLoader(PickleFamilyLoader):
    """``.npy`` files, claimed by their magic."""

    name = "numpy"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and probe.head.startswith(NPY_MAGIC)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return safe_load(self.name, path, rel, options, _load_npy)


load_npy_body = _load_npy
NUMPY = NumpyLoader()
