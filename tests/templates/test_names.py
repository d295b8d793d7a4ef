"""data/chat_template_names.yaml: every entry has a name and a reason; the tables the walker reads are those."""

from __future__ import annotations

from importlib import resources

import yaml

from weightaudit.templates.names import judge_attribute, tables

SECTIONS = ("inputs", "globals", "methods", "gadget_roots", "code_builtins")


def test_every_entry_has_a_name_and_a_reason() -> None:
    data = yaml.safe_load(resources.files("weightaudit").joinpath("data/chat_template_names.yaml").read_text("utf-8"))
    assert set(data) == set(SECTIONS)
    for section in SECTIONS:
        names = [entry["name"] for entry in data[section]]
        assert len(names) == len(set(names)), section
        assert all(str(entry.get("reason", "")).strip() for entry in data[section]), section


def test_tables_hold_the_chat_api() -> None:
    names = tables()
    assert {"messages", "tools", "add_generation_prompt", "bos_token"} <= names.inputs
    assert {"raise_exception", "strftime_now", "namespace", "range"} <= names.globals
    assert {"eval", "getattr", "__import__"} <= names.code_builtins and "strip" in names.methods


def test_attribute_names_are_judged() -> None:
    assert judge_attribute("__globals__")[0] == "execution"
    assert judge_attribute("_TemplateReference__context")[0] == "execution"
    assert judge_attribute("f_globals")[0] == "execution"
    assert judge_attribute("_private")[0] == "obfuscation"
    assert judge_attribute("content") is None and judge_attribute("__")[0] == "obfuscation"
