"""Licence expressions through license-expression and its bundled ScanCode index; every Hub licence id; AI licences;
licences named in prose. All offline (the ScanCode index is vendored in the package)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from weightaudit.openness.expressions import scancode_entry, scancode_spdx_ids
from weightaudit.openness.licenses import classify, find_licenses_in_prose, normalise_license

# The Hugging Face Hub's licence identifiers (docs/hub/repositories-licenses.md, huggingface/hub-docs), with the
# later additions (llama3 ... llama4, apple-ascl, apple-amlr, openmdw-1.0, eupl-1.2, deepseek).
HUB_IDS = """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0
cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0
cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl
gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql
ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma
apple-ascl apple-amlr openmdw-1.0 deepseek fair-noncommercial-research-license grok2-community""".split()


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_every_hub_licence_id_is_recognised(hub_id: str) -> None:
    norm = normalise_license(hub_id)
    assert norm.is_license, hub_id
    assert classify(norm.id).category != "proprietary-or-unknown" or hub_id == "cc", hub_id


def test_hub_placeholders() -> None:
    assert normalise_license("unknown").kind == "unlicensed"
    assert normalise_license("other").kind == "unrecognised"   # the licence is in license_name / LICENSE
    assert not classify(normalise_license("cc").id).known       # family without a version: terms unreadable


@pytest.mark.parametrize("raw, expected", [
    ("(MIT OR Apache-2.0) AND CC-BY-4.0", "(MIT OR Apache-2.0) AND CC-BY-4.0"),
    ("MIT OR Apache-2.0 AND CC-BY-4.0", "MIT OR (Apache-2.0 AND CC-BY-4.0)"),      # AND binds tighter
    ("(mit or apache-2.0) and cc-by-4.0", "(MIT OR Apache-2.0) AND CC-BY-4.0"),     # lower-case operators
    ("MIT AND (Apache-2.0 OR BSD-3-Clause) AND cc-by-4.0", "MIT AND (Apache-2.0 OR BSD-3-Clause) AND CC-BY-4.0"),
    ("GPL-2.0-or-later WITH Classpath-exception-2.0", "GPL-2.0-or-later WITH Classpath-exception-2.0"),
    ("gpl-2.0-or-later with classpath-exception-2.0", "GPL-2.0-or-later WITH Classpath-exception-2.0"),
    ("Apache 2.0 AND Llama 2 Community License", "Apache-2.0 AND LicenseRef-scancode-llama-2-license-2023"),
])
def test_expressions_keep_structure(raw: str, expected: str) -> None:
    norm = normalise_license(raw)
    assert norm.is_license and norm.id == expected


@pytest.mark.parametrize("raw, expected", [
    ("GPL-2.0+", "GPL-2.0-or-later"), ("GPL-2.0", "GPL-2.0-only"), ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("AGPL-3.0", "AGPL-3.0-only"), ("GPL-3.0+", "GPL-3.0-or-later"),
])
def test_deprecated_ids_become_current(raw: str, expected: str) -> None:
    assert normalise_license(raw).id == expected


@pytest.mark.parametrize("raw", ["MIT AND", "(MIT OR Apache-2.0", "MIT WITH Apache-2.0", "x" * 600,
                                 "MIT OR no-such-licence-xyz"])
def test_bad_expressions_are_unrecognised(raw: str) -> None:
    assert normalise_license(raw).kind == "unrecognised"


@pytest.mark.parametrize("expression, category", [
    ("(MIT OR Apache-2.0) AND CC-BY-4.0", "open-content"), ("Apache-2.0 AND CC-BY-NC-4.0", "non-commercial"),
    ("CC-BY-NC-4.0 OR MIT", "oss-permissive"),
    ("GPL-2.0-or-later WITH Classpath-exception-2.0", "oss-other"),
])
def test_expression_classification(expression: str, category: str) -> None:
    assert classify(expression).category == category


@pytest.mark.parametrize("raw", ["cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nc-sa-3.0", "cc-by-nc-nd-3.0",
                                 "CC BY-NC 3.0"])
def test_every_cc_by_nc_version_is_non_commercial(raw: str) -> None:
    info = classify(normalise_license(raw).id)
    assert info.category == "non-commercial" and not info.open


@pytest.mark.parametrize("raw, expected, category", [
    ("llama2", "LicenseRef-scancode-llama-2-license-2023", "restricted-ai"),
    ("llama3", "LicenseRef-weightaudit-llama-3-2024", "restricted-ai"),
    ("llama3.1", "LicenseRef-scancode-llama-3.1-license-2024", "restricted-ai"),
    ("llama3.2", "LicenseRef-scancode-llama-3.2-license-2024", "restricted-ai"),
    ("llama3.3", "LicenseRef-scancode-llama-3.3-license-2024", "restricted-ai"),
    ("llama4", "LicenseRef-scancode-llama-4-cla-2025", "restricted-ai"),
    ("gemma", "LicenseRef-scancode-gemma-tou-2024-04-01", "restricted-ai"),
    ("openrail", "LicenseRef-weightaudit-openrail", "restricted-ai"),
    ("bigscience-openrail-m", "LicenseRef-scancode-bigscience-open-rail-m", "restricted-ai"),
    ("creativeml-openrail-m", "LicenseRef-weightaudit-creativeml-openrail-m", "restricted-ai"),
    ("TII Falcon LLM License", "LicenseRef-weightaudit-tii-falcon-llm-2.0", "restricted-ai"),
    ("TII Falcon License 2.0", "LicenseRef-scancode-falcon-2-11b-1.0", "restricted-ai"),
    ("Falcon-180B TII License", "LicenseRef-weightaudit-tii-falcon-180b", "restricted-ai"),
    ("qwen", "LicenseRef-scancode-tongyi-qianwen-2023", "restricted-ai"),
    ("qwen-research", "LicenseRef-weightaudit-tongyi-qianwen-research", "non-commercial"),
    ("deepseek", "LicenseRef-scancode-deepseek-la-1.0", "restricted-ai"),
])
def test_ai_licences(raw: str, expected: str, category: str) -> None:
    norm = normalise_license(raw)
    assert norm.id == expected and classify(norm.id).category == category


def test_every_scancode_id_we_emit_exists_in_the_index() -> None:
    table = (Path(__file__).parents[2] / "weightaudit" / "data" / "licenses.yaml").read_text("utf-8")
    emitted = set(re.findall(r"LicenseRef-scancode-[A-Za-z0-9.\-]+", table))
    emitted -= {"LicenseRef-scancode-creativeml-openrail-m"}   # kept only as an alias, mapped to our own id
    assert emitted and emitted <= scancode_spdx_ids()
    for raw in HUB_IDS:
        norm = normalise_license(raw)
        for part in re.findall(r"LicenseRef-scancode-[A-Za-z0-9.\-]+", norm.id or ""):
            assert part in scancode_spdx_ids(), (raw, part)


def test_scancode_index_is_offline_and_knows_current_spdx_ids() -> None:
    entry = scancode_entry("gpl-2.0+")
    assert entry is not None and entry.spdx_id == "GPL-2.0-or-later"
    assert normalise_license("MIT-0").id == "MIT-0" and classify("MIT-0").open


@pytest.mark.parametrize("text, expected", [
    ("# Falcon3-7B\n\nThe model is released under the TII Falcon LLM License.\n",
     ("LicenseRef-weightaudit-tii-falcon-llm-2.0",)),
    ("Model under Apache 2.0.\n\n## License\nThis model is licensed under Apache 2.0.\n", ("Apache-2.0",)),
    ("```\nlicensed under the Llama 2 Community License\n```\n", ()),           # code block: not prose
    ("We compare with Llama 2 and Gemma.\n", ()),                                # no licence cue
])
def test_licences_in_prose(text: str, expected: tuple[str, ...]) -> None:
    assert tuple(m.id for m in find_licenses_in_prose(text)) == expected
