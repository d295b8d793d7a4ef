"""Chat templates: find them in a release's side files and read them statically (never render them).

A chat template is a Jinja2 program shipped with the tokenizer (``tokenizer_config.json`` ``chat_template``,
``chat_template.jinja``, ``*.j2``...). Rendered outside a sandbox it can reach Python's internals through dunder
attributes — server-side template injection, e.g. CVE-2024-34359 in llama-cpp-python. Nothing here imports or
runs Jinja: the template text is split into its ``{{ }}`` / ``{% %}`` blocks and those are matched against what
an escape from the template language needs.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from weightaudit.safe_read import load_document

MAX_SIDE_FILE_BYTES = 5_000_000
OVERSIZED_TEMPLATE = 64 * 1024
RAW_TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2", ".template", ".tmpl")

_STRING = re.compile(r"'((?:\\.|[^'\\])*)'|\"((?:\\.|[^\"\\])*)\"", re.S)
_DUNDER = re.compile(r"__[A-Za-z_]\w*?__")
_NAME_MANGLED = re.compile(r"_TemplateReference__|_\w+__context")
_CONCAT = re.compile(r"""(?:'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")(?:\s*[~+]\s*(?:'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"))+""")
# Calls and names that only a template escaping into Python uses.
_EXECUTION_NAMES = re.compile(r"\b(getattr|setattr|delattr|eval|exec|__import__|popen|subprocess|import_module|"
                              r"b64decode)\s*\(")
# In string literals: a whole dunder name (a subscript or attr argument), an interpreter internal anywhere,
# or shell-reaching code. Prose such as '__bold__' inside a longer text is left alone.
_INTERNALS = re.compile(r"__(class|globals|builtins|subclasses|mro|bases?|init|import|getattribute|dict|code|"
                        r"reduce(_ex)?|loader|spec|func__|self__|module)__")
_PAYLOAD_TEXT = re.compile(r"\bos\.(system|popen|exec\w*|spawn\w*)\b|\bsubprocess\.")
_OBFUSCATION = re.compile(r"\b(chr|ord)\s*\(|\|\s*attr\b|\|\s*format\b.*_|\bformat\s*\(.*['\"]_['\"]")
# Jinja/Flask globals that are the usual first step of an escape (cycler.__init__.__globals__ ...).
_GADGET_ROOTS = re.compile(r"\b(cycler|joiner|lipsum|request|config|url_for|get_flashed_messages|self)\s*[.\[]")
# An escape sequence spelling '_' or '.' (\x5f, \u005f, \137, \N{LOW LINE} ...): only needed to hide a name.
_ESCAPED_NAME_CHAR = re.compile(r"\\(x5[fF]|x2[eE]|u005[fF]|u002[eE]|U0000005[fF]|U0000002[eE]|137|056|"
                                r"N\{LOW LINE\}|N\{FULL STOP\})")
_HUGE_RANGE = re.compile(r"\brange\s*\(\s*(\d{7,}|\d+\s*\*\*\s*\d+)")


@dataclass(frozen=True)
class Template:
    """One template: where it came from (file, key) and its text."""

    path: str
    key: str | None
    text: str

    @property
    def where(self) -> str:
        return self.key or "template"


@dataclass(frozen=True)
class TemplateIssue:
    """What a template does that a chat template should not. ``kind`` is execution, obfuscation or unusual."""

    kind: str
    reason: str
    snippet: str


def find_templates(root: Path, rel_paths: list[str]) -> Iterator[Template]:
    """Chat templates in these side files: JSON/YAML values under a key naming a template, and raw files."""
    for rel in rel_paths:
        path = root / rel
        lower = rel.lower()
        try:
            if not path.is_file() or path.stat().st_size > MAX_SIDE_FILE_BYTES:
                continue
            if lower.endswith(RAW_TEMPLATE_SUFFIXES) or Path(lower).name.startswith("chat_template"):
                if lower.endswith((".json", ".yaml", ".yml")):
                    yield from _structured(rel, path)
                else:
                    yield Template(rel, None, path.read_text(encoding="utf-8", errors="replace"))
            elif lower.endswith((".json", ".yaml", ".yml")):
                yield from _structured(rel, path)
        except OSError:
            continue


def _structured(rel: str, path: Path) -> Iterator[Template]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if "template" not in text:
        return
    try:
        data = load_document(text, as_json=rel.lower().endswith(".json"))   # depth/alias-safe (safe_read)
    except ValueError:   # invalid, too deep, an alias bomb: the pipeline reports refused files (WA133)
        return
    yield from _template_values(rel, data, "")


def _template_values(rel: str, data: Any, prefix: str, depth: int = 0) -> Iterator[Template]:
    """Strings under keys containing 'template' (also lists of {name, template}), at any depth up to 8."""
    if depth > 8:
        return
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if "template" in str(key).lower() and isinstance(value, str):
                yield Template(rel, name, value)
            elif "template" in str(key).lower() and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict) and isinstance(item.get("template"), str):
                        yield Template(rel, f"{name}[{item.get('name', i)}]", item["template"])
            else:
                yield from _template_values(rel, value, name, depth + 1)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _template_values(rel, item, f"{prefix}[{i}]", depth + 1)


def _decode(literal: str) -> str:
    """A Jinja string literal's value (Python escapes: \\x5f is '_')."""
    try:
        return codecs.decode(literal, "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return literal


def _literals(code: str) -> list[tuple[str, str]]:
    """(raw, decoded) of each string literal, plus the decoded value of every literal concatenation."""
    out = [(m.group(0), _decode(m.group(1) if m.group(1) is not None else m.group(2))) for m in _STRING.finditer(code)]
    for match in _CONCAT.finditer(code):
        joined = "".join(_decode(m.group(1) if m.group(1) is not None else m.group(2))
                         for m in _STRING.finditer(match.group(0)))
        out.append((match.group(0), joined))
    return out


_OPENERS = {"{{": "}}", "{%": "%}", "{#": "#}"}
MAX_ANALYSED = 1_000_000      # characters of one template that are analysed (bigger ones are flagged anyway)
MAX_BLOCK = 64 * 1024         # characters of one {{ }} / {% %} block that are analysed


def _blocks(text: str) -> Iterator[str]:
    """The code inside each ``{{ }}`` and ``{% %}`` block, comments skipped — one left-to-right pass with
    str.find (a regex with a lazy ``.*?`` is quadratic on an unclosed ``{{{{...``)."""
    pos = 0
    upcoming = {opener: text.find(opener) for opener in _OPENERS}   # next position of each opener (-1: none left)
    while True:
        for opener, at in upcoming.items():
            if 0 <= at < pos:   # recompute only the openers we have passed: each find moves forward
                upcoming[opener] = text.find(opener, pos)
        starts = [(at, opener) for opener, at in upcoming.items() if at >= 0]
        if not starts:
            return
        start, opener = min(starts)
        end = text.find(_OPENERS[opener], start + 2)
        if end < 0:
            return
        if opener != "{#":
            yield text[start + 2:min(end, start + 2 + MAX_BLOCK)]
        pos = end + 2


def analyse(template: Template) -> list[TemplateIssue]:
    """Every issue of a template, most severe first; empty for an ordinary chat template."""
    issues: list[TemplateIssue] = []
    text = template.text[:MAX_ANALYSED]
    for code in _blocks(text):
        issues.extend(_block_issues(code.strip()))
    if not issues and _unbalanced(text):
        issues.append(TemplateIssue("unusual", "unbalanced {{ }} / {% %} / {# #} delimiters: the template does not parse",
                                    _short(text)))
    if len(template.text) > OVERSIZED_TEMPLATE:
        issues.append(TemplateIssue("unusual", f"template is {len(template.text):,} characters long", ""))
    order = {"execution": 0, "obfuscation": 1, "unusual": 2}
    return sorted(issues, key=lambda issue: order[issue.kind])


def _block_issues(code: str) -> list[TemplateIssue]:
    bare = _STRING.sub("''", code)
    literals = _literals(code)
    found: list[TemplateIssue] = []
    if _DUNDER.search(bare) or _NAME_MANGLED.search(bare):
        found.append(TemplateIssue("execution", "reaches Python internals through a dunder attribute", _short(code)))
    elif any(_DUNDER.fullmatch(value.strip()) or _INTERNALS.search(value) or _PAYLOAD_TEXT.search(value)
             for _, value in literals):
        found.append(TemplateIssue("execution", "names Python internals in a string (subscript, attr or eval "
                                   "argument)", _short(code)))
    elif _EXECUTION_NAMES.search(bare):
        found.append(TemplateIssue("execution", "calls a Python built-in that runs or imports code", _short(code)))
    if _OBFUSCATION.search(code) or any(_ESCAPED_NAME_CHAR.search(raw) for raw, _ in literals):
        found.append(TemplateIssue("obfuscation", "builds names indirectly (chr/ord, attr filter, escapes)",
                                   _short(code)))
    if _GADGET_ROOTS.search(bare) and not found:
        found.append(TemplateIssue("obfuscation", "starts from a Jinja/Flask global used in template escapes",
                                   _short(code)))
    if _HUGE_RANGE.search(bare):
        found.append(TemplateIssue("unusual", "loops over a huge range (denial of service)", _short(code)))
    return found


def _unbalanced(text: str) -> bool:
    return any(text.count(opener) != text.count(closer) for opener, closer in _OPENERS.items())


def _short(text: str, width: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
