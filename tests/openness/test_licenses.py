"""Licence normalisation, text identification and classification (data in weightaudit/data/licenses.yaml)."""

from __future__ import annotations

import pytest

from weightaudit.openness.licenses import (
    classify,
    identify_license_text,
    mot_is_open,
    mot_type_appropriate,
    normalise_license,
)


@pytest.mark.parametrize("raw, expected", [
    ("apache-2.0", "Apache-2.0"), ("Apache 2.0", "Apache-2.0"), ("Apache license 2.0", "Apache-2.0"),
    ("mit", "MIT"), ("MIT license", "MIT"), ("BSD-3", "BSD-3-Clause"), ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"), ("llama2", "LicenseRef-scancode-llama-2-license-2023"),
    ("Llama 2 Community License", "LicenseRef-scancode-llama-2-license-2023"),
    ("openrail++", "LicenseRef-scancode-bigscience-open-rail-m2"),
    ("bigscience-bloom-rail-1.0", "LicenseRef-scancode-bigscience-rail-1.0"),
    ("BigScience-BLOOM-RAIL-1.0", "LicenseRef-scancode-bigscience-rail-1.0"),
    ("gemma", "LicenseRef-scancode-gemma-tou-2024-04-01"), ("Gemma Terms of Use", "LicenseRef-scancode-gemma-tou-2024-04-01"),
    ("odc-by", "ODC-By-1.0"), ("cdla-permissive-2.0", "CDLA-Permissive-2.0"), ("openmdw-1.0", "OpenMDW-1.0"),
    ("zlib-acknowledgement", "zlib-acknowledgement"), ("Apache-2.0 AND CC-BY-4.0", "Apache-2.0 AND CC-BY-4.0"),
])
def test_normalise(raw: str, expected: str) -> None:
    norm = normalise_license(raw)
    assert norm.is_license and norm.id == expected


@pytest.mark.parametrize("raw, kind", [
    ("unlicensed", "unlicensed"), ("Undisclosed", "unlicensed"), ("", "unlicensed"),
    ("Component not include", "not-included"), ("Component Component not included", "not-included"),
    ("commercial use restrcitions; Apache 2.0, TeleChat模型社区许可协议", "unrecognised"),
])
def test_placeholders(raw: str, kind: str) -> None:
    assert normalise_license(raw).kind == kind


@pytest.mark.parametrize("license_id, family, is_open, osi", [
    ("Apache-2.0", "open-source-software", True, True), ("GPL-3.0-only", "open-source-software", True, True),
    ("CDLA-Permissive-2.0", "open-data", True, False), ("CC-BY-4.0", "open-content", True, False),
    ("OpenMDW-1.0", "open-model", True, False),
    ("LicenseRef-scancode-llama-2-license-2023", "restricted-ai", False, False),
    ("LicenseRef-scancode-bigscience-rail-1.0", "restricted-ai", False, False),
    ("CC-BY-NC-4.0", "non-commercial", False, False), ("AFL-3.0", "open-source-software", True, True),
    ("Xfig", "open-source-software", True, False), ("CC-BY-NC-3.0", "non-commercial", False, False),
    ("CC-BY-NC-2.0", "non-commercial", False, False), ("LicenseRef-scancode-commercial-license", "proprietary-or-unknown", False, False),
])
def test_classify(license_id: str, family: str, is_open: bool, osi: bool) -> None:
    info = classify(license_id)
    assert (info.family, info.open, info.osi_approved) == (family, is_open, osi)


def test_no_restricted_licence_reaches_open() -> None:
    """Invariant (os-ai-map#133): nothing restricted, non-commercial or unknown is classified open."""
    from weightaudit.openness.licenses import _table

    for license_id, row in _table().by_id.items():
        info = classify(license_id)
        if row["category"] in ("restricted-ai", "restricted-data", "restricted-content", "non-commercial"):
            assert not info.open and not info.osi_approved and not mot_is_open(license_id), license_id


@pytest.mark.parametrize("text, expected, line", [
    ("\n\n   Apache License\n   Version 2.0, January 2004\n", "Apache-2.0", 3),
    ("LLAMA 2 COMMUNITY LICENSE AGREEMENT\nLlama 2 Version Release Date: July 18, 2023\n",
     "LicenseRef-scancode-llama-2-license-2023", 1),
    ("LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\n", "LicenseRef-scancode-llama-3.1-license-2024", 1),
    ("Copyright\n\nBigScience RAIL License v1.0\n", "LicenseRef-scancode-bigscience-rail-1.0", 3),
    ("MIT License\n\nCopyright (c) 2024\n\nPermission is hereby granted, free of charge, to any person obtaining a copy",
     "MIT", 1),
    ("Gemma Terms of Use\n\nLast modified: April 1, 2024\n", "LicenseRef-scancode-gemma-tou-2024-04-01", 1),
    ("Attribution-NonCommercial 4.0 International\n", "CC-BY-NC-4.0", 1),
])
def test_identify_text(text: str, expected: str, line: int) -> None:
    match = identify_license_text(text)
    assert match is not None and match.id == expected and match.line == line


def test_unknown_text_is_not_identified() -> None:
    assert identify_license_text("All rights reserved. Do not copy.") is None


def test_mot_tests_are_exact() -> None:
    assert mot_is_open("Apache-2.0") and not mot_is_open("Apache 2.0") and not mot_is_open("apache-2.0")
    assert mot_is_open("ODC-By-1.0") and mot_is_open("OpenMDW-1.0") and not mot_is_open("PDDL-1.0")
    assert mot_type_appropriate("Apache-2.0", "document") and not mot_type_appropriate("Apache-2.0", "data")
