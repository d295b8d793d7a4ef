"""The JSON form of a tensor's statistics: strict JSON whatever the values (NaN/Inf as strings, None as null)."""

from __future__ import annotations

import json
import math

import pytest

from weightaudit.model import TensorStats
from weightaudit.report import stats_dict

BASE = dict(count=4, min=-1.5, max=2.0, mean=0.25, std=1.0, zeros=0, nan=0, pos_inf=1, neg_inf=2, fp16_overflow=0,
            max_abs=2.0, max_abs_index=3, fingerprint="wa1:00", histogram=(1, 2), histogram_range=(-1.5, 2.0))


@pytest.mark.parametrize("changes, expected", [
    ({}, {"min": -1.5, "max": 2.0, "mean": 0.25, "std": 1.0, "max_abs": 2.0}),
    ({"std": math.inf, "mean": math.nan}, {"std": "inf", "mean": "nan", "min": -1.5}),
    ({"min": None, "max": None, "mean": None, "std": None, "max_abs": None, "max_abs_index": None},
     {"min": None, "std": None, "max_abs": None}),
    ({"min": -1e308, "max": 1e308, "max_abs": 1e308, "std": 1e308}, {"min": -1e308, "std": 1e308}),   # sum overflows
    ({"min": -math.inf}, {"min": "-inf", "max": 2.0}),
])
def test_stats_values_are_strict_json(changes: dict, expected: dict) -> None:
    found = stats_dict(TensorStats(**{**BASE, **changes}))
    assert {key: found[key] for key in expected} == expected
    assert found["inf"] == 3 and found["histogram"] == [1, 2]
    json.dumps(found, allow_nan=False)


def test_streamed_compact_json_has_the_bytes_of_one_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large reports are written tensor chunk by tensor chunk; the text is what json.dumps of the whole dict gives."""
    from tests.conftest import FIXTURES
    from weightaudit import api
    from weightaudit.render import json_report
    from weightaudit.report import to_dict

    reports = [api.audit([str(FIXTURES / name)], fail_on="high") for name in ("tiny-bert", "defects", "torch")]
    monkeypatch.setattr(json_report, "INDENT_MAX_TENSORS", 0)
    for report in reports:
        assert len(report.tensors) > 2
        expected = json.dumps(to_dict(report), ensure_ascii=False, allow_nan=False)
        assert json_report.render(report, None) == expected
    from weightaudit import __version__
    from weightaudit.report import SCHEMA_VERSION, combined_verdict

    document = {"schema_version": SCHEMA_VERSION, "tool": {"name": "weightaudit", "version": __version__},
                "command": "audit", "target": " ".join(r.target for r in reports),
                "verdict": combined_verdict(reports).value, "reports": [to_dict(r) for r in reports]}
    assert json_report.render_many(reports, None) == json.dumps(document, ensure_ascii=False, allow_nan=False)


@pytest.mark.parametrize("changes", [{}, {"min": 1, "max": 2}, {"zeros": True}, {"std": math.nan}, {"min": None},
                                     {"histogram": ()}, {"max_abs_index": None}])
@pytest.mark.parametrize("tensor_changes", [{}, {"storage": "0"}, {"strides": (1,)}, {"shape": ()},
                                            {"name": 'q"\\\u00e9\n'}, {"data_offsets": None}])
def test_tensor_text_is_what_json_writes(changes: dict, tensor_changes: dict) -> None:
    from weightaudit.model import TensorInfo
    from weightaudit.render.json_tensors import tensor_texts
    from weightaudit.report import tensor_dict

    tensor = TensorInfo(**{"name": "w", "dtype": "F32", "shape": (4,), "file": "m.safetensors",
                           "data_offsets": (8, 24), **tensor_changes})
    stats = TensorStats(**{**BASE, **changes})
    for found in (stats, None):
        text, = tensor_texts([tensor], {tensor.key: found} if found else {})
        assert text == json.dumps(tensor_dict(tensor, found), ensure_ascii=False, allow_nan=False)
