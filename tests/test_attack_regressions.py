"""Attacks a second-wave QA pass built against issue 9's seven causes, kept so they never regress.

Every sample is hand-built bytes (pickles written opcode by opcode, containers by the standard library's
compressors and archivers, templates as text) and audited through the CLI: exit 1 and a high or critical finding
naming the call (``names``) and where it is. Nothing here is ever unpickled, loaded or rendered.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import invoke_json

HIGH = {"high", "critical"}


# ---------------------------------------------------------------- hand-written pickle bytes

def text(value: str) -> bytes:
    data = value.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def pickle(body: bytes, protocol: int = 2) -> bytes:
    return b"\x80" + bytes([protocol]) + body + b"."


def long(value: int) -> bytes:
    return b"L" + str(value).encode() + b"L\n"


SYSTEM = call(glob("os", "system"), text("id"))
PAYLOAD = pickle(SYSTEM)


@dataclass(frozen=True)
class Sample:
    name: str
    file: str                       # file name inside the release folder
    build: Callable[[], bytes]
    names: str                      # text the high/critical finding's message must contain
    where: str = ""                 # text its `where` must contain


# Cause 1: callables outside the allowlist that run code, touch files or load other files
CALLABLES = [
    Sample("torch-dynamo-exec", "m.pkl", lambda: pickle(call(glob("torch._dynamo.utils", "exec"), text("import os"))),
           "torch._dynamo.utils.exec", "REDUCE"),
    Sample("torch-fx-forward-from-src", "m.pkl", lambda: pickle(call(
        glob("torch.fx.graph_module", "_forward_from_src"), text("import os"), b"}", b"N")),
           "_forward_from_src", "REDUCE"),
    Sample("numpy-open-memmap-writes", "m.pkl", lambda: pickle(call(
        glob("numpy.lib.format", "open_memmap"), text("/tmp/x.npy"), text("w+"))), "open_memmap", "REDUCE"),
    Sample("shutil-copyfile", "m.pkl", lambda: pickle(call(glob("shutil", "copyfile"), text("/etc/passwd"),
                                                           text("/tmp/p"))), "shutil.copyfile", "REDUCE"),
    Sample("tempfile-mkstemp", "m.pkl", lambda: pickle(call(glob("tempfile", "mkstemp"))), "tempfile.mkstemp"),
    Sample("zipimporter-through-getattr", "m.pkl", lambda: pickle(call(
        glob("builtins", "getattr"), call(glob("zipimport", "zipimporter"), text("/tmp/x.zip")), text("load_module"))),
           "zipimport.zipimporter"),
    Sample("source-file-loader", "m.pkl", lambda: pickle(call(
        glob("importlib.machinery", "SourceFileLoader"), text("x"), text("/tmp/x.py"))), "SourceFileLoader"),
    Sample("pydoc-locate", "m.pkl", lambda: pickle(call(glob("pydoc", "locate"), text("os.system"))), "pydoc.locate"),
    Sample("code-interact", "m.pkl", lambda: pickle(call(glob("code", "interact"))), "code.interact"),
    Sample("logging-config-listen", "m.pkl", lambda: pickle(call(glob("logging.config", "listen"))),
           "logging.config.listen"),
    Sample("cpp-extension-load-inline", "m.pkl", lambda: pickle(call(
        glob("torch.utils.cpp_extension", "load_inline"), text("x"), text("int x;"))), "load_inline"),
    Sample("copyreg-reconstructor-os", "m.pkl", lambda: pickle(call(
        glob("copyreg", "_reconstructor"), glob("os", "_wrap_close"), glob("builtins", "object"), b"N")),
           "os._wrap_close"),
    Sample("posixpath-os-alias", "m.pkl", lambda: pickle(call(glob("posixpath", "os.system"), text("id"))),
           "os.system"),
]

# Cause 2: odd-but-legal opcode sequences before the payload (CPython's _pickle accepts each)
PREAMBLES = {
    "int-hex": b"I0x10\n0",
    "int-negative-octal": b"I-0o17\n0",
    "memo-redefined": b"Np1\nI3\np1\n0g1\n0",
    "proto-twice": b"\x80\x02",
    "frame-in-protocol-2": b"\x95" + struct.pack("<Q", 0),
    "mark-left-on-the-stack": b"(N",
    "text-persistent-id": b"Pfoo\n0",
    "build-none-on-a-dict": b"}Nb0",
    "empty-appends-and-setitems": b"](e0}(u0",
}
OPCODES = [Sample(f"preamble-{name}", "m.pkl", lambda pre=pre: pickle(pre + SYSTEM, 4), "os.system('id')", "byte")
           for name, pre in PREAMBLES.items()]


def _npy(descr: str, version: int = 1) -> bytes:
    header = ("{'descr': %s, 'fortran_order': False, 'shape': (1,), }" % descr).encode()
    size = 4 if version >= 2 else 2
    header += b" " * (64 - (8 + size + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I" if size == 4 else "<H", len(header)) + header + PAYLOAD


def _tar(members: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name in members:
            info = tarfile.TarInfo(name)
            info.size = len(PAYLOAD)
            archive.addfile(info, io.BytesIO(PAYLOAD))
    return buf.getvalue()


_MAGIC = pickle(b"\x8a\x0a" + (0x1950a86a20f9469cfc6c).to_bytes(10, "little"))
_LEGACY_HEAD = _MAGIC + pickle(b"M\xe9\x03")

# Cause 3: containers read by structure
CONTAINERS = [
    Sample("pt-gz", "model.pt.gz", lambda: gzip.compress(PAYLOAD), "os.system"),
    Sample("pkl-xz", "model.pkl.xz", lambda: lzma.compress(PAYLOAD), "os.system"),
    Sample("gz-of-bz2", "model.pkl.gz", lambda: gzip.compress(bz2.compress(PAYLOAD)), "os.system"),
    Sample("joblib-zlib", "model.joblib", lambda: zlib.compress(PAYLOAD), "os.system"),
    Sample("joblib-lzma-alone", "model.joblib", lambda: lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE),
           "os.system"),
    Sample("npy-struct-object-field", "a.npy", lambda: _npy("[('a', '|O')]"), "os.system"),
    Sample("npy-nested-struct-object", "a.npy", lambda: _npy("[('a', [('b', '<f4'), ('c', '|O')])]"), "os.system"),
    Sample("npy-object-subarray", "a.npy", lambda: _npy("[('a', '|O', (2,))]"), "os.system"),
    Sample("npy-v3-object", "a.npy", lambda: _npy("'|O'", 3), "os.system"),
    Sample("npy-dict-descr", "a.npy", lambda: _npy("{'names': ['a'], 'formats': ['O']}"), "os.system"),
    Sample("legacy-tar-gz", "model.tar.gz", lambda: gzip.compress(_tar(["sys_info", "pickle", "storages",
                                                                         "tensors"])), "os.system"),
    Sample("legacy-stream-payload-last", "model.pt",
           lambda: _LEGACY_HEAD + pickle(b"}") + pickle(b"}") + PAYLOAD, "os.system"),
    Sample("legacy-stream-payload-in-sys-info", "model.pt",
           lambda: _LEGACY_HEAD + PAYLOAD + pickle(b"}") + pickle(b"]"), "os.system"),
]

# Cause 6: chat templates (tokenizer_config.json) assembling dunder names in ways a regex does not see
TEMPLATES = {
    "center-filter": ("{{ ''|attr('class'|center(9,'_')) }}", "attr"),
    "dict-keys-joined": ("{{ ''|attr(dict(__cla=1,ss__=2)|join) }}", "__class__"),
    "sort-attribute-chain": ("{{ messages|sort(attribute='__class__.__init__') }}", "__class__"),
    "set-block": ("{% set x %}__class__{% endset %}{{ ''|attr(x) }}", "__class__"),
    "urldecode-filter": ("{{ ''|attr('%5F%5Fclass%5F%5F'|urldecode) }}", "urldecode"),
    "macro-return-value": ("{% macro k() %}__class__{% endmacro %}{{ ''|attr(k()) }}", "attr"),
    "underscore-times-two": ("{{ ''|attr('_'*2 ~ 'class' ~ '_'*2) }}", "__class__"),
    "printf-percent-c": ("{{ ''|attr('%c%c%s%c%c'|format(95,95,'class',95,95)) }}", "__class__"),
    "adjacent-literals": ("{{ ''|attr('__cl' 'ass__') }}", "__class__"),
    "comment-around-delimiters": ("{# {{ #}{{ joiner.__init__.__globals__ }}{# }} #}", "__globals__"),
}
CHAT = [Sample(f"template-{name}", "tokenizer_config.json",
               lambda t=template: json.dumps({"chat_template": t}).encode(), names, "")
        for name, (template, names) in TEMPLATES.items()]

# Cause 7: a bomb through an allowlisted callable (numpy's _reconstruct allocates the shape it is given)
BOMBS = [
    Sample("reconstruct-huge-shape", "m.pkl", lambda: pickle(call(
        glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), b"(" + long(10**6) + long(10**6)
        + b"t", b"U\x01b")), "1000000000000"),
]

ALL = CALLABLES + OPCODES + CONTAINERS + CHAT + BOMBS


@pytest.mark.parametrize("sample", ALL, ids=[s.name for s in ALL])
def test_new_attack_fails_the_audit(runner, tmp_path: Path, sample: Sample) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / sample.file).write_bytes(sample.build())
    code, report = invoke_json(runner, "audit", release, "--no-stats")
    hits = [f for f in report["findings"] if f["severity"] in HIGH and not f["rule_id"].startswith("WA5")]
    assert code == 1, report["findings"]
    assert any(sample.names in f["message"] and sample.where in (f.get("where") or "") for f in hits), \
        [(f["rule_id"], f["severity"], f.get("where"), f["message"]) for f in report["findings"]]


def _safetensors() -> bytes:
    header = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0\0\0\0"


@pytest.mark.parametrize("encode", [
    lambda p: __import__("base64").b64encode(zlib.compress(p)).decode(),
    lambda p: gzip.compress(p).hex(),
    lambda p: __import__("base64").b64encode(lzma.compress(p)).decode(),
], ids=["base64-zlib", "hex-gzip", "base64-xz"])
def test_compressed_pickle_in_a_json_side_file_is_found(runner, tmp_path: Path, encode: Callable) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "config.json").write_text(json.dumps({"model_type": "bert", "blob": encode(PAYLOAD)}))
    (release / "model.safetensors").write_bytes(_safetensors())
    code, report = invoke_json(runner, "audit", release, "--no-stats")
    assert code == 1
    assert any(f["rule_id"] == "WA426" and f["severity"] == "critical" and "os.system('id')" in f["message"]
               for f in report["findings"]), report["findings"]


def test_compressed_pickle_in_a_pickle_constant_is_reported(runner, tmp_path: Path) -> None:
    blob = zlib.compress(PAYLOAD)
    (tmp_path / "m.pkl").write_bytes(pickle(b"C" + bytes([len(blob)]) + blob))
    code, report = invoke_json(runner, "audit", tmp_path / "m.pkl", "--no-stats")
    assert code == 0            # dormant: loading the file does not unpickle the constant (WA411 is medium)
    assert any(f["rule_id"] == "WA411" and f["severity"] == "medium" and "os.system('id')" in f["message"]
               and "byte" in (f.get("where") or "") for f in report["findings"]), report["findings"]


def test_inflating_hidden_pickles_is_bounded_by_their_compressed_size() -> None:
    from weightaudit.rules.pickle_nested import INFLATE_RATIO, _inflated

    padded = zlib.compress(b"\x80\x02" + b"N0" * 500_000 + b"N.")      # ~1 MB of opcodes in ~1 KB
    assert len(_inflated(padded)) == INFLATE_RATIO * len(padded)
    assert _inflated(zlib.compress(b"not a pickle" * 1000)) is None     # only pickle headers are inflated further
    assert _inflated(zlib.compress(PAYLOAD)) == PAYLOAD
