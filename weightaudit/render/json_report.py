"""JSON output: the report dict of report.py, written with ``json`` (never through rich)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator, Sequence

from weightaudit import __version__
from weightaudit.collector import fewer_collections
from weightaudit.render.json_tensors import tensor_texts
from weightaudit.report import SCHEMA_VERSION, Report, combined_verdict, to_dict

if TYPE_CHECKING:
    from weightaudit.render import RenderOptions


# Above this many tensors, compact JSON through the C encoder: the indenting encoder is pure Python (5x time, 2x
# memory). Measured at load 1.2: a 20,000-tensor audit report with statistics (19.5 MB) took 0.87 s to indent
# against ~0.2 s compact, half of that whole audit; 5,000 tensors keep the indented cost near 0.2 s. Which
# encoder runs depends only on the document, so a given report always has the same bytes.
INDENT_MAX_TENSORS = 5_000


def _dumps(document: dict) -> str:
    tensors = len(document.get("tensors", ())) + sum(len(r.get("tensors", ())) for r in document.get("reports", ()))
    indent = 2 if tensors <= INDENT_MAX_TENSORS else None
    return json.dumps(document, indent=indent, sort_keys=False, ensure_ascii=False, allow_nan=False)


def render(report: Report, options: "RenderOptions") -> str:
    with fewer_collections():   # a dict per tensor and its stats (see weightaudit.collector)
        if len(report.tensors) <= INDENT_MAX_TENSORS:
            return _dumps(to_dict(report))
        return _compact(to_dict(report, tensors=False), report)


def render_many(reports: Sequence[Report], options: "RenderOptions") -> str:
    """Several releases: ``{"reports": [...]}`` with the combined verdict beside them."""
    with fewer_collections():
        document = {
            "schema_version": SCHEMA_VERSION, "tool": {"name": "weightaudit", "version": __version__},
            "command": reports[0].command, "target": " ".join(r.target for r in reports),
            "verdict": combined_verdict(reports).value,
        }
        if sum(len(r.tensors) for r in reports) <= INDENT_MAX_TENSORS:
            return _dumps({**document, "reports": [to_dict(r) for r in reports]})
        each = ", ".join(_compact(to_dict(r, tensors=False), r) for r in reports)
        return _compact(document)[:-1] + (", " if document else "") + '"reports": [' + each + "]}"


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)   # compact: the C encoder, ", " and ": "


def _compact(document: dict, report: Report | None = None) -> str:
    """``json.dumps(document)`` (compact) with the report's tensors written one by one (``json_tensors``) where
    the "tensors" entry is None: the same bytes, without a dict per tensor held for all 100,000 tensors at once,
    and joined once (each intermediate copy of a 57 MB report is 57 MB more peak memory)."""
    return "".join(_fragments(document, report))


def _fragments(document: dict, report: Report | None) -> Iterator[str]:
    yield "{"
    for number, (key, value) in enumerate(document.items()):
        yield f"{', ' if number else ''}{_ENCODER.encode(key)}: "
        if key == "tensors" and value is None and report is not None:
            yield "["
            for number_tensor, text in enumerate(tensor_texts(report.tensors, report.stats)):
                yield (", " if number_tensor else "") + text
            yield "]"
        else:
            yield _ENCODER.encode(value)
    yield "}"


