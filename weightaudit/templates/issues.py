"""What the chat-template checks read (a template and where it came from) and what they report."""

from __future__ import annotations

from dataclasses import dataclass

OVERSIZED_TEMPLATE = 64 * 1024      # bytes: larger templates are not parsed (checked by pattern only)

# kind -> how a rule names it; order = most severe first.
KINDS = ("execution", "unparsed", "obfuscation", "unusual")


@dataclass(frozen=True)
class Template:
    """One template: the file it came from, the key or name inside that file (None for a raw file), its text.
    ``unparsed`` says why the text cannot be given to Jinja2's parser (then it is checked by pattern only)."""

    path: str
    key: str | None
    text: str
    unparsed: str | None = None

    @property
    def where(self) -> str:
        return self.key or "template"


@dataclass(frozen=True)
class TemplateIssue:
    """What a template does that a chat template should not.

    ``kind``: execution (reaches Python internals), obfuscation (builds names indirectly, calls what the chat API
    does not provide), unparsed (could not be read by Jinja2's parser: checked by pattern only) or unusual.
    ``line`` is the template line (1-based) when known."""

    kind: str
    reason: str
    snippet: str = ""
    line: int | None = None


def short(text: str, width: int = 140) -> str:
    """One line of at most ``width`` characters."""
    flat = " ".join(text.split()) if len(text) < 4 * width else " ".join(text[: 4 * width].split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
