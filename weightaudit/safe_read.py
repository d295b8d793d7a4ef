"""Reading files a release ships, safely: only regular files, a size cap, and JSON/YAML parsed depth- and
alias-safe. Every side-file reader (config.json, shard indexes, tokenizer configs, model-card front matter,
policy files) goes through here.

- ``open_regular`` never opens a FIFO, socket or device (a FIFO named ``model.bin`` would block a reader forever):
  ``os.stat`` first, then ``open`` with ``O_NONBLOCK`` and ``fstat`` again to close the race.
- ``load_json`` checks the nesting depth in one linear pass over the text before ``json.loads`` (which recurses),
  and refuses integers too long for ``int()`` (Python's digit limit raises ``ValueError`` deep inside).
- ``load_yaml`` walks the YAML event stream first (PyYAML's parser is iterative): depth, alias count, and the
  number of values once aliases are expanded ("billion laughs": a 1 KB document of nested aliases expanding to
  10^9 values) are bounded, and an alias inside its own anchor (a cyclic document) is refused. Only then is the
  document composed with ``SafeLoader``.

Every refusal is an ``UnsafeDocument`` (a ``ValueError``) with a one-line message; callers turn it into a
finding naming the file and go on.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from weightaudit.limits import DEFAULT_LIMITS, Limits

MAX_INT_DIGITS = 100      # no config value, shape or offset needs more; int() refuses > 4300 digits anyway
BIG_BRACKET_STRING = 1 << 20


class UnsafeDocument(ValueError):
    """A side file refused before or while parsing: too big, too deep, an alias bomb, not a regular file."""


class NotRegularFile(UnsafeDocument, OSError):
    """The path is a FIFO, socket, device or folder: never opened for reading."""


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def is_regular(path: Path | str) -> bool:
    """True when the path (links followed) is a regular file; False for anything else or an error (ELOOP)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_regular(path: Path | str):
    """Open a regular file for binary reading; raises NotRegularFile for anything else (never blocks)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(f"{_file_kind(mode)}, not a regular file; not opened")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{_file_kind(mode)}, not a regular file; not read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path | str, max_bytes: int, truncate: bool = False) -> bytes:
    """At most ``max_bytes`` of a regular file. Bigger: UnsafeDocument, or the first ``max_bytes`` if ``truncate``."""
    with open_regular(path) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        if truncate:
            return data[:max_bytes]
        raise UnsafeDocument(f"larger than {max_bytes:,} bytes (limits.side_file_bytes); not parsed")
    return data


def read_text(path: Path | str, max_bytes: int = DEFAULT_LIMITS.side_file_bytes, truncate: bool = False) -> str:
    """A regular file as UTF-8 text (bad bytes replaced), capped like ``read_bytes``."""
    return read_bytes(path, max_bytes, truncate).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------------------------
# JSON

# A JSON string, possessive so no input makes it backtrack; an unterminated string runs to the end of the text.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\[\s\S])*+(?:"|\\?\Z)')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """True when arrays/objects nest deeper than ``max_depth`` (strings skipped). Linear in the text."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if len(brackets) <= 2 * max_depth:
        return _max_depth_small(brackets) > max_depth
    if len(brackets) < BIG_BRACKET_STRING:
        return _max_depth_small(brackets, stop_above=max_depth) > max_depth
    return _max_depth_large(brackets) > max_depth


def _max_depth_small(brackets: str, stop_above: int | None = None) -> int:
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        else:
            depth -= 1
    return deepest


def _max_depth_large(brackets: str) -> int:
    import numpy as np

    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    deepest, carry, step = 0, 0, 1 << 22
    for start in range(0, len(codes), step):
        part = codes[start:start + step]
        levels = np.cumsum(np.where((part == ord("[")) | (part == ord("{")), 1, -1), dtype=np.int64) + carry
        deepest = max(deepest, int(levels.max()))
        carry = int(levels[-1])
    return deepest


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise UnsafeDocument(f"an integer with {len(digits):,} digits (more than {MAX_INT_DIGITS})")
    return int(digits)


def check_json_depth(text: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise UnsafeDocument when the JSON text nests deeper than ``limits.nesting_depth``."""
    if json_depth_exceeds(text, limits.nesting_depth):
        raise UnsafeDocument(f"nested more than {limits.nesting_depth} levels deep (limits.nesting_depth)")


def load_json(text: str, limits: Limits = DEFAULT_LIMITS, **kwargs: Any) -> Any:
    """``json.loads`` that cannot recurse out of the stack or choke on huge integers.

    Raises UnsafeDocument (too deep, huge integer) or json.JSONDecodeError (invalid JSON); both are ValueError.
    """
    check_json_depth(text, limits)
    kwargs.setdefault("parse_int", _bounded_int)
    return json.loads(text, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# YAML

def _loader() -> type:
    """libyaml's C SafeLoader when present, else PyYAML's own. PyYAML is imported here, on the first YAML
    document, not at start-up (a release without YAML side files never needs it)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def check_yaml_events(text: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """One pass over the event stream: depth, aliases, expanded size, cycles. Raises UnsafeDocument (or
    yaml.YAMLError for YAML that is merely invalid)."""
    import yaml

    try:
        _check_events(yaml.parse(text, Loader=_loader()), limits)
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):   # libyaml's own cap (1,000 flow levels)
            raise UnsafeDocument(f"nested more than {limits.nesting_depth} levels deep (limits.nesting_depth)") from None
        raise


def _check_events(events: Any, limits: Limits) -> None:
    import yaml

    open_sizes: list[int] = []          # values counted so far in each open collection
    open_anchors: list[str | None] = []
    anchor_sizes: dict[str, int] = {}   # finished anchors -> values they expand to
    total = aliases = 0
    for event in events:
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(open_sizes) >= limits.nesting_depth:
                raise UnsafeDocument(f"nested more than {limits.nesting_depth} levels deep (limits.nesting_depth)")
            open_sizes.append(1)
            open_anchors.append(event.anchor)
            continue
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            size, anchor = open_sizes.pop(), open_anchors.pop()
            if anchor is not None:
                anchor_sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                anchor_sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.yaml_aliases:
                raise UnsafeDocument(f"more than {limits.yaml_aliases} YAML aliases (limits.yaml_aliases)")
            if event.anchor in open_anchors:
                raise UnsafeDocument(f"alias *{event.anchor} inside its own anchor: a cyclic document")
            size = anchor_sizes.get(event.anchor, 1)
        else:
            continue
        total += size
        if total > limits.document_nodes:
            raise UnsafeDocument(f"expands to more than {limits.document_nodes:,} values (limits.document_nodes); "
                                 "nested aliases ('billion laughs')")
        if open_sizes:
            open_sizes[-1] += size


def load_yaml(text: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """``yaml.safe_load`` after ``check_yaml_events``. Raises UnsafeDocument or yaml.YAMLError."""
    import yaml

    check_yaml_events(text, limits)
    return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader (C or Python), checked first


def load_bundled_yaml(text: str) -> Any:
    """A data table shipped inside weightaudit (allowlists, op tables, licences): ours, so not event-checked, but
    parsed by libyaml's C SafeLoader when present (the pure-Python parser took most of the start-up time)."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader (C or Python)


def load_document(text: str, as_json: bool, limits: Limits = DEFAULT_LIMITS) -> Any:
    """JSON or YAML by the caller's choice; every failure is a ValueError (UnsafeDocument, JSON or YAML error)."""
    if as_json:
        return load_json(text, limits)
    import yaml

    try:
        return load_yaml(text, limits)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {str(exc).splitlines()[0]}") from None
