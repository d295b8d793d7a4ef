"""Where chat templates are in a release: JSON/YAML side files (``tokenizer_config.json`` ``chat_template``, as a
string or a list of ``{name, template}``) and raw template files (``chat_template.jinja``, ``*.j2`` ...).

Bounded and never silent: files up to the user's named limits (``limits.template_json_bytes``,
``template_yaml_bytes``, ``template_file_bytes``) are read whole (JSON parsed by the C parser, YAML by a
loader that refuses aliases); a bigger file that mentions "template" is reported as unread (``Unread``), found
by a streamed search in fixed-size chunks. A file that mentions "chat_template" but does not parse is checked by
pattern only. Only regular files are opened.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from weightaudit.limits import DEFAULT_LIMITS, Limits, describe
from weightaudit.safe_read import open_regular, read_text
from weightaudit.templates.issues import Template

# Read caps are the user's limits: template_json_bytes (tokenizer_config.json of real releases: up to a few MB of
# added tokens), template_yaml_bytes (YAML is parsed in pure Python, about 1 MB/s), template_file_bytes.
MAX_KEY_DEPTH = 8                    # templates are looked for this deep in a JSON/YAML document
STREAM_CHUNK = 1024 * 1024
RAW_TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2", ".template", ".tmpl")
STRUCTURED_SUFFIXES = (".json", ".yaml", ".yml")
# Files no runtime reads a chat template from, often tens of MB: the vocabulary (tokenizer.json, vocab.json; a
# vocabulary token "template" would otherwise make the whole file parse) and shard indexes.
NOT_TEMPLATE_FILES = ("tokenizer.json", "vocab.json")
NOT_TEMPLATE_SUFFIXES = (".index.json",)


@dataclass(frozen=True)
class Unread:
    """A side file that may hold a chat template and was not read (too big, not a regular file...)."""

    path: str
    reason: str


def find_templates(root: Path, rel_paths: list[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Template]:
    """The chat templates that could be read (see ``scan_sources`` for the unread files too)."""
    for found in scan_sources(root, rel_paths, limits):
        if isinstance(found, Template):
            yield found


def scan_sources(root: Path, rel_paths: list[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Template | Unread]:
    for rel in rel_paths:
        lower = rel.lower()
        if Path(lower).name in NOT_TEMPLATE_FILES or lower.endswith(NOT_TEMPLATE_SUFFIXES):
            continue
        raw = lower.endswith(RAW_TEMPLATE_SUFFIXES) or Path(lower).name.startswith("chat_template")
        structured = lower.endswith(STRUCTURED_SUFFIXES)
        if raw or structured:
            yield from _one_file(root / rel, rel, structured, limits)


def _one_file(path: Path, rel: str, structured: bool, limits: Limits) -> Iterator[Template | Unread]:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return
        limit = _limit(rel, structured)
        if info.st_size > getattr(limits, limit):
            if not structured or _mentions_template(path):     # a raw template file is a template throughout
                yield Unread(rel, f"{info.st_size:,} bytes, over {describe(limit, limits)} for reading chat "
                                  "templates: its templates were not checked")
            return
        text = read_text(path, getattr(limits, limit), truncate=True)   # regular files only, opened once
    except OSError as exc:
        yield Unread(rel, f"cannot be read ({exc.strerror or exc})")
        return
    if structured:
        yield from _structured(rel, text)
    else:
        yield Template(rel, None, text)


def _limit(rel: str, structured: bool) -> str:
    """The name of the limit that caps reading this file."""
    if not structured:
        return "template_file_bytes"
    return "template_json_bytes" if rel.lower().endswith(".json") else "template_yaml_bytes"


def _mentions_template(path: Path) -> bool:
    """Whether the file contains b"template", read in chunks (memory stays at one chunk)."""
    tail = b""
    with open_regular(path) as handle:
        while chunk := handle.read(STREAM_CHUNK):
            if b"template" in (tail + chunk).lower():
                return True
            tail = chunk[-16:]
    return False


def _structured(rel: str, text: str) -> Iterator[Template]:
    if "template" not in text:
        return
    import yaml   # loaded when a side file mentions a template, not at every start-up

    try:
        data = json.loads(text) if rel.lower().endswith(".json") else yaml.load(text, Loader=_no_alias_loader())
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        if "chat_template" in text:
            yield Template(rel, "(whole file)", text, unparsed=f"the file itself does not parse ({_brief(exc)})")
        return
    yield from _template_values(rel, data, "", 0)


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else type(exc).__name__


def _template_values(rel: str, data: Any, prefix: str, depth: int) -> Iterator[Template]:
    """Strings under keys containing 'template' (also lists of {name, template}), down to MAX_KEY_DEPTH."""
    if depth > MAX_KEY_DEPTH:
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


@functools.cache
def _no_alias_loader() -> type:
    """The loader class, built on first use (PyYAML is imported only when a side file needs it)."""
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        """A safe YAML loader that refuses aliases (``*a``): nested aliases expand exponentially."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases are not accepted in side files",
                                                  event.start_mark)
            return super().compose_node(parent, index)
    return _NoAliasLoader
