"""WA460-WA462: chat templates read statically — attack shapes fire, real-world templates stay silent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weightaudit.chat_templates import Template, analyse
from weightaudit.pipeline import RunOptions, run

from tests.conftest import CORPUS, invoke_json

# Shapes of templates real model families publish (Llama 3 tool use, Qwen2, Mistral, Gemma, Zephyr):
BENIGN = {
    "llama3": (
        "{{- bos_token }}{%- if custom_tools is defined %}{%- set tools = custom_tools %}{%- endif %}"
        "{%- if not date_string is defined %}{%- set date_string = strftime_now('%d %b %Y') %}{%- endif %}"
        "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
        "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
        "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{%- if tools is not none %}"
        "{{- 'Environment: ipython\\n' }}{%- endif %}{{- system_message }}{{- '<|eot_id|>' }}"
        "{%- for message in messages %}{%- if not (message.role == 'ipython' or message.role == 'tool') %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}"
        "{%- elif 'tool_calls' in message %}{%- set tool_call = message.tool_calls[0].function %}"
        "{{- '{\"name\": \"' + tool_call.name + '\", ' }}{{- '\"parameters\": ' }}{{- tool_call.arguments | tojson }}"
        "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}"
        "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"),
    "qwen2": (
        "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- for tool in tools %}{{- \"\\n\" }}{{- tool | tojson }}"
        "{%- endfor %}{%- endif %}{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}"
        "{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}"
        "{%- if ns.multi_step_tool and message.role == \"user\" %}{%- set ns.multi_step_tool = false %}"
        "{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}"
        "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"),
    "mistral": (
        "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
        "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
        "{{- bos_token }}{%- for message in loop_messages %}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{%- endif %}{%- if message['role'] == 'user' %}{{- '[INST] ' + message['content'] + '[/INST]' }}"
        "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token}}{%- endif %}{%- endfor %}"),
    "markdown-prose": "{{ '**Note:** use __bold__ sparingly; the system prompt follows.' }}{{ messages[0].content }}",
}
ATTACKS = {
    "dunder chain": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "WA460"),
    "cycler gadget": ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "WA460"),
    "escaped subscript": ("{{ request['application']['\\x5f\\x5fglobals\\x5f\\x5f'] }}", "WA460"),
    "attr filter": ("{{ ''|attr('__class__') }}", "WA460"),
    "concatenated name": ("{{ ''|attr('__cla' ~ 'ss__') }}", "WA460"),
    "getattr call": ("{{ getattr(x, 'y') }}", "WA460"),
    "chr building": ("{{ x[''.join([chr(95), chr(95)])] }}", "WA461"),
    "gadget root": ("{{ lipsum.x.y }}", "WA461"),
    "huge loop": ("{% for i in range(100000000) %}x{% endfor %}", "WA462"),
    "unbalanced": ("{{ messages[0].content", "WA462"),
}
KIND_RULE = {"execution": "WA460", "obfuscation": "WA461", "unusual": "WA462"}


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_world_templates_are_clean(name: str) -> None:
    assert analyse(Template("tokenizer_config.json", "chat_template", BENIGN[name])) == []


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_shapes_are_found(name: str) -> None:
    text, rule = ATTACKS[name]
    issues = analyse(Template("t.jinja", None, text))
    assert issues and KIND_RULE[issues[0].kind] == rule


def _release(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


def test_rule_reports_the_file_and_key(tmp_path: Path) -> None:
    release = _release(tmp_path, {"chat_template": [{"name": "default", "template": BENIGN["qwen2"]},
                                                   {"name": "tool_use", "template": ATTACKS["cycler gadget"][0]}]})
    report = run([str(release)], RunOptions(command="audit", select=("WA46",)))
    assert [(f.rule_id, f.path, f.where) for f in report.findings] == [
        ("WA460", "tokenizer_config.json", "chat_template[tool_use]")]


def test_cli_exit_code_on_a_malicious_template(runner, tmp_path: Path) -> None:
    release = _release(tmp_path, {"chat_template": ATTACKS["escaped subscript"][0]})
    code, report = invoke_json(runner, "audit", release, "--select", "WA46")
    assert code == 1 and [(f["rule_id"], f["severity"]) for f in report["findings"]] == [
        ("WA460", "critical"), ("WA461", "high")]   # the payload, and the escapes that hide it
    (tmp_path / "clean").mkdir()
    clean = _release(tmp_path / "clean", {"chat_template": BENIGN["llama3"]})
    code, report = invoke_json(runner, "audit", clean, "--select", "WA46")
    assert report["findings"] == []


@pytest.mark.corpus
def test_corpus_chat_templates_get_their_labels(runner) -> None:
    manifest = CORPUS / "MANIFEST.csv"
    if not manifest.exists():
        pytest.skip("security corpus not present")
    import csv

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


def test_unclosed_blocks_are_read_in_one_pass() -> None:
    """500 KB of unclosed '{{' / '{%' (a lazy-regex block matcher is quadratic on it and never finishes)."""
    for opener in ("{{", "{%", "{#"):
        issues = analyse(Template("t.jinja", None, opener * 250_000))
        assert [i.kind for i in issues] == ["unusual", "unusual"]   # unbalanced, and oversized
