"""The benign side of the pickle allowlist verdict (issue 9, "Done when"): real-shaped checkpoints pass.

Built here with torch 2.13 and numpy: tied weights, bf16/f16, quantized (per tensor and per channel), sparse
(COO, CSR, CSC, BSR), the legacy stream, a big-endian archive; HF Trainer files (``training_args.bin`` through
stand-in modules with the same names as transformers' — only imported by this test to CREATE the pickle —
``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``); a Lightning ``.ckpt`` whose ``hyper_parameters`` is an
AttributeDict or an omegaconf DictConfig; numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) pickles; joblib arrays.
Nothing reaches high, ``weightaudit audit`` exits 0 and every file is verified with its tensors inventoried.
Nothing here is unpickled by the audit; torch.load is never called on a file the test did not just write.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke
from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.model import LoadedFile, Severity

torch = pytest.importorskip("torch")

FAKE_MODULES = {
    "transformers/__init__.py": "",
    "transformers/trainer_utils.py": """
        from enum import Enum
        class ExplicitEnum(str, Enum):
            pass
        class IntervalStrategy(ExplicitEnum):
            NO = "no"; STEPS = "steps"; EPOCH = "epoch"
        class SaveStrategy(ExplicitEnum):
            NO = "no"; STEPS = "steps"; EPOCH = "epoch"; BEST = "best"
        class HubStrategy(ExplicitEnum):
            END = "end"; EVERY_SAVE = "every_save"
        class SchedulerType(ExplicitEnum):
            LINEAR = "linear"; COSINE = "cosine"
    """,
    "transformers/trainer_pt_utils.py": """
        from dataclasses import dataclass
        @dataclass
        class AcceleratorConfig:
            split_batches: bool = False
            dispatch_batches: object = None
            even_batches: bool = True
            use_seedable_sampler: bool = True
    """,
    "transformers/training_args.py": """
        from dataclasses import dataclass, field
        import torch
        from transformers.trainer_utils import ExplicitEnum, HubStrategy, IntervalStrategy, SaveStrategy, SchedulerType
        from transformers.trainer_pt_utils import AcceleratorConfig
        class OptimizerNames(ExplicitEnum):
            ADAMW_TORCH = "adamw_torch"
        @dataclass
        class TrainingArguments:
            output_dir: str = "out"
            eval_strategy: IntervalStrategy = IntervalStrategy.STEPS
            save_strategy: SaveStrategy = SaveStrategy.EPOCH
            hub_strategy: HubStrategy = HubStrategy.EVERY_SAVE
            lr_scheduler_type: SchedulerType = SchedulerType.COSINE
            optim: OptimizerNames = OptimizerNames.ADAMW_TORCH
            learning_rate: float = 5e-5
            lr_scheduler_kwargs: dict = field(default_factory=dict)
            report_to: list = field(default_factory=lambda: ["tensorboard"])
            debug: list = field(default_factory=list)
            accelerator_config: AcceleratorConfig = field(default_factory=AcceleratorConfig)
            def __post_init__(self):
                self.__dict__["_n_gpu"] = 0
                self.__dict__["__cached__setup_devices"] = torch.device("cpu")
    """,
    "lightning/__init__.py": "",
    "lightning/fabric/__init__.py": "",
    "lightning/fabric/utilities/__init__.py": "",
    "lightning/fabric/utilities/data.py": """
        class AttributeDict(dict):
            def __getattr__(self, key):
                return self[key]
    """,
    "omegaconf/__init__.py": "",
    "omegaconf/base.py": """
        from dataclasses import dataclass, field
        from typing import Any
        @dataclass
        class Metadata:
            ref_type: Any = Any
            object_type: Any = None
            optional: bool = True
            key: Any = None
            flags: dict = field(default_factory=dict)
        @dataclass
        class ContainerMetadata(Metadata):
            key_type: Any = Any
            element_type: Any = Any
    """,
    "omegaconf/nodes.py": """
        from omegaconf.base import Metadata
        class AnyNode:
            def __init__(self, value, key):
                self._val = value
                self._metadata = Metadata(object_type=None, key=key)
                self._parent = None
    """,
    "omegaconf/dictconfig.py": """
        from omegaconf.base import ContainerMetadata
        from omegaconf.nodes import AnyNode
        class DictConfig:
            def __init__(self, content):
                self.__dict__["_metadata"] = ContainerMetadata(object_type=dict)
                self.__dict__["_parent"] = None
                self.__dict__["_content"] = {k: AnyNode(v, k) for k, v in content.items()}
            def __getstate__(self):
                return dict(self.__dict__)
            def __setstate__(self, state):
                self.__dict__.update(state)
    """,
}


@pytest.fixture
def fake_libraries(tmp_path: Path):
    """Stand-ins for transformers / lightning / omegaconf, importable only while a test writes its pickles."""
    root = tmp_path / "fake_site"
    for rel, source in FAKE_MODULES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.split(".")[0] in ("transformers", "lightning", "omegaconf")]:
            del sys.modules[name]


def _load(path: Path) -> LoadedFile:
    loader = sniff(read_probe(path))
    assert loader is not None, path
    return loader.load(path, path.name, LoadOptions())


def _trained_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight                                       # tied weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    model(torch.tensor([1, 2])).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _big_endian(src: Path, dst: Path) -> Path:
    """torch.save's archive rewritten as a big-endian machine writes it: byteorder 'big', records byte-swapped."""
    out = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, dtype="<f4").astype(">f4").tobytes()
            zout.writestr(info.filename, data)
    dst.write_bytes(out.getvalue())
    return dst


def _write_torch_checkpoints(folder: Path) -> None:
    model, opt, sched = _trained_model()
    state = model.state_dict()
    torch.save({"model": state, "tied": model[0].weight}, folder / "tied.pt")
    torch.save({"bf16": torch.ones(3, dtype=torch.bfloat16), "f16": torch.nn.Parameter(torch.ones(2, dtype=torch.float16))},
               folder / "half.pt")
    torch.save({"q": torch.quantize_per_tensor(torch.linspace(0, 1, 6), 0.1, 2, torch.quint8),
                "qc": torch.quantize_per_channel(torch.ones(2, 3), torch.tensor([0.1, 0.2], dtype=torch.float64),
                                                 torch.tensor([0, 1]), 0, torch.qint8)}, folder / "quantized.pt")
    eye = torch.eye(4)
    torch.save({"coo": eye.to_sparse(), "csr": eye.to_sparse_csr(), "csc": eye.to_sparse_csc(),
                "bsr": eye.to_sparse_bsr((2, 2))}, folder / "sparse.pt")
    torch.save(state, folder / "legacy.bin", _use_new_zipfile_serialization=False)
    torch.save({"w": torch.arange(6, dtype=torch.float32)}, folder / "little.pt")
    _big_endian(folder / "little.pt", folder / "big_endian.pt")
    torch.save(opt.state_dict(), folder / "optimizer.pt")
    torch.save(sched.state_dict(), folder / "scheduler.pt")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()},
               folder / "rng_state.pth")


def _write_library_pickles(folder: Path) -> None:
    from lightning.fabric.utilities.data import AttributeDict
    from omegaconf.dictconfig import DictConfig
    from transformers.training_args import TrainingArguments

    torch.save(TrainingArguments(output_dir="runs/x"), folder / "training_args.bin")
    model, opt, sched = _trained_model()
    checkpoint = {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.5.0",
                  "state_dict": model.state_dict(), "loops": {"fit_loop": {"epoch_progress": {"current": 3}}},
                  "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.5),
                                                                            "dirpath": "ckpts"}},
                  "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()],
                  "hparams_name": "kwargs", "hyper_parameters": AttributeDict(lr=1e-3, layers=2, name="tiny")}
    torch.save(checkpoint, folder / "lightning.ckpt")
    checkpoint["hyper_parameters"] = DictConfig({"lr": 1e-3, "layers": 2})
    torch.save(checkpoint, folder / "lightning_omegaconf.ckpt")


def _write_numpy_pickles(folder: Path) -> None:
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float32(1.5), "i": np.int64(3),
              "o": np.array(["x", "y"], dtype=object)}
    for proto in (2, 3):          # numpy 1.x spells the module numpy.core (GLOBAL lines: lengths are not counted)
        data = pickle.dumps(arrays, protocol=proto).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray" in data
        (folder / f"numpy1_p{proto}.pkl").write_bytes(data)
    for proto in (4, 5):
        (folder / f"numpy2_p{proto}.pkl").write_bytes(pickle.dumps(arrays, protocol=proto))
    joblib = pytest.importorskip("joblib")
    joblib.dump({"coef": arrays["a"], "counts": np.arange(5)}, folder / "arrays.joblib")


@pytest.fixture
def benign_release(tmp_path: Path, fake_libraries) -> Path:
    folder = tmp_path / "release"
    folder.mkdir()
    _write_torch_checkpoints(folder)
    _write_library_pickles(folder)
    _write_numpy_pickles(folder)
    return folder


def test_benign_release_passes_and_is_verified(runner, benign_release: Path) -> None:
    result = invoke(runner, "audit", benign_release, "-q", "-f", "json")       # with statistics
    report = json.loads(result.stdout)
    high = [(f["path"], f["rule_id"], f["message"]) for f in report["findings"] if f["severity"] in ("high", "critical")]
    assert high == [] and result.exit_code == 0, high
    assert report["summary"]["verified"] is True
    files = {f["path"]: f for f in report["files"]}
    assert len(files) == len(list(benign_release.iterdir()))
    assert all(f["verified"] and f["status"] == "ok" for f in files.values()), files
    assert not any(f["rule_id"] == "WA155" for f in report["findings"])


def test_library_records_are_medium_data_containers(benign_release: Path) -> None:
    for name, classes in (("training_args.bin", {"transformers.training_args.TrainingArguments",
                                                 "transformers.trainer_utils.IntervalStrategy",
                                                 "transformers.trainer_pt_utils.AcceleratorConfig"}),
                          ("lightning.ckpt", {"lightning.fabric.utilities.data.AttributeDict"}),
                          ("lightning_omegaconf.ckpt", {"omegaconf.dictconfig.DictConfig",
                                                        "omegaconf.base.ContainerMetadata"})):
        loaded = _load(benign_release / name)
        medium = {f.message.split()[1] for f in loaded.findings if f.rule_id == "WA418"}
        assert classes <= medium, (name, [f.message for f in loaded.findings])
        assert max(f.severity for f in loaded.findings) == Severity.MEDIUM
        assert loaded.verified


def test_quantized_and_sparse_tensors_are_inventoried(benign_release: Path) -> None:
    sparse = {t.name: (t.dtype, t.shape) for t in _load(benign_release / "sparse.pt").tensors}
    assert sparse["coo.indices"] == ("I64", (2, 4)) and sparse["coo.values"] == ("F32", (4,))
    assert {"csr.crow_indices", "csr.col_indices", "csr.values", "csc.ccol_indices", "csc.row_indices",
            "bsr.values"} <= set(sparse)
    assert sparse["bsr.values"] == ("F32", (2, 2, 2))
    quantized = {t.name: (t.dtype, t.shape) for t in _load(benign_release / "quantized.pt").tensors}
    assert quantized == {"q": ("QU8", (6,)), "qc": ("QI8", (2, 3)), "qc.q_scales": ("F64", (2,)),
                         "qc.q_zero_points": ("I64", (2,))}


def test_quantized_and_sparse_bytes_match_torch(benign_release: Path) -> None:
    """The inventoried bytes are the tensor's own: compared with torch on a file this test just wrote."""
    path = benign_release / "sparse.pt"
    loader = sniff(read_probe(path))
    loaded = loader.load(path, path.name, LoadOptions())
    values = next(t for t in loaded.tensors if t.name == "csr.values")
    data = b"".join(bytes(c) for c in loader.iter_chunks(path, values))
    assert data == torch.eye(4).to_sparse_csr().values().numpy().tobytes()
    qpath = benign_release / "quantized.pt"
    qloader = sniff(read_probe(qpath))
    codes = next(t for t in qloader.load(qpath, qpath.name, LoadOptions()).tensors if t.name == "q")
    expected = torch.quantize_per_tensor(torch.linspace(0, 1, 6), 0.1, 2, torch.quint8).int_repr().numpy().tobytes()
    assert b"".join(bytes(c) for c in qloader.iter_chunks(qpath, codes)) == expected


def test_big_endian_archive_is_read_in_its_byte_order(benign_release: Path) -> None:
    loaded = _load(benign_release / "big_endian.pt")
    assert [(t.name, t.byte_order) for t in loaded.tensors] == [("w", "big")]
    assert loaded.findings == () or max(f.severity for f in loaded.findings) < Severity.MEDIUM


# Allowlist entries no file built here can show, each with the writer that needs it.
NEEDED_ELSEWHERE = {
    "torch._utils._rebuild_tensor": "torch < 0.4 checkpoints",
    "torch._utils._rebuild_device_tensor_from_numpy": "XLA / MTIA tensors (no such device here)",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "XLA / MTIA tensors (no such device here)",
    "torch._utils._rebuild_wrapper_subclass": "wrapper subclasses (DTensor on a device mesh)",
    "pathlib.WindowsPath": "paths pickled on Windows",
    "numpy.core.numeric._frombuffer": "numpy 1.x arrays pickled with protocol 5",
    "torch.nn.parameter.Parameter": "torch 0.4 checkpoints (Parameter(data, requires_grad) by REDUCE)",
    **{f"torch.cuda.{n}Storage": "legacy checkpoints of CUDA storages" for n in (
        "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "ComplexFloat",
        "ComplexDouble")},
    **{f"torch.{device}{n}Tensor": "torch < 0.4 tar checkpoints (legacy tensor type values)" for n in (
        "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool") for device in ("", "cuda.")},
    **{f"torch.jit._pickle.{n}": "torch.jit.save archives with typed list attributes" for n in (
        "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_complexlist",
        "build_tensor_from_id", "restore_type_tag")},
}
LIBRARY_PREFIXES = ("transformers.", "accelerate.", "lightning.", "lightning_fabric.", "pytorch_lightning.",
                    "omegaconf.", "sklearn.", "trl.", "sentence_transformers.")       # not installed: spelled as in their sources, partly faked above


def _globals_of(data: bytes) -> set[str]:
    from weightaudit.formats.pickle_vm import scan_stream

    results, _ = scan_stream(data)
    return {use.ref.qualname for result in results for use in result.globals}


def _torch_globals(obj, **kwargs) -> set[str]:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    raw = buffer.getvalue()
    if not raw.startswith(b"PK"):
        return _globals_of(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return set().union(*(_globals_of(archive.read(n)) for n in archive.namelist() if n.endswith(".pkl")))


def _more_real_globals() -> set[str]:
    import argparse
    import collections
    import datetime
    import decimal
    import fractions
    import pathlib
    import types
    import typing
    import uuid

    seen: set[str] = set()
    dtypes = [v for v in vars(torch).values() if isinstance(v, torch.dtype)]
    seen |= _torch_globals({str(d): d for d in dtypes})
    for dtype in dtypes:
        try:
            seen |= _torch_globals({"t": torch.zeros(2, dtype=dtype)})
        except (RuntimeError, TypeError, NotImplementedError, KeyError):
            continue
    seen |= _torch_globals({"q8": torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint32),
                            "qs": torch.quantize_per_channel(torch.ones(2, 2), torch.tensor([0.1, 0.1]),
                                                             torch.tensor([0, 0]), 0, torch.qint8),
                            "u": torch.UntypedStorage(4), "size": torch.Size([2]), "version": torch.__version__,
                            "uninit": torch.nn.parameter.UninitializedParameter(), "meta": torch.empty(2, device="meta"),
                            "p": torch.nn.Parameter(torch.ones(2)), "tensor_type": torch.Tensor,
                            "nested": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])})
    for scheme in (torch.per_tensor_symmetric, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams,
                   torch.per_tensor_affine, torch.per_channel_affine):
        seen |= _torch_globals({"scheme": scheme})
    for dtype in (torch.quint4x2, torch.quint2x4, torch.quint8):
        seen |= _torch_globals({"q": torch.quantize_per_tensor(torch.ones(4), 0.1, 0, dtype)})
    tagged = torch.ones(2)
    tagged.note = "x"
    param = torch.nn.Parameter(torch.ones(2))
    param.note = "x"
    seen |= _torch_globals({"tagged": tagged, "param": param})
    rngs = [np.random.RandomState(0), np.random.default_rng(0)] + [
        np.random.Generator(g(0)) for g in (np.random.PCG64DXSM, np.random.Philox, np.random.SFC64, np.random.MT19937)]
    values = {"rngs": rngs, "seed": np.random.SeedSequence(0), "ns": argparse.Namespace(a=1),
              "sn": types.SimpleNamespace(a=1), "paths": [pathlib.PurePosixPath("x"), pathlib.PureWindowsPath("x"),
                                                          pathlib.PosixPath("x")],
              "times": [datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc), datetime.date(2020, 1, 1),
                        datetime.time(1), datetime.timedelta(1)],
              "numbers": [decimal.Decimal("1.5"), fractions.Fraction(1, 3), 1j], "uuid": uuid.UUID(int=1),
              "any": typing.Any, "containers": [collections.OrderedDict(a=1), collections.Counter("ab"),
                                                collections.deque([1]), collections.defaultdict(list),
                                                bytearray(b"x"), {1}, frozenset({1}), slice(1, 2), range(3), b"x"],
              "types": [dict, list, tuple, int, float, str, bytes, bool, object]}
    for proto in range(6):
        seen |= _globals_of(pickle.dumps(values, protocol=proto))
    import joblib

    buffer = io.BytesIO()
    joblib.dump({"a": np.arange(3)}, buffer)
    return seen | _globals_of(buffer.getvalue())


def test_every_allowlist_entry_is_needed_by_a_real_file(benign_release: Path) -> None:
    from weightaudit.rules.pickle_allowlist import builtin_allowlist

    seen = _more_real_globals()
    for path in benign_release.iterdir():
        raw = path.read_bytes()
        if raw.startswith(b"PK"):
            with zipfile.ZipFile(path) as archive:
                seen |= set().union(*(_globals_of(archive.read(n)) for n in archive.namelist() if n.endswith(".pkl")))
        else:
            seen |= _globals_of(raw)
    unused = {name for name in builtin_allowlist().entries if name not in seen and name not in NEEDED_ELSEWHERE
              and not name.startswith(LIBRARY_PREFIXES)}
    assert unused == set()
    assert not {name for name in NEEDED_ELSEWHERE if name in seen}, "an entry is seen now: drop it from NEEDED_ELSEWHERE"


def test_protocol_0_and_1_records_are_medium_through_copyreg(tmp_path: Path, fake_libraries) -> None:
    from transformers.training_args import TrainingArguments

    for proto in (0, 1):
        path = tmp_path / f"args_p{proto}.pkl"
        path.write_bytes(pickle.dumps(TrainingArguments(output_dir="x"), protocol=proto))
        loaded = _load(path)
        assert loaded.verified and max(f.severity for f in loaded.findings) == Severity.MEDIUM, \
            [(f.rule_id, f.severity, f.message) for f in loaded.findings]
        assert any(f.rule_id == "WA418" and "copyreg._reconstructor" in f.message for f in loaded.findings)


def test_enum_called_with_more_than_its_value_is_high(tmp_path: Path) -> None:
    from tests.rules.pickle_builders import call, glob, pkl, text

    path = tmp_path / "enum.pkl"
    path.write_bytes(pkl(call(glob("transformers.trainer_utils", "IntervalStrategy"), text("Evil"), text("a b"))))
    found = {(f.rule_id, f.severity) for f in _load(path).findings}
    assert ("WA403", Severity.HIGH) in found
