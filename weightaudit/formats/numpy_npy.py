"""The ``numpy`` loader: ``.npy`` arrays, alone or as members of a zip (``.npz``, pickle archives).

Numeric arrays become tensors (zero-copy byte ranges when little-endian and stored); object arrays carry a pickle,
which is scanned like any other. Facts: ``npy_unsupported_dtype`` when the dtype is neither.
"""

from __future__ import annotations

import ast
import struct
from pathlib import Path

from weightaudit.formats.base import LoadOptions, Probe
from weightaudit.formats.mapped_file import FileProblem
from weightaudit.formats.pickle_scan import FileScan, PickleFamilyLoader, limits_for, report_trailing_data, safe_load
from weightaudit.formats.pickle_vm import scan_stream
from weightaudit.formats.torch_tensors import TENSOR_LAYOUTS, Storage, TensorLayout, contiguous_strides, itemsize
from weightaudit.formats.zipread import ZipEntry
from weightaudit.model import LoadedFile, TensorInfo, element_count
from weightaudit.rules import pickle_rules as R

__all__ = ["NPY_MAGIC", "scan_npy", "NumpyLoader", "NUMPY"]

NPY_MAGIC = b"\x93NUMPY"
_NPY_DTYPES = {"f2": "F16", "f4": "F32", "f8": "F64", "i1": "I8", "i2": "I16", "i4": "I32", "i8": "I64",
               "u1": "U8", "u2": "U16", "u4": "U32", "u8": "U64", "b1": "BOOL", "c8": "C64", "c16": "C128"}


def _npy_header(data: memoryview) -> tuple[dict, int]:
    if bytes(data[:6]) != NPY_MAGIC or len(data) < 10:
        raise FileProblem("not a .npy array")
    major = data[6]
    if major == 1:
        length, start = struct.unpack_from("<H", data, 8)[0], 10
    elif major in (2, 3):
        length, start = struct.unpack_from("<I", data, 8)[0], 12
    else:
        raise FileProblem(f"unsupported .npy version {major}")
    if length > 1 << 20 or start + length > len(data):
        raise FileProblem(".npy header is truncated or too large")
    text = bytes(data[start:start + length]).decode("utf-8" if major == 3 else "latin-1")
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise FileProblem(".npy header is not a Python literal") from None
    if not isinstance(header, dict) or not {"descr", "shape"} <= header.keys():
        raise FileProblem(".npy header lacks descr/shape")
    return header, start + length


def scan_npy(scan: FileScan, data: memoryview, where: str, options: LoadOptions, absolute: int | None,
             compressed: tuple[str, ZipEntry] | None = None) -> None:
    """Read one ``.npy`` into ``scan``. ``absolute``: its file offset when stored uncompressed; ``compressed``:
    (file key, zip member) when deflated, so its bytes can be streamed later by inflating the member."""
    header, body = _npy_header(data)
    descr, shape = header["descr"], header["shape"]
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise FileProblem(f"{where}: bad .npy shape")
    if isinstance(descr, str) and descr[1:] in _NPY_DTYPES:
        dtype = _NPY_DTYPES[descr[1:]]
        nbytes = element_count(shape) * itemsize(dtype)
        if body + nbytes > len(data):
            raise FileProblem(f"{where}: array data is truncated")
        name = where.rsplit("/", 1)[-1].removesuffix(".npy") if where else "array"
        offsets = (absolute + body, absolute + body + nbytes) if absolute is not None else None
        scan.tensors.append(TensorInfo(name=name, dtype=dtype, shape=shape, file=scan.rel, data_offsets=offsets,
                                       byte_order="big" if descr[0] == ">" else "little"))
        if offsets is None and compressed is not None:
            _register_compressed(compressed, name, dtype, shape, body, nbytes)
        elif offsets is None:
            scan.verified = False
        return
    if "O" in str(descr):
        scan.findings.append(R.OBJECT_ARRAY.finding(scan.rel, f"{where or 'array'} has dtype object", where=where or None))
        results, stopped = scan_stream(data, body, limits=limits_for(options))
        for result in results:
            scan.add_pickle(f"{where} pickle" if where else "pickle", 0, result, data)
        report_trailing_data(scan, results, stopped, len(data), where)
        return
    scan.verified = False
    scan.facts["npy_unsupported_dtype"] = str(descr)


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
    scan_npy(scan, view, "", options, 0)


class NumpyLoader(PickleFamilyLoader):
    """``.npy`` files, claimed by their magic."""

    name = "numpy"

    def sniff(self, probe: Probe) -> bool:
        return not probe.is_dir and probe.head.startswith(NPY_MAGIC)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return safe_load(self.name, path, rel, options, _load_npy)


NUMPY = NumpyLoader()
