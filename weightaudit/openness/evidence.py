"""Evidence: where a fact about a release came from, and how sure we are of it.

Confidence levels (research/openness.md 2.1), strongest first:

- ``verified``  the artifact is in the release folder and was read (a weight file, a LICENSE text, train.py);
- ``declared``  structured metadata says so (model-card YAML front matter, config.json);
- ``known``     a link or Hub id in the card resolves to a known artifact of the knowledge base (MOT record,
                curated table, ``--knowledge`` rows), which gives its status and licence with the source named;
- ``mentioned`` a link or prose in the model card points to it;
- ``attested``  the user's declaration file (MOF YAML) says so;
- ``absent``    looked for and not found;
- ``unknown``   could not be looked for (nothing to read).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Confidence(str, enum.Enum):
    VERIFIED = "verified"
    DECLARED = "declared"
    KNOWN = "known"
    MENTIONED = "mentioned"
    ATTESTED = "attested"
    ABSENT = "absent"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Higher is stronger; used to pick the best evidence for a component."""
        return {"verified": 6, "declared": 5, "known": 4, "mentioned": 3, "attested": 2, "absent": 1,
                "unknown": 0}[self.value]


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence. ``source`` names the file and line or the card field (``README.md:3 license``),
    ``detail`` says what was seen there, ``url`` is set when the evidence is a link."""

    source: str
    detail: str
    confidence: Confidence
    url: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"source": self.source, "detail": self.detail, "confidence": self.confidence.value}
        if self.url:
            out["url"] = self.url
        return out

    def short(self) -> str:
        return f"{self.source} ({self.detail})" if self.detail else self.source
