"""Pattern-only check for templates Jinja2's parser cannot read (syntax errors, nesting, size past the limit).

Linear in the template: the text is lower-cased and stripped of whitespace once, then searched for fixed
markers with ``str.find`` (no regular expression). Every finding says the template was checked by pattern only.
"""

from __future__ import annotations

from weightaudit.templates.issues import TemplateIssue

# (marker, what it reaches). Searched in the lower-cased text with all whitespace removed.
EXECUTION_MARKERS: tuple[tuple[str, str], ...] = tuple((m, m) for m in (
    "__class__", "__globals__", "__builtins__", "__subclasses__", "__mro__", "__base__", "__init__",
    "__import__", "__getattribute__", "__dict__", "__code__", "__reduce", "__self__", "__func__", "__loader__",
    "__spec__", "__getitem__", "__module__", "_templatereference__context", "os.system", "os.popen",
    "subprocess", "eval(", "exec(", "getattr(", "import_module", "f_globals", "gi_frame", "func_globals",
))
OBFUSCATION_MARKERS: tuple[tuple[str, str], ...] = (
    ("|attr(", "the attr filter"), ("chr(", "chr()"), ("\\x5f", "an escaped '_'"), ("\\u005f", "an escaped '_'"),
    ("\\137", "an escaped '_'"), ("\\n{lowline}", "an escaped '_'"), ("\\x2e", "an escaped '.'"),
    ("\\u002e", "an escaped '.'"), ("cycler.", "the cycler global"), ("joiner.", "the joiner global"),
    ("lipsum.", "the lipsum global"), ("request.", "Flask's request"), ("request[", "Flask's request"),
    ("config.", "Flask's config"), ("self.", "the template reference self"), ("b64decode", "base64 decoding"),
)


def pattern_issues(text: str) -> list[TemplateIssue]:
    """Issues from fixed markers; each names the marker and its line."""
    squeezed, lines = _squeeze(text)
    issues: list[TemplateIssue] = []
    for kind, markers, verb in (("execution", EXECUTION_MARKERS, "names Python internals"),
                                ("obfuscation", OBFUSCATION_MARKERS, "uses")):
        for marker, what in markers:
            at = squeezed.find(marker)
            if at >= 0:
                issues.append(TemplateIssue(kind, f"{verb}: {what} (checked by pattern only)", marker,
                                            lines[at] if at < len(lines) else None))
                break
    return issues


def _squeeze(text: str) -> tuple[str, list[int]]:
    """The lower-cased text without whitespace, and a line number for the first few hundred thousand positions
    (enough to place a marker; past that, no line is given)."""
    squeezed = "".join(text.lower().split())
    lines: list[int] = []
    if len(text) <= 1_000_000:
        line = 1
        for chunk in text.lower().split("\n"):
            lines.extend([line] * len("".join(chunk.split())))
            line += 1
    return squeezed, lines
