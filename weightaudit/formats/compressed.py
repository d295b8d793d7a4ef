"""The ``compressed-pickle`` loader: gzip, bz2, xz, lzma-alone, zlib and joblib's old ``ZF`` files around a pickle,
a joblib stream, a torch archive, a tar or an ``.npy``.

Recognised by magic (:data:`CODECS`), never by name: ``model.pkl.gz``, ``.pt.bz2`` and every compressed form
``joblib.dump(compress=...)`` writes (zlib, gzip, bz2, lzma, xz; lz4 is recognised but cannot be inflated without
the lz4 package: WA158, not verified). The stream is inflated step by step with the stdlib decompressor objects
(``max_length`` bounds every step) into a temporary file, never past ``limits.bytes_inflated`` (the user's
policy; default 4 GiB): hitting the bound is WA156 and the file is not verified, and the
inflated prefix is still scanned. The inflated bytes are then read by the body of the loader their magic names
(:func:`inner_body`). Tensors keep inflated-stream offsets; :meth:`CompressedLoader.iter_chunks` streams them
from a per-file spool (:class:`_Spool`): the stream is inflated once per process into an anonymous temporary file,
only as far as the tensors asked for reach, and every tensor is read from there (re-inflating from the start for
each tensor was quadratic in the tensor count).
"""

from __future__ import annotations

import bz2
import lzma
import mmap
import os
import tempfile
import threading
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from weightaudit.formats.base import DEFAULT_CHUNK, LoadOptions, Probe
from weightaudit.formats.container_bodies import body_for
from weightaudit.formats.mapped_file import FileProblem
from weightaudit.formats.pickle_scan import FileScan, resolved_path, safe_load
from weightaudit.limits import describe
from weightaudit.model import LoadedFile, TensorInfo
from weightaudit.rules.container_rules import COMPRESSED_PICKLE, INFLATION_LIMIT, UNSCANNED_ARCHIVE

__all__ = ["CODECS", "CompressedLoader", "LOADER", "codec_of", "inflate_to", "load_body"]

MAX_NESTING = 2                   # gzip inside gzip...
STEP_OUTPUT = 1024 * 1024         # max_length of every decompress step
STEP_INPUT = 256 * 1024
ZF_HEADER = 2 + len(hex(2 ** 64))  # joblib < 0.10: b"ZF" + hex length padded to 19 characters
LZMA_MEMLIMIT = 256 * 1024 * 1024   # a header may declare a 4 GiB dictionary: refuse instead of allocating it


@dataclass(frozen=True)
class Codec:
    """One compression format: how to recognise it and a fresh decompressor (None: cannot be inflated)."""

    name: str
    matches: Callable[[bytes], bool]
    new: Callable[[], Any] | None
    skip: int = 0                 # header bytes before the compressed stream
    multi_stream: bool = False    # concatenated streams are one file (gzip, bz2, xz)


def _zlib_header(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0


def _zf_header(head: bytes) -> bool:
    if not head.startswith(b"ZF") or len(head) < ZF_HEADER:
        return False
    try:
        int(head[2:ZF_HEADER].decode("ascii").strip(), 16)
    except (UnicodeDecodeError, ValueError):
        return False
    return True


CODECS: tuple[Codec, ...] = (
    Codec("gzip", lambda h: h.startswith(b"\x1f\x8b\x08"), lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
          multi_stream=True),
    Codec("bz2", lambda h: h[:3] == b"BZh" and h[3:4].isdigit(), bz2.BZ2Decompressor, multi_stream=True),
    Codec("xz", lambda h: h.startswith(b"\xfd7zXZ\x00"),
          lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT), multi_stream=True),
    Codec("lzma", lambda h: h[:1] == b"\x5d" and len(h) >= 13,
          lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT)),
    Codec("joblib-zf", _zf_header, lambda: zlib.decompressobj(zlib.MAX_WBITS), skip=ZF_HEADER),
    Codec("zlib", _zlib_header, lambda: zlib.decompressobj(zlib.MAX_WBITS)),
    Codec("lz4", lambda h: h.startswith(b"\x04\x22\x4d\x18"), None),
)
_WEAK = frozenset({"lzma", "zlib", "joblib-zf"})        # short magic: claimed only when the content is ours


def codec_of(head: bytes) -> Codec | None:
    return next((c for c in CODECS if c.matches(head)), None)


# --------------------------------------------------------------------------------------------------------------
# Bounded, incremental inflation
# --------------------------------------------------------------------------------------------------------------


def _iter_inflated(read: Callable[[int], bytes], codec: Codec) -> Iterator[bytes]:
    """Inflated bytes, step by step (each step at most STEP_OUTPUT, each read at most STEP_INPUT: memory stays
    flat whatever the ratio). Raises FileProblem on corrupt or truncated data."""
    if codec.new is None:
        raise FileProblem(f"{codec.name} data cannot be inflated here")
    pending = b""
    if codec.skip:
        read(codec.skip)
        extra = read(1)                        # joblib skips one space after the ZF length, if there is one
        pending = b"" if extra == b" " else extra
    decoder = codec.new()
    while True:
        exhausted = False
        if not pending and _wants_input(decoder):
            pending = read(STEP_INPUT)
            exhausted = not pending
        out, pending = _step(decoder, pending, codec)
        if exhausted and not out and not decoder.eof:
            raise FileProblem(f"{codec.name} stream ends early (truncated file)")
        if out:
            yield out
        if not decoder.eof:
            continue
        if not codec.multi_stream:
            return
        pending = pending or read(STEP_INPUT)
        if not pending.strip(b"\x00"):
            return                             # end of file, or the zero padding tape archivers add
        decoder = codec.new()                  # the next concatenated stream


def _wants_input(decoder: Any) -> bool:
    if isinstance(decoder, (bz2.BZ2Decompressor, lzma.LZMADecompressor)):
        return decoder.needs_input
    return True                                 # zlib: its unconsumed input is handed back in `pending`


def _step(decoder: Any, pending: bytes, codec: Codec) -> tuple[bytes, bytes]:
    """One bounded decompress call: (output, input still to feed)."""
    try:
        out = decoder.decompress(pending, STEP_OUTPUT)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise FileProblem(f"corrupt {codec.name} data ({exc})") from None
    if isinstance(decoder, (bz2.BZ2Decompressor, lzma.LZMADecompressor)):
        return out, decoder.unused_data if decoder.eof else b""
    return out, decoder.unused_data if decoder.eof else decoder.unconsumed_tail


def inflate_to(read: Callable[[int], bytes], codec: Codec, sink: Any, limit: int) -> tuple[int, bool, str | None]:
    """Inflate what ``read`` returns into ``sink`` up to ``limit`` bytes: (bytes written, whether the limit was
    hit, why inflation stopped early). What was inflated before corrupt data stays in ``sink``: a streaming
    reader (``pickle.load(gzip.open(...))``) runs it before it reaches the corruption."""
    written = 0
    try:
        for out in _iter_inflated(read, codec):
            if written + len(out) > limit:
                sink.write(out[:limit - written])
                return limit, True, None
            sink.write(out)
            written += len(out)
    except FileProblem as exc:
        return written, False, str(exc)
    return written, False, None


def view_reader(view: memoryview) -> Callable[[int], bytes]:
    """A ``read(n)`` over a buffer (copies at most ``n`` bytes per call)."""
    position = [0]

    def read(n: int) -> bytes:
        out = bytes(view[position[0]:position[0] + n])
        position[0] += len(out)
        return out

    return read


# --------------------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------------------

# (resolved file path, tensor name) -> (codec name, begin, end) in inflated-stream coordinates.
INFLATED_RANGES: dict[tuple[str, str], tuple[str, int, int]] = {}


def inner_body(head: bytes) -> Callable[..., None] | None:
    """The body of the loader that reads inflated content starting with ``head`` (None: not a format of ours)."""
    if codec_of(head) is not None:
        return _nested
    return body_for(head)


def _nested(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    """A compressed stream inside a compressed stream (gzip of gzip ...), at most MAX_NESTING deep."""
    if path_key.count("#inflated") >= MAX_NESTING:
        raise FileProblem(f"compressed streams nested more than {MAX_NESTING} deep")
    load_body(scan, view, options, path_key)


def load_body(scan: FileScan, view: memoryview, options: LoadOptions, path_key: str) -> None:
    """Inflate ``view`` (bounded) into a temporary file and read what it holds with the matching body."""
    codec = codec_of(bytes(view[:64]))
    if codec is None:
        raise FileProblem("not a compressed stream")
    scan.facts["compression"] = codec.name
    if codec.new is None:
        scan.findings.append(UNSCANNED_ARCHIVE.finding(scan.rel, f"{codec.name} compressed data cannot be inflated "
                                                                 "without the lz4 package; the contents are unchecked"))
        raise FileProblem(f"{codec.name} compression is not supported: contents not verified")
    limit = options.limits.bytes_inflated
    with tempfile.TemporaryFile(prefix="weightaudit-") as spool:
        written, hit, broken = inflate_to(view_reader(view), codec, spool, limit)
        spool.flush()
        if hit:
            scan.findings.append(INFLATION_LIMIT.finding(scan.rel, f"{codec.name} stream inflates past "
                                                                   f"{describe('bytes_inflated', options.limits)}; "
                                                                   "the rest was not checked"))
            scan.verified = False
        if written == 0:
            raise FileProblem(broken or f"{codec.name} stream inflates to nothing")
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            inner = memoryview(mapped)
            try:
                _read_inner(scan, inner, options, path_key, codec)
            finally:
                inner.release()
    scan.facts["inflated_bytes"] = written
    if broken:
        scan.error = f"{broken} after {written} bytes (the bytes before it were scanned)"


def _read_inner(scan: FileScan, inner: memoryview, options: LoadOptions, path_key: str, codec: Codec) -> None:
    body = inner_body(bytes(inner[:4096]))
    if body is None:
        raise FileProblem(f"{codec.name} stream holds no format weightaudit reads")
    scan.findings.append(COMPRESSED_PICKLE.finding(scan.rel, f"{codec.name}-compressed content was inflated "
                                                             f"({len(inner)} bytes) and scanned"))
    before = len(scan.tensors)
    inner_key = f"{path_key}#inflated"
    body(scan, inner, options, inner_key)
    for index in range(before, len(scan.tensors)):
        tensor = scan.tensors[index]
        if tensor.data_offsets is not None and "#inflated" not in path_key:
            INFLATED_RANGES[(path_key, tensor.name)] = (codec.name, *tensor.data_offsets)
        else:
            scan.verified = False            # strided or compressed records inside: not streamed from here
        scan.tensors[index] = replace(tensor, data_offsets=None)


class CompressedLoader:
    """Compressed pickles and joblib files (see module docstring)."""

    name = "compressed-pickle"

    def sniff(self, probe: Probe) -> bool:
        if probe.is_dir:
            return False
        codec = codec_of(probe.head)
        if codec is None:
            return False
        if codec.new is None:
            return True
        try:
            head = _inflated_head(probe.head, codec)
        except FileProblem:
            return codec.name not in _WEAK
        if inner_body(head) is not None:
            return True
        return codec.name not in _WEAK and _pickle_like_name(probe.path)

    def load(self, path: Path, rel: str, options: LoadOptions) -> LoadedFile:
        return safe_load(self.name, path, rel, options, load_body)

    def iter_chunks(self, path: Path, tensor: TensorInfo, chunk_bytes: int = DEFAULT_CHUNK) -> Iterator[memoryview]:
        key = (resolved_path(str(path)), tensor.name)
        if key not in INFLATED_RANGES:
            self.load(Path(path), tensor.file, LoadOptions())
        if key not in INFLATED_RANGES:
            raise ValueError(f"{tensor.file}: tensor {tensor.name!r} has no readable byte range")
        name, begin, end = INFLATED_RANGES[key]
        codec = next(c for c in CODECS if c.name == name)
        return _spool_for(Path(path), codec).iter_range(begin, end, chunk_bytes)


class _Spool:
    """One compressed file inflated into an anonymous temporary file, as far as reads have asked so far; the
    decompressor is kept, so a later range further on continues where the last stopped. Reads use ``pread`` (no
    shared file offset). A process owns its spools: forked statistics workers make their own."""

    def __init__(self, path: Path, codec: Codec, identity: tuple[int, int, int]) -> None:
        self.path, self.codec, self.identity, self.pid = path, codec, identity, os.getpid()
        self.source = open(path, "rb")
        self.spool = tempfile.TemporaryFile(prefix="weightaudit-")
        self.inflated = _iter_inflated(self.source.read, codec)
        self.length = 0
        self.ended = False
        self.lock = threading.Lock()     # statistics threads (where fork is missing) may share it

    def _extend(self, end: int) -> None:
        with self.lock:
            self._inflate_to(end)

    def _inflate_to(self, end: int) -> None:
        while self.length < end and not self.ended:
            out = next(self.inflated, None)
            if out is None:
                self.ended = True
                self.source.close()
                break
            self.spool.write(out)
            self.length += len(out)
        self.spool.flush()
        if self.length < end:
            raise FileProblem(f"{self.path.name}: inflated stream ends before byte {end}")

    def iter_range(self, begin: int, end: int, chunk_bytes: int) -> Iterator[memoryview]:
        self._extend(end)
        fd = self.spool.fileno()
        step = max(chunk_bytes, 1)
        for offset in range(begin, end, step):
            data = os.pread(fd, min(step, end - offset), offset)
            if not data:
                raise FileProblem(f"{self.path.name}: spooled stream ends before byte {end}")
            yield memoryview(data)

    def close(self) -> None:
        self.source.close()
        self.spool.close()


_SPOOLS: dict[str, _Spool] = {}
MAX_SPOOLS = 2                     # files whose inflated streams are kept at once (each a temporary file)


def _spool_for(path: Path, codec: Codec) -> _Spool:
    """This process's spool of ``path`` (made anew when the file changed, or after a fork)."""
    key = resolved_path(str(path))
    stat = path.stat()
    identity = (stat.st_dev, stat.st_ino, stat.st_mtime_ns)
    found = _SPOOLS.get(key)
    if found is not None and found.identity == identity and found.pid == os.getpid() and found.codec is codec:
        return found
    if found is not None:
        _SPOOLS.pop(key)
        if found.pid == os.getpid():
            found.close()
    while len(_SPOOLS) >= MAX_SPOOLS:
        oldest = _SPOOLS.pop(next(iter(_SPOOLS)))
        if oldest.pid == os.getpid():
            oldest.close()
    _SPOOLS[key] = made = _Spool(path, codec, identity)
    return made


def _inflated_head(head: bytes, codec: Codec, size: int = 4096) -> bytes:
    """The first inflated bytes of a probe's head (bounded: at most a few steps)."""
    chunks, total = [], 0
    read = view_reader(memoryview(head))

    try:
        for out in _iter_inflated(read, codec):
            chunks.append(out)
            total += len(out)
            if total >= size:
                break
    except FileProblem:
        if not chunks:
            raise
    return b"".join(chunks)[:size]


def _pickle_like_name(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    return any(s in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".npy", ".npz", ".tar")
               for s in suffixes)


LOADER = CompressedLoader()
