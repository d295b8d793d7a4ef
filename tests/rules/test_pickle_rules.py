"""Every WA4xx / WA14x rule fires on a bad input and stays silent on good checkpoints."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.model import LoadedFile, Severity
from weightaudit.rules import get_rule
from weightaudit.rules.pickle_rules import classify_global

torch = pytest.importorskip("torch")


def _load(path: Path) -> LoadedFile:
    loader = sniff(read_probe(path))
    assert loader is not None
    return loader.load(path, path.name, LoadOptions())


def _ids(path: Path) -> set[str]:
    return {f.rule_id for f in _load(path).findings}


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _good_zip(tmp_path: Path, obj: object = None, name: str = "good.pt") -> Path:
    path = tmp_path / name
    torch.save(obj if obj is not None else {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, path)
    return path


def _edit_zip(src: Path, dst: Path, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = (),
              extra: tuple[tuple[str, bytes], ...] = (), compress: bool = False) -> Path:
    replace = replace or {}
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", method) as zout:
        for info in zin.infolist():
            if info.filename.rsplit("/", 1)[-1] in drop or info.filename in drop:
                continue
            key = next((k for k in replace if info.filename.endswith(k)), None)
            zout.writestr(info.filename, replace[key] if key else zin.read(info.filename))
        for name, data in extra:
            zout.writestr(name, data)
    dst.write_bytes(out.getvalue())
    return dst


def _data_pkl(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def test_good_checkpoints_raise_nothing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "tied": model.weight}
    for path in (_good_zip(tmp_path, obj), tmp_path / "legacy.pt"):
        if path.name == "legacy.pt":
            torch.save(obj, path, _use_new_zipfile_serialization=False)
        loaded = _load(path)
        assert loaded.findings == (), [f.message for f in loaded.findings]
        assert loaded.facts["weights_only_accepts"] is True


@pytest.mark.parametrize("module, name, verdict", [
    ("posix", "system", "denied"), ("builtins", "getattr", "denied"), ("pathlib", "os.system", "denied"),
    ("torch", "serialization.os.system", "denied"), ("torch", "load", "denied"), ("importlib", "import_module", "denied"),
    ("asyncio.unix_events", "_UnixSubprocessTransport._start", "denied"), ("codecs", "open", "denied"),
    ("http.client", "HTTPConnection", "denied"), ("marshal", "loads", "denied"), ("types", "FunctionType", "denied"),
    ("torch._utils", "_rebuild_tensor_v2", "allowed"), ("collections", "OrderedDict", "allowed"),
    ("torch", "BFloat16Storage", "allowed"), ("torch._utils", "evil", "unknown"),
    ("collections", "OrderedDictEvil", "unknown"), ("copyreg", "_reconstructor", "allowed"),
    ("argparse", "Namespace", "allowed"), ("transformers.training_args", "TrainingArguments", "container"),
    ("numpy.testing._private.utils", "os", "denied"), ("torch.serialization", "os", "denied"),
    ("pathlib", "Path.write_text", "denied"), ("builtins", "object.__subclasses__", "denied"),
    ("torch", "_utils._rebuild_tensor_v2", "unknown"), ("antigravity", "x", "denied"),
    ("random", "_os", "denied"), ("tempfile", "_os.system", "denied"), ("mylib", "_os_helper", "unknown"),
    ("torch.nn.modules.linear", "Linear", "unknown"), ("torch.serialization", "_get_layout", "allowed"),
])
def test_classify_global(module: str, name: str, verdict: str) -> None:
    assert classify_global(module, name) == verdict


def _raw(tmp_path: Path, data: bytes, name: str = "x.pkl") -> set[str]:
    return _ids(_write(tmp_path, name, data))


def test_wa401_to_wa412_on_raw_pickles(tmp_path: Path) -> None:
    call = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
    assert "WA401" in _raw(tmp_path, call)
    finding = next(f for f in _load(_write(tmp_path, "c.pkl", call)).findings if f.rule_id == "WA401")
    assert finding.severity is Severity.CRITICAL and finding.message == "calls os.system('id') (processes: spawns or controls processes)"
    assert finding.where == "pickle byte 21 (REDUCE)"
    assert "WA402" in _raw(tmp_path, b"\x80\x02cos\nsystem\n.")
    assert "WA403" in _raw(tmp_path, b"\x80\x02cmylib\nThing\n)R.")
    assert "WA404" in _raw(tmp_path, b"I0x10\n.")
    assert "WA405" in _raw(tmp_path, b"(" * 200_000 + b".")
    assert "WA406" in _raw(tmp_path, b"\x80\x02\x82\x07)R.")
    assert "WA407" in _raw(tmp_path, b"\x80\x04cbuiltins\nstr\n)R\x8c\x01x\x93.")
    assert "WA408" in _raw(tmp_path, b"\x80\x02ctorch\n_utils\n}X\x01\x00\x00\x00aK\x01sb.")
    assert "WA409" in _raw(tmp_path, b"\x80\x02cmylib\nThing\n)R}b.")
    nested = pickle.dumps({"blob": b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."}, protocol=2)
    assert "WA411" in _raw(tmp_path, nested)
    assert "WA412" in _raw(tmp_path, b"\x80\x05\x97.")
    assert "WA415" in _raw(tmp_path, pickle.dumps([1]) + b"\xff\xfe")
    for clean in (pickle.dumps({"a": [1, 2.5, "x"]}, protocol=p) for p in range(6)):
        assert _raw(tmp_path, clean) <= {"WA410"}


def test_wa410_protocol_4_checkpoint_is_info_only(tmp_path: Path) -> None:
    path = tmp_path / "p4.pt"
    torch.save({"w": torch.ones(2)}, path, pickle_protocol=4)
    loaded = _load(path)
    assert {f.rule_id for f in loaded.findings} == {"WA410"}
    assert all(f.severity is Severity.INFO for f in loaded.findings)


def test_wa413_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    assert "WA413" in _ids(path)
    assert "WA413" not in _ids(_good_zip(tmp_path))


def test_wa414_unexpected_persistent_id(tmp_path: Path) -> None:
    good = _good_zip(tmp_path)
    pkl = _data_pkl(good).replace(b"X\x07\x00\x00\x00storage", b"X\x07\x00\x00\x00storagE", 1)
    assert "WA414" in _ids(_edit_zip(good, tmp_path / "pid.pt", {"data.pkl": pkl}))


def test_wa416_object_array(tmp_path: Path) -> None:
    import numpy as np
    obj, num = tmp_path / "o.npy", tmp_path / "n.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(num, np.arange(5, dtype=np.float32))
    assert "WA416" in _ids(obj)
    assert _ids(num) == set()
    assert [t.shape for t in _load(num).tensors] == [(5,)]


def test_wa140_to_wa155_container_rules(tmp_path: Path) -> None:
    good = _good_zip(tmp_path)
    raw = good.read_bytes()
    assert "WA140" in _ids(_write(tmp_path, "trunc.pt", raw[: len(raw) // 2]))
    assert "WA141" in _ids(_edit_zip(good, tmp_path / "dup.pt", extra=(("good/data.pkl", _data_pkl(good)),)))
    cd = raw.rindex(b"good/data.pkl")                     # the central-directory copy of the name
    assert "WA142" in _ids(_write(tmp_path, "name.pt", raw[:cd] + b"good/data.pkX" + raw[cd + 13:]))
    local = raw.index(b"PK\x03\x04")
    flagged = raw[:local + 6] + struct.pack("<H", 0x20) + raw[local + 8:]
    assert "WA143" in _ids(_write(tmp_path, "flags.pt", flagged))
    pkl_at = raw.index(b"\x80\x02", local)
    corrupt = raw[:pkl_at + 3] + bytes([raw[pkl_at + 3] ^ 1]) + raw[pkl_at + 4:]
    assert "WA144" in _ids(_write(tmp_path, "crc.pt", corrupt))
    pkl = _data_pkl(good)
    assert "WA145" in _ids(_edit_zip(good, tmp_path / "numel.pt", {"data.pkl": pkl.replace(b"K\x06t", b"K\x05t", 1)}))
    assert "WA146" in _ids(_edit_zip(good, tmp_path / "oob.pt", {"data.pkl": pkl.replace(b"K\x02K\x03\x86", b"K\x03K\x03\x86", 1)}))
    assert "WA147" in _ids(_edit_zip(good, tmp_path / "missing.pt", drop=("good/data/0",)))
    assert "WA148" in _ids(_edit_zip(good, tmp_path / "orphan.pt", extra=(("good/data/9", b"\0" * 8),)))
    assert "WA149" in _ids(_edit_zip(good, tmp_path / "trav.pt", extra=(("../../evil.txt", b"x"),)))
    assert "WA150" in _ids(_edit_zip(good, tmp_path / "hidden.pt", extra=(("good/config.json", pickle.dumps([1], 2)),)))
    assert "WA151" in _ids(_edit_zip(good, tmp_path / "deflate.pt", compress=True))
    flat = io.BytesIO()
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(flat, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.split("/", 1)[1], zin.read(info.filename))
    assert "WA152" in _ids(_write(tmp_path, "flat.pt", flat.getvalue()))
    encrypted = raw[:local + 6] + struct.pack("<H", 0x1) + raw[local + 8:]
    encrypted = encrypted[:pkl_at] + b"\x13\x37" + encrypted[pkl_at + 2:]
    assert "WA153" in _ids(_write(tmp_path, "enc.pt", encrypted))
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert "WA154" in _ids(_write(tmp_path, "legacy_tail.pt", legacy.read_bytes() + pickle.dumps([1], 2)))
    assert _ids(legacy) == set()
    meta = tmp_path / "meta.pt"         # quantized and sparse tensors are inventoried (test_pickle_benign.py)
    torch.save({"m": torch.empty(2, device="meta")}, meta)
    assert "WA155" in _ids(meta)


def test_deflated_records_are_still_readable(tmp_path: Path) -> None:
    good = _good_zip(tmp_path)
    deflated = _edit_zip(good, tmp_path / "deflate.pt", compress=True)
    loader = sniff(read_probe(deflated))
    loaded = loader.load(deflated, deflated.name, LoadOptions())
    tensor = loaded.tensors[0]
    assert tensor.data_offsets is None
    data = b"".join(bytes(c) for c in loader.iter_chunks(deflated, tensor, 1024))
    assert data == torch.arange(6, dtype=torch.float32).numpy().tobytes()


def test_every_rule_is_documented() -> None:
    for number in list(range(401, 421)) + list(range(140, 156)):
        rule = get_rule(f"WA{number}")
        assert rule.name and rule.summary and rule.help and rule.check is None


def test_multi_stage_nested_pickle_is_followed() -> None:
    """A pickle whose constant is a pickle whose constant is a pickle that calls something (base64 or raw)."""
    import base64

    from weightaudit.formats.pickle_vm import scan_stream
    from weightaudit.rules.pickle_rules import pickle_findings

    stage3 = b"\x80\x04\x8c\x08builtins\x94\x8c\x05print\x94\x93\x94\x8c\x02hi\x94\x85\x94R\x94."
    stage2 = b"\x80\x04C" + bytes([len(stage3)]) + stage3 + b"."
    stage1 = b"\x80\x04\x8c" + bytes([len(base64.b64encode(stage2))]) + base64.b64encode(stage2) + b"."
    outer = b"\x80\x04C" + bytes([len(stage1)]) + stage1 + b"."
    (result,), _ = scan_stream(outer)
    found = [f for f in pickle_findings(result, "x.pkl", "x.pkl", 0, outer) if f.rule_id == "WA411"]
    assert found and "3 pickles deep" in found[0].message and "builtins.print('hi')" in found[0].message


@pytest.mark.parametrize("module, name, reaches", [
    ("pathlib", "os.system", "os.system"), ("torch", "serialization.os.system", "os.system"),
    ("numpy.testing._private.utils", "os", "os"), ("random", "_os", "os"), ("tempfile", "_os.system", "os.system"),
])
def test_dotted_names_are_judged_as_what_cpython_find_class_reaches(module: str, name: str, reaches: str) -> None:
    """Differential: CPython's own find_class (protocol 4; it imports and walks attributes, calls nothing) reaches
    the dangerous object, and the classifier judges the chain as that object."""
    import importlib
    import os

    unpickler = pickle._Unpickler(io.BytesIO(b""))
    unpickler.proto = 4
    target_module, _, attr = reaches.partition(".")
    expected = importlib.import_module(target_module)
    expected = getattr(expected, attr) if attr else expected
    assert unpickler.find_class(module, name) is expected
    assert expected in (os, os.system)
    assert classify_global(module, name) == "denied"


def test_weights_only_table_matches_torchs_own() -> None:
    """Differential against torch's restricted unpickler table (read, never used to load anything)."""
    from torch import _weights_only_unpickler

    from weightaudit.rules.pickle_rules import WEIGHTS_ONLY_GLOBALS

    theirs = set(_weights_only_unpickler._get_allowed_globals())
    assert WEIGHTS_ONLY_GLOBALS - theirs == set()
    # not modelled: legacy sparse tensor-type values (torch.sparse.FloatTensor, torch.cuda.sparse.FloatTensor)
    assert all(".sparse." in n and n.endswith("Tensor") for n in theirs - WEIGHTS_ONLY_GLOBALS)
