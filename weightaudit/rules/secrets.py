"""WA601–WA602: credentials left in a release's text files (configs, cards, scripts) — found before publishing.

A release is published once and mirrored forever; an API key in its config.json is leaked the moment it is
pushed. Only side files are read (never weights), tokenizer vocabularies skipped. What is too big or too many
to search (``limits.secret_scan_bytes`` / ``secret_scan_files``) is WA603 (low): never skipped without a word,
but a hygiene search that could not finish does not make the release unverified (nothing was loaded from it).
WA6xx is a new range, "release hygiene", next to DESIGN.md's five.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from weightaudit.limits import Limits, describe
from weightaudit.model import Finding, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".env", ".txt", ".md", ".py", ".sh", ".ipynb")
SKIP_NAMES = re.compile(r"^(tokenizer\.json|vocab\..*|merges\.txt|.*\.index\.json|spiece\..*|sentencepiece\..*)$",
                        re.I)
# Well-known credential formats: (what it is, pattern).
KNOWN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("OpenAI-style API key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b")),
    ("AWS access key ID", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("private key", re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY")),
)
# "api_key": "...", api_token: ..., PASSWORD=... with a value that is not a placeholder. The key must start a
# token and its prefix is bounded, so a long run of letters cannot make the search quadratic.
SECRET_ASSIGNMENT = re.compile(
    r"""["']?(?<![A-Za-z0-9_.-])(?P<key>[A-Za-z0-9_.-]{0,40}?(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|api[_-]?token|"""
    r"""password|passwd|client[_-]?secret))["']?\s*[:=]\s*["']?(?P<value>[^"'\s,}#]{8,})""", re.I)
PLACEHOLDER = re.compile(r"^(<.*>|\$\{?.*\}?|x{4,}|\*{4,}|your[_-].*|changeme|none|null|true|false|example.*|"
                         r"os\.environ.*|getenv.*|env\..*|\.\.\.)$", re.I)


def _candidates(ctx: AuditContext) -> list[str]:
    rels = ctx.release.all_side_files()
    return [r for r in rels if r.lower().endswith(TEXT_SUFFIXES) and not SKIP_NAMES.match(r.rsplit("/", 1)[-1])]


def _read(root: Path, rel: str, limits: Limits) -> str | Finding | None:
    """The file's text; a WA603 finding when it is over the limit; None when it is not a readable regular file."""
    path = root / rel
    try:
        if not path.is_file():
            return None
        size = path.stat().st_size
        if size > limits.secret_scan_bytes:
            return NOT_SEARCHED.finding(rel, f"not searched for credentials: {size:,} bytes, over "
                                             f"{describe('secret_scan_bytes', limits)}")
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _mask(value: str) -> str:
    return value[:4] + "…" + f"({len(value)} chars)" if len(value) > 8 else "…"


def _check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    root = Path(ctx.release.root)
    candidates = _candidates(ctx)
    allowed = ctx.limits.secret_scan_files
    for rel in candidates[:allowed]:
        text = _read(root, rel, ctx.limits)
        if isinstance(text, Finding):
            yield text
        elif text is not None:
            yield from _scan_text(rel, text)
    if len(candidates) > allowed:
        yield NOT_SEARCHED.finding(candidates[allowed], f"{len(candidates) - allowed:,} text files from this one on "
                                   f"not searched for credentials ({describe('secret_scan_files', ctx.limits)})")


def _scan_text(rel: str, text: str) -> Iterable[Finding]:
    known_lines: set[int] = set()
    for what, pattern in KNOWN_FORMATS:
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            known_lines.add(line)
            yield KNOWN_CREDENTIAL.finding(rel, f"{what} in line {line}: {_mask(match.group(0))}", where=f"line {line}")
            break
    line, counted = 1, 0   # lines counted up to ``counted``: matches come in order, so counting stays linear
    for match in SECRET_ASSIGNMENT.finditer(text):
        value = match.group("value")
        line += text.count("\n", counted, match.start())
        counted = match.start()
        if line in known_lines or PLACEHOLDER.match(value):
            continue
        yield SECRET_VALUE.finding(rel, f"{match.group('key')!r} has a value in line {line}: {_mask(value)}",
                                   where=f"line {line}")


KNOWN_CREDENTIAL = register(Rule(
    id="WA601", name="credential-in-release", summary="A text file of the release holds a recognisable credential.",
    severity=Severity.HIGH, cwe=798, tags=("hygiene", "secrets"), check=_check,
    help="A string in a config, card or script has the format of a live credential (Hugging Face, OpenAI-style "
         "or GitHub token, AWS access key, Slack token, a private key block). Publishing the release publishes "
         "it; mirrors keep it after you delete it.\n\nWhat to do: remove it, revoke it at its provider, and read "
         "secrets from the environment instead. Weights are never scanned, only text side files (up to "
         "limits.secret_scan_bytes each, 16 MiB by default).",
))
SECRET_VALUE = register(Rule(
    id="WA602", name="secret-like-value", summary="A key named like a secret (api_key, password ...) has a value.",
    severity=Severity.MEDIUM, confidence="medium", cwe=798, tags=("hygiene", "secrets"),
    help="A setting named api_key, access_token, secret_key, password or the like holds a literal value that is "
         "not a placeholder (<...>, ${...}, your_..., xxxx). It may be a real secret about to be published.\n\n"
         "What to do: check it; use an environment variable or a placeholder in released files.",
))
NOT_SEARCHED = register(Rule(
    id="WA603", name="secrets-not-searched", summary="A text file was too big, or one too many, to search for credentials.",
    severity=Severity.LOW, tags=("hygiene", "secrets", "limits"), check=None,
    help="The credential search (WA601/WA602) reads each text side file up to limits.secret_scan_bytes and at most "
         "limits.secret_scan_files files per release. This file was over one of them, so a credential in it would "
         "not have been reported. It is a hygiene check: nothing is loaded from these files, so the release is not "
         "marked unverified.\n\nWhat to do: look at the file yourself, or raise the limit in your policy "
         "(`limits: {secret_scan_bytes: ...}`).",
))
