"""joblib files read as joblib.load reads them: arrays after their wrapper's BUILD, compressed forms, attacks.

Every file is built here: benign ones by joblib.dump itself, attacks by hand from joblib's documented layout
(numpy_pickle.py: the wrapper is pickled, then its array bytes follow in the stream). Nothing is ever loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from weightaudit.formats import LoadOptions, read_probe, sniff
from weightaudit.formats.base import tensor_view
from weightaudit.model import FileStatus, LoadedFile, Severity

joblib = pytest.importorskip("joblib")
from joblib.numpy_pickle import NumpyArrayWrapper  # noqa: E402


class FittedEstimator:
    """Looks like a fitted scikit-learn estimator: plain attributes holding numpy arrays."""

    def __init__(self) -> None:
        self.coef_ = np.arange(6, dtype=np.float64).reshape(2, 3)
        self.intercept_ = np.zeros(2, dtype=np.float32)
        self.classes_ = np.array(["a", "b"], dtype=object)
        self.n_features_in_ = 3


def load(path: Path) -> tuple[str, LoadedFile]:
    loader = sniff(read_probe(path))
    assert loader is not None, path
    return loader.name, loader.load(path, path.name, LoadOptions())


def rules(loaded: LoadedFile) -> dict[str, Severity]:
    return {f.rule_id: f.severity for f in loaded.findings}


def _wrapper_pickle(dtype: np.dtype, shape: tuple[int, ...], subclass: type = np.ndarray, aligned: bool = False,
                    protocol: int = 2) -> bytes:
    """A pickle of one NumpyArrayWrapper without its final STOP: the array bytes go right after its BUILD."""
    kwargs = {} if aligned else {"numpy_array_alignment_bytes": None}
    wrapper = NumpyArrayWrapper(subclass, shape, "C", dtype, allow_mmap=False, **kwargs)
    data = pickle.dumps(wrapper, protocol=protocol)
    assert data.endswith(b"b.")
    return data[:-1]


def test_benign_dict_of_arrays_is_verified_with_its_tensors(tmp_path: Path) -> None:
    arrays = {"coef": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.ones(4, dtype=np.float16),
              "counts": np.arange(5, dtype=np.int64), "fortran": np.asfortranarray(np.ones((2, 3)))}
    path = tmp_path / "arrays.joblib"
    joblib.dump(arrays, path)
    fmt, loaded = load(path)
    assert fmt == "pickle" and loaded.status is FileStatus.OK and loaded.verified, loaded.reason
    assert max((f.severity for f in loaded.findings), default=Severity.INFO) <= Severity.LOW
    tensors = {t.name: t for t in loaded.tensors}
    assert sorted(tensors) == ["bias", "coef", "counts", "fortran"]
    for name in ("coef", "bias", "counts"):
        assert tensors[name].shape == arrays[name].shape
        assert bytes(tensor_view(path, tensors[name])) == arrays[name].tobytes()
    assert loaded.facts["joblib_arrays"] == 4


def test_benign_estimator_like_object_is_not_critical(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(FittedEstimator(), path)
    _, loaded = load(path)
    assert loaded.status is FileStatus.OK and loaded.verified, loaded.reason
    found = rules(loaded)
    assert "WA401" not in found and max(found.values()) < Severity.CRITICAL
    high = [f.message for f in loaded.findings if f.severity >= Severity.HIGH]
    assert len(high) == 1 and "FittedEstimator()" in high[0]     # the user's own class, nothing from the arrays
    assert found["WA416"] is Severity.LOW                       # classes_ is an object array: its pickle is scanned
    assert {t.name for t in loaded.tensors} == {"coef_", "intercept_"}


@pytest.mark.parametrize("compress", [0, 3])
def test_object_arrays_of_a_fitted_pipeline_are_not_high(tmp_path: Path, compress: int) -> None:
    """scikit-learn keeps classes_ and feature_names_in_ as object arrays. pickle.load (not joblib.load) would run
    their inner pickles with the outer memo and stop at an import of a module named 'NumpyArrayWrapper': not a call."""
    state = {"classes_": np.array(["cat", "dog"], dtype=object), "coef_": np.ones((2, 3)),
             "feature_names_in_": np.array(["a", "b", "c"], dtype=object)}
    path = tmp_path / "pipeline.joblib"
    joblib.dump(state, path, compress=compress)
    _, loaded = load(path)
    assert loaded.status is FileStatus.OK and loaded.verified, loaded.reason
    found = rules(loaded)
    assert max(found.values()) <= Severity.LOW, found
    assert found["WA416"] is Severity.LOW


def test_plain_reading_payload_before_an_unknown_module_is_still_reported(tmp_path: Path) -> None:
    """The plain pickle.load reading stops only at a module nothing could import, not earlier."""
    payload = b"cos\nsystem\n(S'id'\ntRcNoSuchTopLevelModule\nf\n)R"
    path = tmp_path / "polyglot2.pkl"
    path.write_bytes(_wrapper_pickle(np.dtype("u1"), (len(payload),)) + payload + b".")
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL
    assert any("pickle.load" in (f.where or "") and "os.system" in f.message for f in loaded.findings)


def test_object_array_pickle_that_runs_code_is_critical(tmp_path: Path) -> None:
    payload = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
    path = tmp_path / "evil.joblib"
    path.write_bytes(_wrapper_pickle(np.dtype(object), (1,)) + payload + b".")
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL
    assert any("os.system" in f.message for f in loaded.findings if f.rule_id == "WA401")


def test_array_bytes_that_are_a_payload_for_pickle_load_are_reported(tmp_path: Path) -> None:
    """joblib skips the 'array'; pickle.load runs it as opcodes. Both readings are checked."""
    payload = b"cos\nsystem\n(S'id'\ntR"
    path = tmp_path / "polyglot.pkl"
    path.write_bytes(_wrapper_pickle(np.dtype("u1"), (len(payload),)) + payload + b".")
    _, loaded = load(path)
    assert rules(loaded)["WA401"] is Severity.CRITICAL
    assert any("pickle.load" in (f.where or "") for f in loaded.findings if f.rule_id == "WA401")


def test_wrapper_naming_another_array_class_is_high(tmp_path: Path) -> None:
    path = tmp_path / "subclass.joblib"
    path.write_bytes(_wrapper_pickle(np.dtype("f4"), (2,), subclass=np.recarray) + b"\x00" * 8 + b".")
    _, loaded = load(path)
    assert rules(loaded)["WA429"] is Severity.HIGH


def test_array_past_the_end_of_the_file_is_not_verified(tmp_path: Path) -> None:
    path = tmp_path / "short.joblib"
    path.write_bytes(_wrapper_pickle(np.dtype("f8"), (1000,)) + b"\x00" * 16)
    _, loaded = load(path)
    assert loaded.status is FileStatus.ERROR and not loaded.verified


def test_wrapper_inside_a_frame_is_not_verified(tmp_path: Path) -> None:
    """joblib commits the frame before the array; a BUILD mid-frame makes joblib read from after the frame."""
    path = tmp_path / "framed.joblib"
    path.write_bytes(_wrapper_pickle(np.dtype("u1"), (4,), protocol=4) + b"\x00" * 4 + b".")
    _, loaded = load(path)
    assert not loaded.verified and "frame" in (loaded.reason or "")


def test_aligned_arrays_skip_joblibs_padding(tmp_path: Path) -> None:
    path = tmp_path / "aligned.joblib"
    head = _wrapper_pickle(np.dtype("<i4"), (3,), aligned=True)
    padding = 16 - (len(head) + 1) % 16
    body = np.array([7, 8, 9], dtype="<i4").tobytes()
    path.write_bytes(head + bytes([padding]) + b"\xff" * padding + body + b".")
    _, loaded = load(path)
    assert loaded.verified, loaded.reason
    (tensor,) = loaded.tensors
    assert bytes(tensor_view(path, tensor)) == body


@pytest.mark.parametrize("compress", ["zlib", "gzip", "bz2", "lzma", "xz"])
def test_compressed_joblib_is_inflated_and_read(tmp_path: Path, compress: str) -> None:
    path = tmp_path / f"model.{compress}.joblib"
    joblib.dump({"w": np.arange(10, dtype=np.float32)}, path, compress=(compress, 3))
    fmt, loaded = load(path)
    assert fmt == "compressed-pickle" and loaded.verified, loaded.reason
    assert [t.name for t in loaded.tensors] == ["w"]
    assert rules(loaded) == {"WA428": Severity.LOW, "WA410": Severity.INFO}
    loader = sniff(read_probe(path))
    data = b"".join(bytes(c) for c in loader.iter_chunks(path, loaded.tensors[0], 7))
    assert data == np.arange(10, dtype=np.float32).tobytes()


def test_old_joblib_wrapper_naming_a_file_outside_the_folder_is_flagged(tmp_path: Path) -> None:
    from joblib.numpy_pickle_compat import NDArrayWrapper

    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"w": NDArrayWrapper("../../outside.npy", np.ndarray)}, protocol=2))
    _, loaded = load(path)
    found = rules(loaded)
    assert found["WA159"] is Severity.HIGH and max(found.values()) >= Severity.HIGH
