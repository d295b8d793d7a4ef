"""The name tables of ``data/chat_template_names.yaml`` (schema in its header), and how an attribute name is judged."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from weightaudit.safe_read import load_bundled_yaml

# Attributes of Python frames, functions, generators and tracebacks that reach code or globals without a dunder.
PYTHON_INTERNALS = frozenset({
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code",
    "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals", "func_code", "im_func",
    "im_self", "mro", "_module",
})
MODULE_ROOTS = frozenset({"os", "sys", "subprocess", "builtins", "__builtins__", "importlib"})


@dataclass(frozen=True)
class NameTables:
    inputs: frozenset[str]
    globals: frozenset[str]
    methods: frozenset[str]
    gadget_roots: frozenset[str]
    code_builtins: frozenset[str]


@lru_cache(maxsize=1)
def tables() -> NameTables:
    text = resources.files("weightaudit").joinpath("data/chat_template_names.yaml").read_text("utf-8")
    data = load_bundled_yaml(text)

    def names(section: str) -> frozenset[str]:
        return frozenset(str(entry["name"]) for entry in data[section])
    return NameTables(names("inputs"), names("globals"), names("methods"), names("gadget_roots"),
                      names("code_builtins"))


def judge_attribute(name: str) -> tuple[str, str] | None:
    """(kind, why) when reading attribute or key ``name`` is a step out of the template language, else None."""
    if len(name) > 4 and name.startswith("__") and name.endswith("__"):
        return "execution", f"the dunder attribute {name!r}"
    if name.startswith("_") and "__" in name[1:]:
        return "execution", f"the name-mangled private attribute {name!r}"
    if name in PYTHON_INTERNALS:
        return "execution", f"the Python internal {name!r}"
    if name.startswith("_"):
        return "obfuscation", f"the private attribute {name!r} (Jinja's sandbox refuses it)"
    return None
