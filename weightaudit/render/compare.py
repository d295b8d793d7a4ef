"""Text and Markdown for ``diff``, ``hash`` and ``verify`` (their JSON is each report's ``to_dict``).

Text is pre-wrapped to ``options.width`` (no line longer, long names folded, nothing cut); styled only when
``options.styled``. The last line is the verdict and agrees with the exit code.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from typing import TYPE_CHECKING, Any, Iterable

from weightaudit.render.common import fmt_float, human_count, shape_text

if TYPE_CHECKING:
    from weightaudit.compare import DiffReport, TensorDiff
    from weightaudit.manifest import Manifest, VerifyReport
    from weightaudit.render import RenderOptions

STATUS_WIDTH = 10
TEXT_TENSOR_LIMIT = 40     # text lists this many differing tensors unless --all-tensors (JSON lists every one)
_STYLE = {"same": "bold green", "match": "bold green", "different": "bold red", "mismatch": "bold red",
          "incomplete": "bold yellow", "ok": "bold green"}


def render_json(report: Any) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def _wrap(text: str, width: int, indent: str = "", first: str | None = None) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent if first is None else first,
                         subsequent_indent=indent, break_on_hyphens=False, break_long_words=True) or [""]


def _finish(lines: list[str], verdict_text: str, verdict: str, options: "RenderOptions") -> str:
    """Join the lines; the verdict last, styled when allowed."""
    last = _wrap(verdict_text, options.width, indent="  ")
    if not options.styled:
        return "\n".join(lines + last) + "\n"
    from rich.text import Text

    from weightaudit.render.text import make_console

    buffer = io.StringIO()
    console = make_console(buffer, options)
    for line in lines:
        console.print(Text(line), overflow="fold")
    for line in last:
        console.print(Text(line, style=_STYLE.get(verdict, "bold")), overflow="fold")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------------------------------------


def _side_line(label: str, side: dict[str, Any]) -> str:
    formats = sorted({f["format"] for f in side["files"]})
    return (f"{label}  {side['target']}  ({side['tensor_count']} tensors, {human_count(side['parameter_count'])} "
            f"parameters; {', '.join(formats) or 'no weight files'})")


def _metrics(t: "TensorDiff") -> str:
    v = t.values
    if v is None:
        return ""
    text = f"max|a-b| {fmt_float(v.max_abs_diff)}  rel L2 {fmt_float(v.rel_l2)}  cosine {fmt_float(v.cosine)}"
    if v.differing_elements:
        text += f"  ({v.differing_elements:,} elements differ)"
    return text


def _detail(t: "TensorDiff") -> str:
    a, b = t.a, t.b
    status = t.status.value
    if status == "renamed":
        return f"from {t.renamed_from}"
    if status == "retyped":
        return f"{a.dtype} -> {b.dtype}  {_metrics(t)}".rstrip()
    if status == "reshaped":
        return f"{shape_text(a.shape)} -> {shape_text(b.shape)}" + (f" ({t.note})" if t.note else "")
    if status in ("added", "removed"):
        info = b if status == "added" else a
        return f"{info.dtype} {shape_text(info.shape)}  ({info.file})"
    return _metrics(t) or (t.note or "")


def _tensor_lines(t: "TensorDiff", width: int) -> list[str]:
    head = _wrap(t.name, width, indent=" " * (STATUS_WIDTH + 2), first=f"  {t.status.value:<{STATUS_WIDTH}}")
    detail = ("within tolerance; " if t.within_tolerance else "") + _detail(t)
    return head + (_wrap(detail, width, indent=" " * (STATUS_WIDTH + 4)) if detail else [])


def _most_telling(touched: list["TensorDiff"], limit: int) -> list["TensorDiff"]:
    """At most ``limit`` tensors: structural differences first (by name), then the largest value changes."""
    if len(touched) <= limit:
        return touched
    structural = [t for t in touched if t.status.value != "changed"]
    changed = sorted((t for t in touched if t.status.value == "changed"),
                     key=lambda t: -(t.values.rel_l2 if t.values and t.values.rel_l2 is not None else math.inf))
    return (structural + changed)[:limit]


def render_diff_text(report: "DiffReport", options: "RenderOptions") -> str:
    width = options.width
    data = report.to_dict()
    lines = [line for label in ("a", "b")
             for line in _wrap(_side_line(label.upper(), data[label]), width, indent="     ", first="  ")]
    counts = ", ".join(f"{n} {status}" for status, n in data["summary"].items())
    lines += _wrap(f"Summary: {counts}", width, indent="  ")
    if report.tolerance.given:
        lines += _wrap(f"Tolerance: {_tolerance_text(report)} (differences within it do not count)", width,
                       indent="  ")
    touched = [t for t in report.tensors if t.status.value != "identical"]
    if touched:
        shown = touched if options.all_tensors else _most_telling(touched, TEXT_TENSOR_LIMIT)
        lines += ["", f"Tensors that differ ({len(touched)})"]
        for t in shown:
            lines += _tensor_lines(t, width)
        if len(shown) < len(touched):
            lines += _wrap(f"... and {len(touched) - len(shown)} more (--all-tensors lists every one; the JSON "
                           "always does)", width, indent="  ")
    layers = data["layers"]
    if layers:
        lines += [""] + _wrap("Layers touched: " + "; ".join(_layer_text(layer) for layer in layers), width,
                              indent="  ")
    lines += [line for note in report.notes for line in _wrap(f"note: {note}", width, indent="  ")]
    return _finish(lines, _diff_verdict_line(report), report.verdict.value, options)


def _tolerance_text(report: "DiffReport") -> str:
    tol = report.tolerance
    parts = ([f"max|a-b| <= {tol.absolute:g}"] if tol.absolute is not None else []) + \
        ([f"rel L2 <= {tol.relative:g}"] if tol.relative is not None else [])
    return " and ".join(parts)


def _layer_text(layer: dict[str, Any]) -> str:
    statuses = ", ".join(f"{n} {s}" for s, n in layer["statuses"].items())
    return f"{layer['layer']} ({statuses} of {layer['tensors']})"


def _diff_verdict_line(report: "DiffReport") -> str:
    code = int(report.exit_code)
    verdict = report.verdict.value
    if verdict == "different":
        return f"DIFFERENT (exit {code}): {len(report.differing)} tensor(s) differ"
    if verdict == "incomplete":
        return f"INCOMPLETE (exit {code}): {len(report.problems)} thing(s) could not be compared (see notes)"
    return f"SAME (exit {code}): {len(report.tensors)} tensor(s) match" + \
        (" within tolerance" if any(t.within_tolerance for t in report.tensors) else "")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_diff_markdown(report: "DiffReport", options: "RenderOptions") -> str:
    data = report.to_dict()
    out = ["# weightaudit diff", "", "| | target | tensors | parameters |", "|---|---|---:|---:|"]
    for label in ("a", "b"):
        side = data[label]
        out.append(f"| {label.upper()} | `{_cell(side['target'])}` | {side['tensor_count']} | "
                   f"{human_count(side['parameter_count'])} |")
    out += ["", f"**{_diff_verdict_line(report)}**", "",
            "| " + " | ".join(data["summary"]) + " |", "|" + "---:|" * len(data["summary"]),
            "| " + " | ".join(str(n) for n in data["summary"].values()) + " |"]
    touched = [t for t in report.tensors if t.status.value != "identical"]
    if touched:
        out += ["", "## Tensors that differ", "", "| tensor | status | max abs diff | rel L2 | cosine | detail |",
                "|---|---|---:|---:|---:|---|"]
        for t in touched:
            v = t.values
            metrics = [fmt_float(x) for x in (v.max_abs_diff, v.rel_l2, v.cosine)] if v else ["-"] * 3
            status = t.status.value + (" (within tolerance)" if t.within_tolerance else "")
            detail = "" if t.status.value == "changed" else _detail(t).split("  max|a-b|")[0]
            out.append(f"| `{_cell(t.name)}` | {status} | " + " | ".join(metrics) + f" | {_cell(detail)} |")
    if data["layers"]:
        out += ["", "## Layers touched", ""] + [f"- {_cell(_layer_text(layer))}" for layer in data["layers"]]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {_cell(note)}" for note in report.notes]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------
# hash / verify
# ---------------------------------------------------------------------------------------------------------


def render_manifest_text(manifest: "Manifest", options: "RenderOptions") -> str:
    """Like sha256sum: one ``digest  path`` line per file, then per tensor (``file:name``)."""
    lines = [f"{e.sha256 or '(unreadable)':<64}  {e.path}" for e in manifest.files]
    lines += [f"{t.sha256 or '(unhashable)':<64}  {t.file}:{t.name}" for t in manifest.tensors]
    lines = [line for text in lines for line in _wrap(text, options.width, indent="  ")]
    lines += [line for note in manifest.notes for line in _wrap(f"note: {note}", options.width, indent="  ")]
    code = int(manifest.exit_code)
    verdict = (f"OK (exit {code}): hashed {len(manifest.files)} file(s) and {len(manifest.tensors)} tensor(s)"
               if manifest.complete else f"INCOMPLETE (exit {code}): {len(manifest.notes)} item(s) not hashed")
    return _finish(lines, verdict, "ok" if manifest.complete else "incomplete", options)


def _problem_lines(report: "VerifyReport", width: int) -> Iterable[str]:
    for m in report.problems:
        where = f"  ({m.file})" if m.file else ""
        yield from _wrap(f"{m.kind} {m.name}{where}", width, indent=" " * (STATUS_WIDTH + 2),
                         first=f"  {m.check.value:<{STATUS_WIDTH}}")


def _verify_verdict_line(report: "VerifyReport") -> str:
    code = int(report.exit_code)
    problems = report.problems
    if report.verdict == "mismatch":
        return f"MISMATCH (exit {code}): {len(problems)} file(s)/tensor(s) differ from the manifest"
    if report.verdict == "incomplete":
        return f"INCOMPLETE (exit {code}): {len(problems) + len(report.notes)} item(s) could not be checked"
    return f"MATCH (exit {code}): every file and tensor matches the manifest"


def render_verify_text(report: "VerifyReport", options: "RenderOptions") -> str:
    width = options.width
    summary = report.summary()
    lines = _wrap(f"verify {report.target} against {report.manifest}", width, indent="  ")
    for kind in ("files", "tensors"):
        counts = ", ".join(f"{n} {c}" for c, n in summary[kind].items() if n or c == "ok")
        lines += _wrap(f"{kind.capitalize()}: {counts}", width, indent="  ")
    lines += list(_problem_lines(report, width))
    lines += [line for note in report.notes for line in _wrap(f"note: {note}", width, indent="  ")]
    return _finish(lines, _verify_verdict_line(report), report.verdict, options)


def render_verify_markdown(report: "VerifyReport", options: "RenderOptions") -> str:
    out = ["# weightaudit verify", "", f"`{_cell(report.target)}` against `{_cell(report.manifest)}`", "",
           f"**{_verify_verdict_line(report)}**", "", "| | ok | changed | missing | extra | unchecked |",
           "|---|---:|---:|---:|---:|---:|"]
    for kind, counts in report.summary().items():
        out.append(f"| {kind} | " + " | ".join(str(n) for n in counts.values()) + " |")
    if report.problems:
        out += ["", "| status | kind | name | file |", "|---|---|---|---|"]
        out += [f"| {m.check.value} | {m.kind} | `{_cell(m.name)}` | {_cell(m.file or '')} |" for m in report.problems]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {_cell(note)}" for note in report.notes]
    return "\n".join(out) + "\n"


RENDERERS = {
    ("diff", "text"): render_diff_text, ("diff", "markdown"): render_diff_markdown,
    ("hash", "text"): render_manifest_text,
    ("verify", "text"): render_verify_text, ("verify", "markdown"): render_verify_markdown,
}


def render(report: Any, fmt: str, options: "RenderOptions") -> str:
    """A diff, manifest or verify report in ``fmt`` (json for every command)."""
    if fmt == "json":
        return render_json(report)
    return RENDERERS[(report.command, fmt)](report, options)
