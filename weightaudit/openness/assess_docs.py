"""Documents and extra checks, one small assessor each: model card, data card, evaluation results, the model's
own technical report and paper (ranked by links.py: related work is not evidence), sample outputs, access
gating, base-model lineage ("fine-tuned from X" too) and compute documentation ("trained on a TPU v3-8")."""

from __future__ import annotations

import re

from weightaudit.openness.assess import (
    ABSENT,
    INCLUDED,
    MAX_EVIDENCE,
    MENTIONED,
    NOT_APPLICABLE,
    UNKNOWN,
    Assessment,
    _absent,
    _files_evidence,
    _model_index_results,
)
from weightaudit.openness.assess_links import join_names
from weightaudit.openness.collect import ReleaseFacts
from weightaudit.openness.evidence import Confidence, Evidence


# ------------------------------------------------------------------------------------------ documents


def assess_model_card(facts: ReleaseFacts) -> Assessment:
    card = facts.card
    if card is None:
        return _absent(facts, "model card (README.md)")
    topics = ("uses", "limitations", "training-data", "training-procedure", "evaluation", "environmental", "citation")
    covered = [t for t in topics if any(s.substantive for s in card.sections_about(t))]
    share = len(covered) / len(topics)
    details = (f"sections covered: {', '.join(covered) or 'none'} ({share:.0%})",)
    if card.front_matter_error:
        details += (card.front_matter_error,)
    return Assessment(INCLUDED, Confidence.VERIFIED,
                      (Evidence(card.path, f"model card, {len(covered)}/{len(topics)} key sections", Confidence.VERIFIED),),
                      f"model card present ({share:.0%} of key sections filled)", details=details,
                      quality=max(share, 0.1))


def assess_data_card(facts: ReleaseFacts) -> Assessment:
    local = facts.matching("datasheet*.md", "data_card*.md", "datacard*.md", "dataset_card*.md")
    local += tuple(rel for rel in facts.files if re.match(r"(?i)^datasets?/[^/]+/readme\.md$", rel))
    if local:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(local, "data card"), "data card in the release")
    card = facts.card
    sections = [s for s in card.sections_about("training-data") + card.sections_about("preprocessing")
                if s.substantive] if card else []
    if card is not None and sections:
        return Assessment(INCLUDED, Confidence.DECLARED,
                          tuple(Evidence(f"{card.path}:{s.line}", f"section '{s.title}'", Confidence.DECLARED)
                                for s in sections[:MAX_EVIDENCE]),
                          "the model card documents the training data (MOT: record the Data card as included)")
    return _absent(facts, "data card or training-data section")


def assess_evaluation_results(facts: ReleaseFacts) -> Assessment:
    files = facts.matching("results*.json", "eval_results*", "evaluation_results*", "*_eval_results.json")
    if files:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(files, "evaluation results"),
                          "evaluation result files in the release")
    card = facts.card
    if card is not None and _model_index_results(card):
        return Assessment(INCLUDED, Confidence.DECLARED,
                          (Evidence(card.field_source("model-index"), "model-index results", Confidence.DECLARED),),
                          "evaluation results in the model card's model-index")
    sections = [s for s in card.sections_about("evaluation") if s.substantive and "|" in s.text] if card else []
    if card is not None and sections:
        return Assessment(INCLUDED, Confidence.DECLARED,
                          (Evidence(f"{card.path}:{sections[0].line}", f"results table in '{sections[0].title}'",
                                    Confidence.DECLARED),), "evaluation results table in the model card")
    return _absent(facts, "evaluation results")


def _paper_evidence(facts: ReleaseFacts, hosts: tuple[str, ...], detail: str) -> tuple[Evidence, ...]:
    """The model's own paper/report links on these hosts (related work and citations of others are not evidence)."""
    card = facts.card
    if card is None:
        return ()
    def hosted(url: str) -> bool:   # hosts=(): a report named by its anchor text on any non-journal host
        return any(h in url for h in hosts) if hosts else not any(h in url for h in PAPER_HOSTS)

    own = [r for r in facts.link_roles if r.role == "own-paper" and hosted(r.link.url.lower())]
    out = []
    for role in list({r.link.url: r for r in own}.values())[:MAX_EVIDENCE]:
        confidence = Confidence.KNOWN if role.known is not None else Confidence.MENTIONED
        out.append(Evidence(f"{card.path}:{role.link.line}", f"{detail} ({role.why})", confidence, role.link.url))
    return tuple(out)


def assess_technical_report(facts: ReleaseFacts) -> Assessment:
    pdfs = facts.matching("*report*.pdf", "*technical*.pdf")
    if pdfs:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(pdfs, "report PDF"), "technical report in the release")
    evidence = _paper_evidence(facts, (), "the model's preprint / technical report")
    if evidence:
        return Assessment(MENTIONED, evidence[0].confidence, evidence,
                          "the model's own preprint / technical report is linked (its licence is not known offline)",
                          external=True)
    return _absent(facts, "technical report")


PAPER_HOSTS = ("doi.org", "aclanthology.org", "openreview.net", "proceedings.mlr.press", "papers.nips.cc",
               "proceedings.neurips.cc", "dl.acm.org", "ieeexplore.ieee.org", "jmlr.org", "nature.com")


def assess_research_paper(facts: ReleaseFacts) -> Assessment:
    pdfs = [rel for rel in facts.matching("*.pdf") if "report" not in rel.lower()]
    if pdfs:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(pdfs, "paper PDF"), "paper in the release")
    evidence = _paper_evidence(facts, PAPER_HOSTS, "the model's peer-reviewed paper")
    if evidence:
        return Assessment(MENTIONED, evidence[0].confidence, evidence,
                          "the model's research paper is linked (its licence is not known offline)", external=True)
    return _absent(facts, "research paper")


def assess_sample_outputs(facts: ReleaseFacts) -> Assessment:
    dirs = facts.matching_dirs("samples", "sample_outputs", "generations", "outputs")
    if dirs:
        return Assessment(INCLUDED, Confidence.VERIFIED, _files_evidence(dirs, "sample outputs folder"),
                          "sample outputs in the release")
    card = facts.card
    sections = [s for s in card.sections_about("samples") if s.substantive] if card else []
    if card is not None and sections:
        return Assessment(INCLUDED, Confidence.DECLARED,
                          (Evidence(f"{card.path}:{sections[0].line}", f"section '{sections[0].title}'",
                                    Confidence.DECLARED),), "sample outputs shown in the model card")
    return _absent(facts, "sample outputs")


# ----------------------------------------------------------------------------------------------- extras


def assess_access(facts: ReleaseFacts) -> Assessment:
    card = facts.card
    if card is None:
        return Assessment(UNKNOWN, Confidence.UNKNOWN, (), "no model card: gating cannot be seen")
    gated = [k for k in card.front_matter if str(k).startswith("extra_gated") or k == "gated"]
    evidence = tuple(Evidence(card.field_source(str(k)), "access gate", Confidence.DECLARED) for k in gated[:MAX_EVIDENCE])
    evidence += tuple(Evidence(f.rel, "acceptable-use policy", Confidence.VERIFIED) for f in facts.policy_files)
    line = card.find_line(r"request access|accept the licen[cs]e|agree to share your contact")
    if line:
        evidence += (Evidence(f"{card.path}:{line}", "access request wording", Confidence.MENTIONED),)
    if gated or line:
        return Assessment("gated", Confidence.DECLARED if gated else Confidence.MENTIONED, evidence,
                          "downloads are gated behind an access request / licence acceptance")
    return Assessment("open", Confidence.DECLARED,
                      (Evidence(card.path, "no extra_gated_* fields", Confidence.DECLARED),) + evidence,
                      "no access gate declared in the model card")


_FINETUNED_FROM = (r"\b(fine-?tuned|finetuned|trained|distilled|further pre-?trained|continued pre-?training)\s+"
                   r"(version\s+)?(from|of|on top of)\s+\[?`?(?!scratch)([\w./\-]{3,100})")


def assess_lineage(facts: ReleaseFacts) -> Assessment:
    card = facts.card
    base = card.front_matter.get("base_model") if card else None
    evidence: tuple[Evidence, ...] = ()
    if base and card is not None:
        shown = join_names(map(str, base)) if isinstance(base, list) else str(base)[:100]
        evidence += (Evidence(card.field_source("base_model"), shown, Confidence.DECLARED),)
    adapter = facts.adapter_config.get("base_model_name_or_path") if facts.adapter_config else None
    if adapter:
        evidence += (Evidence("adapter_config.json base_model_name_or_path", str(adapter)[:100], Confidence.VERIFIED),)
    line = card.find_line(_FINETUNED_FROM) if card is not None and not evidence else None
    if line and card is not None:
        match = re.search(_FINETUNED_FROM, card.lines[line - 1], re.IGNORECASE)
        named = match.group(4).rstrip(".,)]") if match else "another model"
        evidence += (Evidence(f"{card.path}:{line}", f"derived from {named}", Confidence.MENTIONED),)
    if evidence:
        return Assessment("derivative", evidence[0].confidence, evidence,
                          "derived from a base model whose weights, code and data are not evaluated here "
                          "(declare them, or scan the base model)")
    if card is None:
        return Assessment(UNKNOWN, Confidence.UNKNOWN, (), "no model card: lineage cannot be seen")
    return Assessment(NOT_APPLICABLE, Confidence.DECLARED,
                      (Evidence(card.path, "no base_model field or 'fine-tuned from' sentence", Confidence.DECLARED),),
                      "no base model declared: treated as an original model")


def assess_compute_docs(facts: ReleaseFacts) -> Assessment:
    card = facts.card
    if card is None:
        return Assessment(UNKNOWN, Confidence.UNKNOWN, (), "no model card: compute documentation cannot be seen")
    evidence: tuple[Evidence, ...] = ()
    if "co2_eq_emissions" in card.front_matter:
        evidence += (Evidence(card.field_source("co2_eq_emissions"), "CO2 emissions", Confidence.DECLARED),)
    evidence += tuple(Evidence(f"{card.path}:{s.line}", f"section '{s.title}'", Confidence.DECLARED)
                      for s in card.sections_about("environmental") if s.substantive)
    line = card.find_line(r"\b(gpus?|tpus?|a100s?|h100s?|v100s?|mi250x?|gaudi\d?)\b.{0,120}\b(hours?|days?|weeks?|steps?|epochs?)\b"
                          r"|\bgpu[- ]hours?\b|\btrained (on|with|using) (a |an |\d+ ?x? ?)?(tpu|gpu|a100|h100|v100)"
                          r"|\btraining time\s*:")
    if line:
        evidence += (Evidence(f"{card.path}:{line}", "hardware and duration", Confidence.DECLARED),)
    if evidence:
        return Assessment(INCLUDED, Confidence.DECLARED, evidence[:MAX_EVIDENCE], "training compute is documented")
    return Assessment(ABSENT, Confidence.ABSENT, (Evidence(card.path, "no compute/hardware section", Confidence.ABSENT),),
                      "no compute, hardware or emissions documentation in the model card")
