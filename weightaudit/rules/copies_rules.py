"""WA208: copies of one model in different containers (``weightaudit.copies``) must hold the same tensors.

Header differences (a tensor missing from a copy or only in it, another shape, another dtype) are always checked;
values only when tensor bytes are streamed (``audit``, ``inspect --stats``): equal statistics fingerprints first,
the container-independent content hash (``tensor_hash``) otherwise.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from weightaudit.model import Finding, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule

WHAT = {"missing": "missing from this copy", "extra": "only in this copy", "reshaped": "reshaped",
        "retyped": "re-typed", "different": "different in value", "unchecked": "not compared"}


def _copies_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    from weightaudit import copies

    groups = copies.find_copies(ctx.files, ctx.release)
    digest = copies.digest_for(ctx.release) if ctx.stats else None
    for group in groups:
        for diff in copies.compare(group, ctx.files, digest, ctx.stats):
            severity = Severity.LOW if diff.kind == "unchecked" else None
            yield COPIES_DISAGREE.finding(diff.path, f"copies disagree: {diff.tensor} {WHAT[diff.kind]} "
                                          f"({diff.detail})", tensor=diff.tensor, severity=severity)


COPIES_DISAGREE = register(Rule(
    id="WA208", name="copies-disagree", summary="Copies of the model in different containers hold different tensors.",
    severity=Severity.MEDIUM, tags=("size", "copies"), check=_copies_check,
    help="A release that ships the same model twice (model.safetensors and pytorch_model.bin, or a Keras .h5) "
         "promises that both load the same weights: which one a user gets depends on their library and its "
         "version. Every tensor of the primary copy (safetensors first, as the Hub loads it) is matched by name "
         "in each other copy; a tensor missing on either side, with another shape or dtype, or — when tensor "
         "bytes are streamed (audit, inspect --stats) — with different values is named. A tensor whose bytes "
         "cannot be streamed for hashing is reported at low as not compared.\n\nWhat to do: regenerate every "
         "copy from the same checkpoint, or ship only the safetensors copy.",
))
