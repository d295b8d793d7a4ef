"""WA209: a PEFT LoRA adapter's tensors must have the rank its adapter_config.json declares (``model_facts``)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from weightaudit.model import Finding, Severity
from weightaudit.rules import register
from weightaudit.rules.base import AuditContext, Rule


def _rank_check(ctx: AuditContext, cfg: Mapping[str, Any]) -> Iterable[Finding]:
    from weightaudit.model_facts import read_adapter_config, rank_mismatches

    adapter = read_adapter_config(ctx.release)
    for bad in rank_mismatches(adapter, ctx.tensors):
        tensor = bad.tensor
        yield RANK_MISMATCH.finding(tensor.file, f"{tensor.name} has shape {list(tensor.shape)}: axis {bad.axis} "
                                    f"should be the LoRA rank {bad.expected} from adapter_config.json",
                                    tensor=tensor.name)


RANK_MISMATCH = register(Rule(
    id="WA209", name="adapter-rank-mismatch", summary="A LoRA adapter tensor's shape disagrees with its rank.",
    severity=Severity.MEDIUM, tags=("size", "config", "adapter"), check=_rank_check,
    help="A PEFT LoRA adapter declares its rank r (and per-module ranks in rank_pattern) in adapter_config.json; "
         "each adapted module stores lora_A as [r, in_features] and lora_B as [out_features, r] (embeddings: "
         "lora_embedding_A [r, vocab], lora_embedding_B [dim, r]). Another size on the rank axis means the config "
         "belongs to another adapter, or the weights were merged or truncated: PEFT refuses to load it, or loads it "
         "with the wrong scaling (lora_alpha / r).\n\nWhat to do: ship the adapter_config.json the adapter was "
         "saved with.",
))
