"""WA460-WA463: chat templates judged on Jinja2's syntax tree — attacks fire however names are assembled,
published templates stay silent, unparsable or oversized ones are never passed silently."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from weightaudit.chat_templates import Template, analyse
from weightaudit.pipeline import RunOptions, run

from tests.conftest import CORPUS, FIXTURES, invoke_json

sys.path.insert(0, str(FIXTURES))
import make_gguf_fixtures as mk  # noqa: E402

PUBLISHED = Path(__file__).resolve().parent.parent / "data" / "chat_templates"
KIND_RULE = {"execution": "WA460", "obfuscation": "WA461", "unusual": "WA462", "unparsed": "WA463"}
SEVERITY = {"WA460": "critical", "WA461": "high", "WA462": "low", "WA463": "medium"}

BENIGN = {
    "markdown prose in a literal": "{{ '**Note:** use __bold__ sparingly.' }}{{ messages[0].content }}",
    "prose in a raw block": "{% raw %}Python objects have __class__ and __init__; {{ x.__class__ }}{% endraw %}"
                            "{{ messages[0]['content'] }}",
    "delimiters in literals": "{{ '{% if %}' ~ '}}' ~ '{{' }}{% for m in messages %}{{ m.content.strip() }}{% endfor %}",
    "methods and filters": "{% for k, v in tools[0].items() %}{{ k|upper }}={{ v|tojson }}{% endfor %}"
                           "{{ messages|map(attribute='content')|join('\\n') }}{{ loop_messages|length }}",
}
# name -> (template, rule of the first finding, text the message must name)
ATTACKS = {
    "CVE-2024-34359 chain": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "WA460", "__subclasses__"),
    "loop over subclasses": ("{% for c in [].__class__.__base__.__subclasses__() %}{% if c.__name__ == "
                             "'catch_warnings' %}{{ c()._module.__builtins__['__import__']('os') }}{% endif %}"
                             "{% endfor %}", "WA460", "__subclasses__"),
    "attr of a concatenation": ("{{ ''|attr('__cla' ~ 'ss__') }}", "WA460", "'__class__' assembled"),
    "%c format filter": ("{{ ''|attr('%c%cclass%c%c'|format(95, 95, 95, 95)) }}", "WA460", "__class__"),
    "joined list": ("{{ x[['__', 'class', '__']|join] }}", "WA460", "__class__"),
    "namespace items": ("{% set ns = namespace(a='__cla') %}{% set ns.a = ns.a ~ 'ss__' %}{{ ''|attr(ns.a) }}",
                        "WA460", "__class__"),
    "lipsum globals": ("{{ lipsum.__globals__['os'].popen('id').read() }}", "WA460", "__globals__"),
    "cycler init globals": ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "WA460", "__globals__"),
    "self template reference": ("{{ self._TemplateReference__context.cycler }}", "WA460",
                                "_TemplateReference__context"),
    "request application": ("{{ request.application }}", "WA461", "request"),
    "escaped underscores": ("{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}", "WA460", "__class__"),
    "replace filter": ("{{ ''|attr('XXclassXX'|replace('X', '_')) }}", "WA460", "__class__"),
    "reversed string": ("{{ ''|attr('__ssalc__'|reverse) }}", "WA460", "__class__"),
    "block delimiters in literals": ("{{ '{% endif %}}}' }}{{ ''.__class__ }}{{ '{{' }}", "WA460", "__class__"),
    "across set statements": ("{% set a = '__' %}\n{% set b = 'class' %}\n{% set c = a ~ b ~ a %}\n{{ x[c] }}",
                              "WA460", "line 4"),
    "if branches": ("{% if messages %}{% set a = '__class__' %}{% else %}{% set a = 'x' %}{% endif %}{{ x[a] }}",
                    "WA460", "__class__"),
    "loop accumulation": ("{% set ns = namespace(s='') %}{% for p in ['__', 'cla', 'ss__'] %}"
                          "{% set ns.s = ns.s ~ p %}{% endfor %}{{ x|attr(ns.s) }}", "WA460", "__class__"),
    "str.format fields": ("{{ '{0.__class__}'.format(x) }}", "WA460", "__class__"),
    "format method pieces": ("{{ x['{}{}class{}{}'.format('_', '_', '_', '_')] }}", "WA460", "__class__"),
    "percent operator": ("{{ x['%s%sclass%s%s' % ('_', '_', '_', '_')] }}", "WA460", "__class__"),
    "slice and case": ("{{ x['A__CLASS__B'[1:-1]|lower] }}", "WA460", "__class__"),
    "map attribute": ("{{ messages|map(attribute='__class__')|list }}", "WA460", "__class__"),
    "getattr built-in": ("{{ getattr(x, '__class__') }}", "WA460", "getattr"),
    "chr pieces": ("{{ x[chr(95) ~ chr(95) ~ 'class' ~ chr(95) ~ chr(95)] }}", "WA460", "__class__"),
    "dict get": ("{{ x[{'k': '__class__'}.get('k')] }}", "WA460", "__class__"),
    "set block": ("{% set n %}__class__{% endset %}{{ x[n] }}", "WA460", "__class__"),
    "macro default": ("{% macro m(a='__class__') %}{{ x[a] }}{% endmacro %}{{ m() }}", "WA460", "__class__"),
    "dunder item method": ("{{ x.__getitem__('a') }}", "WA460", "__getitem__"),
    "builtins name": ("{{ __builtins__['eval']('1') }}", "WA460", "__builtins__"),
    "os module": ("{{ os.popen('id').read() }}", "WA460", "popen"),
    "unknown function": ("{{ foo(messages) }}", "WA461", "foo()"),
    "unknown method": ("{{ messages.pop_all() }}", "WA461", ".pop_all()"),
    "computed attr name": ("{{ x|attr(messages[0].content ~ 'x') }}", "WA461", "assembled at render time"),
    "attr named by data": ("{{ x|attr(tools[0].name) }}", "WA461", "render-time data"),
    "unknown filter": ("{{ messages|run_shell }}", "WA461", "|run_shell"),
    "unknown test": ("{% if x is evil %}{% endif %}", "WA461", "is evil"),
    "namespace set inside a macro": ("{% set ns = namespace(a='') %}{% macro m() %}{% set ns.a = '__cla' ~ 'ss__' %}"
                                     "{% endmacro %}{{ m() }}{{ x|attr(ns.a) }}", "WA460", "__class__"),
    "dunder namespace attribute": ("{% set ns = namespace() %}{% set ns.__class__ = 1 %}", "WA460", "__class__"),
    "map attribute named by data": ("{{ messages|map(attribute=tools[0].name)|list }}", "WA461", "render-time data"),
    "config gadget": ("{{ config.items() }}", "WA461", "config"),
    "huge range": ("{% for i in range(100000000) %}x{% endfor %}", "WA462", "huge range"),
    "string bomb": ("{{ 'a' * 99999999999 }}", "WA462", "too big"),
    "number bomb": ("{{ 2 ** 99999999 }}", "WA462", "too big"),
    "include": ("{% include 'other.jinja' %}", "WA462", "other.jinja"),
}


def _issues(text: str) -> list:
    return analyse(Template("t.jinja", None, text))


@pytest.mark.parametrize("path", sorted(PUBLISHED.glob("*.jinja")), ids=lambda p: p.stem)
def test_published_templates_are_silent(path: Path) -> None:
    assert analyse(Template("tokenizer_config.json", "chat_template", path.read_text(encoding="utf-8"))) == []


def test_every_published_family_is_present() -> None:
    names = {p.stem for p in PUBLISHED.glob("*.jinja")}
    for family in ("llama-3.1", "llama-3.2", "qwen2-", "qwen2.5", "mistral-7b-instruct-v0.3", "gemma", "phi-3",
                   "deepseek-v2", "deepseek-v3", "deepseek-r1"):
        assert any(name.startswith(family) for name in names), family


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_data_is_not_code(name: str) -> None:
    assert _issues(BENIGN[name]) == []


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_are_found(name: str) -> None:
    text, rule, _ = ATTACKS[name]
    issues = _issues(text)
    assert issues and KIND_RULE[issues[0].kind] == rule


def _release(tmp_path: Path, config: dict) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


def _findings(report: dict) -> list[tuple[str, str]]:
    return [(f["rule_id"], f["severity"]) for f in report["findings"]]


@pytest.mark.parametrize("name", sorted(n for n, (_, rule, _) in ATTACKS.items() if rule != "WA462"))
def test_cli_fails_on_each_attack_in_tokenizer_config(runner, tmp_path: Path, name: str) -> None:
    text, rule, named = ATTACKS[name]
    code, report = invoke_json(runner, "audit", _release(tmp_path, {"chat_template": text}), "--select", "WA46")
    assert code == 1
    first = next(f for f in report["findings"] if f["rule_id"] == rule)
    assert first["severity"] == SEVERITY[rule] and first["path"] == "tokenizer_config.json"
    assert first["where"] == "chat_template" and named in first["message"] and " line " in first["message"]


@pytest.mark.parametrize("name", ["lipsum globals", "joined list", "across set statements", "self template reference"])
def test_cli_fails_on_attacks_in_a_raw_template_file(runner, tmp_path: Path, name: str) -> None:
    text, rule, named = ATTACKS[name]
    (tmp_path / "chat_template.jinja").write_text(text)
    code, report = invoke_json(runner, "audit", tmp_path, "--select", "WA46")
    assert code == 1 and (rule, "critical") in _findings(report)
    assert any(named in f["message"] and f["path"] == "chat_template.jinja" for f in report["findings"])


@pytest.mark.parametrize("name", ["CVE-2024-34359 chain", "namespace items", "%c format filter", "reversed string"])
def test_cli_fails_on_attacks_in_gguf_metadata(runner, tmp_path: Path, name: str) -> None:
    text, rule, named = ATTACKS[name]
    (tmp_path / "model.gguf").write_bytes(mk.gguf_file(mk.model_kvs(text), mk.valid_tensors()))
    code, report = invoke_json(runner, "audit", tmp_path)
    assert code == 1
    (finding,) = [f for f in report["findings"] if f["rule_id"] == rule]
    assert finding["where"] == "tokenizer.chat_template" and named in finding["message"]


def test_rule_reports_the_file_and_the_named_template(tmp_path: Path) -> None:
    qwen = (PUBLISHED / "qwen2.5-7b-instruct.jinja").read_text(encoding="utf-8")
    release = _release(tmp_path, {"chat_template": [{"name": "default", "template": qwen},
                                                   {"name": "tool_use", "template": ATTACKS["cycler init globals"][0]}]})
    report = run([str(release)], RunOptions(command="audit", select=("WA46",)))
    assert [(f.rule_id, f.path, f.where) for f in report.findings] == [
        ("WA460", "tokenizer_config.json", "chat_template[tool_use]")]
    assert "cycler.__init__.__globals__.os.popen" in report.findings[0].message


def test_escapes_are_reported_beside_the_payload(runner, tmp_path: Path) -> None:
    release = _release(tmp_path, {"chat_template": "{{ request['application']['\\x5f\\x5fglobals\\x5f\\x5f'] }}"})
    code, report = invoke_json(runner, "audit", release, "--select", "WA46")
    assert code == 1 and _findings(report) == [("WA460", "critical"), ("WA461", "high")]


def test_published_template_release_passes(runner, tmp_path: Path) -> None:
    llama = (PUBLISHED / "llama-3.1-8b-instruct.jinja").read_text(encoding="utf-8")
    code, report = invoke_json(runner, "audit", _release(tmp_path, {"chat_template": llama}), "--select", "WA46")
    assert report["findings"] == []


# ------------------------------------------------------------------------------------------ unparsable, big, odd

def test_syntax_error_is_checked_by_pattern_and_says_so() -> None:
    (issue,) = _issues("{{ messages[0].content")
    assert issue.kind == "unparsed" and "could not be parsed by Jinja2" in issue.reason
    assert "checked by pattern only" in issue.reason
    kinds = [i.kind for i in _issues("{% if %}{{ cycler.__init__.__globals__ }}")]
    assert kinds == ["execution", "unparsed", "obfuscation"]


@pytest.mark.parametrize("text", ["{{" + "(" * 5000 + "x" + ")" * 5000 + "}}", "{% if x %}" * 3000,
                                  "{{ " + "format(" * 20000 + " }}", "{{ x" + "|trim" * 20000 + " }}"])
def test_deep_nesting_is_a_finding_not_a_crash(text: str) -> None:
    assert [i.kind for i in _issues(text)][:1] == ["unparsed"]


def test_walk_past_its_step_budget_is_a_finding() -> None:
    """Nested loops over constants and thousands of branches cost the walk steps, not time without bound."""
    letters = "[" + ",".join(repr(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789") + "]"
    text = f"{{% for a in {letters} %}}{{% for b in {letters} %}}" + "{% set s = s ~ a %}" * 400 + "{% endfor %}" * 2
    (issue,) = _issues(text)
    assert issue.kind == "unparsed" and "too complex to analyse" in issue.reason


@pytest.mark.parametrize("text", ["{{ '" + "\\'" * 500_000 + " }}", "\\'" * 500_000, "{{ " + "format(" * 150_000,
                                  "{{" + "(" * 1_000_000, "{%" * 500_000, "{{ x }}" * 150_000])
def test_one_megabyte_adversarial_templates_get_a_verdict(text: str) -> None:
    kinds = [i.kind for i in _issues(text)]
    assert "unparsed" in kinds and "unusual" in kinds   # over the parse limit: patterns only, and oversized


def test_tokenizer_config_over_five_megabytes_is_read(runner, tmp_path: Path) -> None:
    """Issue 10: a tokenizer_config.json over 5 MB used to be skipped silently, payload and all (exit 0)."""
    added = {str(i): {"content": f"<extra_{i}>" + "x" * 200, "special": True} for i in range(30_000)}
    release = _release(tmp_path, {"added_tokens_decoder": added, "chat_template": ATTACKS["cycler init globals"][0]})
    assert (release / "tokenizer_config.json").stat().st_size > 5_000_000
    code, report = invoke_json(runner, "audit", release, "--select", "WA46")
    assert code == 1 and _findings(report) == [("WA460", "critical")]


def test_side_file_over_the_read_limit_is_a_finding(tmp_path: Path) -> None:
    from weightaudit.limits import Limits
    from weightaudit.policy import Policy

    release = _release(tmp_path, {"padding": "x" * 5000, "chat_template": "{{ messages[0].content }}"})
    policy = Policy(limits=Limits(template_json_bytes=1000))      # the user's limit, not a module constant
    report = run([str(release)], RunOptions(command="audit", select=("WA46",), policy=policy))
    (finding,) = report.findings
    assert finding.rule_id == "WA463" and "over limits.template_json_bytes = 1,000" in finding.message


def test_invalid_json_with_a_template_is_checked_by_pattern(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text('{"chat_template": "{{ lipsum.__globals__ }}", }')
    report = run([str(tmp_path)], RunOptions(command="audit", select=("WA46",)))
    assert sorted(f.rule_id for f in report.findings) == ["WA460", "WA461", "WA463"]


def test_yaml_aliases_are_refused_not_expanded(tmp_path: Path) -> None:
    laughs = ["a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']"]
    laughs += [f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdefgh", "bcdefghi")]
    (tmp_path / "chat_template.yaml").write_text("\n".join(laughs) + "\nchat_template: '{{ x }}'\n")
    report = run([str(tmp_path)], RunOptions(command="audit", select=("WA46",)))
    assert [f.rule_id for f in report.findings] == ["WA463"]


def test_vocabularies_are_not_read_for_templates(tmp_path: Path) -> None:
    """tokenizer.json is the vocabulary (no runtime reads a chat template from it): a token "template" must not
    make the whole file parse, and a "template" key there is nobody's chat template."""
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"template": 1}},
                                                        "template": "{{ x.__class__ }}"}))
    assert run([str(tmp_path)], RunOptions(command="audit", select=("WA46",))).findings == ()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "chat_template.jinja")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0].content }}"}))
    report = run([str(tmp_path)], RunOptions(command="audit", select=("WA46",)))
    assert report.findings == ()


@pytest.mark.corpus
def test_corpus_chat_templates_get_their_labels(runner) -> None:
    manifest = CORPUS / "MANIFEST.csv"
    if not manifest.exists():
        pytest.skip("security corpus not present")
    rows = [r for r in csv.DictReader(manifest.open()) if "/jinja2/" in r["path"]]
    assert len(rows) == 43
    for row in rows:
        code, report = invoke_json(runner, "audit", CORPUS / row["path"], "--select", "WA46")
        severities = {f["severity"] for f in report["findings"]}
        if row["expected"] == "MALICIOUS":
            assert code == 1 and severities & {"high", "critical"}, row["path"]
        elif row["expected"] == "BENIGN":
            assert not severities & {"high", "critical"}, row["path"]
        else:   # EDGE: empty, malformed, oversized, several templates (one of them a payload): a verdict, no crash
            assert code in (0, 1, 3), row["path"]
