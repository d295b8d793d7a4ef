"""WA156–WA159 (containers around pickles) and WA426–WA429 (pickles where no loader looks for them).

The container rules are raised by the loaders while they parse (``check`` is None): compressed pickles
(:mod:`weightaudit.formats.compressed`), joblib files (:mod:`weightaudit.formats.joblib_format`), legacy torch tar
archives (:mod:`weightaudit.formats.tar_legacy`), 7z archives, ``.npy``/``.npz`` files numpy would refuse.
WA426 is a release-level check: pickles hidden in safetensors ``__metadata__`` strings and in JSON side files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from weightaudit.limits import DEFAULT_LIMITS, Limits, describe
from weightaudit.model import Finding, Severity
from weightaudit.rules import register, rule_family
from weightaudit.rules.base import AuditContext, Rule
from weightaudit.rules.integrity import LIMIT_REACHED
from weightaudit.safe_read import NotRegularFile, UnsafeDocument, read_text

_container_rule = rule_family(
    ("integrity", "pickle", "container"),
    "\n\nWhat to do: obtain the weights as safetensors, or re-export them from a trusted copy. A file weightaudit "
    "could not read completely is reported as not verified (exit 3): do not load it until it is.")

INFLATION_LIMIT = _container_rule(
    "WA156", "inflation-limit", "A compressed container inflates past weightaudit's limit; the rest was not checked.",
    Severity.HIGH,
    "gzip, bz2, xz/lzma, zlib and joblib's compressed files are inflated step by step with a named bound on the "
    "inflated bytes (limits.bytes_inflated in your policy, default 4 GiB). A file past the bound is a "
    "decompression bomb or not a weights file; what lies beyond it was not checked.", cwe=409)
LOADER_REFUSES = _container_rule(
    "WA157", "loader-refuses", "The real loader (numpy, zipfile, torch, joblib) refuses this file or part of it.",
    Severity.MEDIUM,
    "weightaudit parses each container as its real loader does; where that loader would raise (an .npy header "
    "with other keys than descr/fortran_order/shape, an .npz member that is not an array, a central directory "
    "zipfile rejects, an unknown compression), the file is refused likewise and reported as not verified rather "
    "than read differently from the tool that will load it.", cwe=436)
UNSCANNED_ARCHIVE = _container_rule(
    "WA158", "unscanned-archive", "An archive holds members weightaudit could not unpack (7z, lz4).", Severity.HIGH,
    "A pickle inside an archive that is not unpacked cannot be checked, and whoever unpacks the archive and "
    "loads the pickle runs whatever it calls. Pickles stored uncompressed are still found by their header and "
    "scanned; the file stays not verified.", cwe=502)
CONTAINER_LAYOUT = _container_rule(
    "WA159", "container-layout", "A joblib or legacy torch tar container deviates from the layout its loader reads.",
    Severity.HIGH,
    "joblib writes each array's bytes right after the pickle opcode that builds its NumpyArrayWrapper; legacy "
    "torch tar files hold sys_info, pickle, storages and tensors members. A wrapper with an unreadable dtype or "
    "shape, array bytes past the end of the file, a wrapper that names another file (NDArrayWrapper paths with "
    "'..' or '/') or tar members torch does not write are read differently by different tools.", cwe=20)

_hidden_rule = rule_family(
    ("code-execution", "pickle"),
    "\n\nWhat to do: remove the value; no configuration or metadata needs a pickle. Treat the release as hostile "
    "if the hidden pickle calls anything.", default_cwe=502)

# JSON string literals, linear in the file size: possessive, and an unterminated string runs to the end of the
# text (otherwise each later quote of 1 MB of \" restarts the scan: quadratic).
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*+)(?:"|\\?\Z)', re.S)
# Raw pickle protocol 2-5 headers, their hex spelling and their base64 spelling (gAI gAJ gAN gAS gAU...), and the
# same spellings of gzip/zlib/xz/bz2 headers (a compressed pickle is inflated by pickle_nested._decoded_candidates).
_PICKLE_PREFIX = re.compile(r"^(?:\x80[\x02-\x05]|\\u0080|80 ?0[2-5]|gA[JNSU]"  # a pickle: raw, escaped, hex, base64
                            r"|\x1f\x8b|\\u001f\\u008b|1f ?8b|H4sI"  # gzip: raw, escaped, hex, base64
                            r"|x[\x01\x5e\x9c\xda]|78 ?(?:01|5e|9c|da)|e[AFJN]"  # zlib
                            r"|\xfd7zXZ|fd ?37 ?7a|/Td6WFo|BZh|42 ?5a ?68|QlpoO)", re.I)  # xz, bz2


def _hidden_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    """Every metadata string and JSON side-file string, within the user's limits (``ctx.limits``); a limit
    reached is WA132 naming it, and the pipeline then lists that file as unverified."""
    limits = ctx.limits
    for loaded in ctx.files:
        metadata = loaded.facts.get("metadata") if loaded.format == "safetensors" else None
        if isinstance(metadata, dict):
            yield from _metadata_findings(loaded.path, metadata, "__metadata__", limits)
    for index in ctx.release.shard_indexes:
        yield from _metadata_findings(index.rel, index.metadata or {}, "metadata", limits)
    root = Path(ctx.release.root)
    for count, rel in enumerate(r for r in ctx.release.all_side_files() if r.lower().endswith(".json")):
        if count >= limits.json_side_files:
            yield LIMIT_REACHED.finding(rel, f"not searched for hidden pickles: more JSON side files than "
                                             f"{describe('json_side_files', limits)}")
            continue
        text = _read_text(root / rel, limits)
        if text is None:
            yield LIMIT_REACHED.finding(rel, "not searched for hidden pickles: unreadable, not a regular file, "
                                             f"or larger than {describe('side_file_bytes', limits)}")
            continue
        for index, value in _json_strings(text):
            yield from hidden_pickle_findings(rel, value, f"string #{index}", limits)


def _metadata_findings(path: str, metadata: Mapping[str, Any], name: str, limits: Limits) -> Iterator[Finding]:
    for count, (key, value) in enumerate(metadata.items()):
        if count >= limits.metadata_strings:
            yield LIMIT_REACHED.finding(path, f"{name} has {len(metadata):,} entries; those past "
                                              f"{describe('metadata_strings', limits)} were not searched for "
                                              "hidden pickles", where=name)
            return
        if isinstance(value, str):
            yield from hidden_pickle_findings(path, value, f"{name}[{key!r}]", limits)


def _read_text(path: Path, limits: Limits) -> str | None:
    """The file's text (regular files only, at most limits.side_file_bytes); None when unreadable."""
    try:
        return read_text(path, limits.side_file_bytes)
    except (OSError, NotRegularFile, UnsafeDocument):
        return None


def _json_strings(text: str) -> Iterator[tuple[int, str]]:
    """Every JSON string literal (keys and values) that starts like a pickle, decoded; position-numbered."""
    for index, match in enumerate(_JSON_STRING.finditer(text)):
        body = match.group(1)
        if len(body) < 8 or not _PICKLE_PREFIX.match(body):
            continue
        try:
            value = json.loads(f'"{body}"')
        except ValueError:
            continue
        yield index, value


def hidden_pickle_findings(path: str, value: str, where: str, limits: Limits = DEFAULT_LIMITS) -> list[Finding]:
    """WA426 when a string (raw, hex or base64; compressed or not) decodes to a pickle; critical when that pickle
    would call code. A pickle that runs past ``limits.nested_pickle_opcodes`` is still judged on what it showed
    (the recovery scan reads on for its imports), and is also WA132: it was not fully checked."""
    if len(value) < 8 or not _PICKLE_PREFIX.match(value):
        return []
    from weightaudit.formats.pickle_vm import Limits as VmLimits   # the pickle machinery loads only when needed
    from weightaudit.formats.pickle_vm import scan_stream
    from weightaudit.rules import pickle_rules as P
    from weightaudit.rules.pickle_nested import _decoded_candidates     # one decoder for raw/hex/base64 pickles

    cut: list[bytes] = []
    for payload in _decoded_candidates(value, b"", cut, limits.hidden_pickle_bytes):
        results, _ = scan_stream(payload, limits=VmLimits(max_opcodes=limits.nested_pickle_opcodes))
        limited = any(a.kind == "limit" for r in results for a in r.anomalies)
        truncated = any(payload is c for c in cut) and not (results and results[0].ok)
        calls = P.executing_calls(results)
        if not results or not (results[0].ok or limited or calls or truncated):   # broken: still runs what came first
            continue
        severity = Severity.CRITICAL if calls else HIDDEN_PICKLE_IN_METADATA.severity
        what = (f"that would run {calls[0]}" if calls
                else "(no call in the part scanned)" if limited or truncated else "(data only)")
        findings = [HIDDEN_PICKLE_IN_METADATA.finding(path, f"{where} holds a pickle {what}", where=where,
                                                      severity=severity)]
        if limited:
            findings.append(LIMIT_REACHED.finding(path, f"{where} holds a pickle of more than "
                                                        f"{describe('nested_pickle_opcodes', limits)} opcodes: "
                                                        "not fully checked", where=where))
        if truncated:
            findings.append(LIMIT_REACHED.finding(path, f"{where} holds a compressed pickle that inflates past the "
                                                        f"{len(payload):,} bytes scanned (at most 16x its compressed "
                                                        f"size and {describe('hidden_pickle_bytes', limits)}): "
                                                        "not fully checked", where=where))
        return findings
    return []


HIDDEN_PICKLE_IN_METADATA = register(Rule(
    id="WA426", name="pickle-in-metadata", summary="A metadata string or JSON side file value holds a pickle.",
    severity=Severity.MEDIUM, cwe=502, tags=("code-execution", "pickle"), check=_hidden_check,
    help="A string in safetensors __metadata__ or in a JSON side file (config.json, tokenizer_config.json ...) "
         "is a pickle, raw or hex- or base64-encoded. Nothing loads it by itself, but any code that reads the value "
         "and unpickles it (a plugin, a remote-code model class, a callback) runs it. Critical when the pickle "
         "calls or imports anything outside the weights allowlist.\n\nWhat to do: remove the value; no "
         "configuration or metadata needs a pickle. Treat the release as hostile if the hidden pickle calls "
         "anything."))
USER_BLOCK_PICKLE = _hidden_rule(
    "WA427", "user-block-pickle", "An HDF5 file's user block (bytes before the superblock) holds a pickle.",
    Severity.HIGH,
    "HDF5 finds its superblock at offset 0, 512, 1024, 2048 ... so the bytes in front are free for anything. A "
    "file that is both a valid HDF5 file and a pickle loads as weights in h5py/Keras and runs code in pickle.load "
    "or torch.load (a polyglot). The pickle was scanned; its own findings follow.")
COMPRESSED_PICKLE = _hidden_rule(
    "WA428", "compressed-pickle", "A pickle is wrapped in gzip, bz2, xz/lzma or zlib compression.", Severity.LOW,
    "Scanners that look for pickle opcodes in the raw bytes see only compressed data, while joblib.load and "
    "loaders that sniff compression (pandas, joblib, custom code) inflate and unpickle it. It was inflated "
    "(bounded) and scanned; its own findings follow.")
JOBLIB_SUBCLASS = _hidden_rule(
    "WA429", "joblib-array-subclass", "A joblib array wrapper names an array class other than numpy's own.",
    Severity.HIGH,
    "joblib rebuilds each array as the class recorded in its NumpyArrayWrapper; a class other than numpy.ndarray, "
    "numpy.matrix or numpy.memmap is instantiated through numpy's _reconstruct and its __array_prepare__ is "
    "called with the array: that runs the named class's code.")
