"""Benchmark: chat-template analysis on adversarial and published templates (issue 10: a 120 KB template of
escaped quotes took 63 s, 4.9 MB never finished; blocks of repeated `format(` took 7-16 s at 252 KB).

    python benchmarks/bench_templates.py [--size 1000000] [--runs 3]

Target: a 1 MB adversarial template analysed in under 1 s. Prints the best of several in-process runs of
``weightaudit.chat_templates.analyse`` per input (templates over the 64 KB parse limit are checked by the linear
pattern scan; the cases at the limit show the cost of Jinja2's parser plus the tree walk at the limit).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from weightaudit.chat_templates import Template, analyse
from weightaudit.templates.parse import MAX_PARSE_CHARS

PUBLISHED = Path(__file__).resolve().parent.parent / "tests" / "data" / "chat_templates"


def _repeat(unit: str, size: int, prefix: str = "", suffix: str = "") -> str:
    body = size - len(prefix) - len(suffix)
    return prefix + (unit * (body // len(unit) + 1))[:body] + suffix


def _whole(unit: str) -> str:
    """As many whole copies of ``unit`` as fit in the parse limit (a template Jinja2 parses)."""
    return unit * (MAX_PARSE_CHARS // len(unit))


def _published_up_to_limit() -> str:
    """Whole published templates, one after another, up to the parse limit (still a valid template)."""
    text = ""
    for path in sorted(PUBLISHED.glob("*.jinja")) * 10:
        piece = path.read_text(encoding="utf-8")
        if len(text) + len(piece) > MAX_PARSE_CHARS:
            return text
        text += piece
    return text


def cases(size: int) -> dict[str, str]:
    published = "".join(p.read_text(encoding="utf-8") for p in sorted(PUBLISHED.glob("*.jinja")))
    return {
        "escaped quotes in a literal": _repeat("\\'", size, "{{ '", " }}"),
        "escaped quotes as text": _repeat("\\'", size),
        "repeated format(": _repeat("format(", size, "{{ "),
        "deep nesting {{((((": _repeat("(", size, "{{"),
        "{% repeated": _repeat("{%", size),
        "published templates, repeated": (published * (size // len(published) + 1))[:size],
        "{{ x }} blocks at the parse limit": _whole("{{ x }}"),
        "if blocks at the parse limit": _whole("{% if x %}{{ x.y|trim }}{% endif %}"),
        "set/concat chain at the parse limit": _whole("{% set a = a ~ 'x' %}"),
        "published templates at the parse limit": _published_up_to_limit(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for name, text in cases(args.size).items():
        best = float("inf")
        for _ in range(args.runs):
            start = time.perf_counter()
            issues = analyse(Template("bench.jinja", None, text))
            best = min(best, time.perf_counter() - start)
        kinds = ",".join(sorted({i.kind for i in issues})) or "-"
        print(f"{name:40s} {len(text):>9,} chars  {best:7.3f} s  {kinds}")


if __name__ == "__main__":
    main()
