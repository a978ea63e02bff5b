"""What `turncheck audit` found: findings with a severity, as testssl.sh reports them.

A finding is a value: an id that stays stable between releases (rules in SARIF, alert
labels in serve), a severity, one line of what was found, the hint that closes it on the
server in front of the user, the CVEs it concerns, and the evidence (the exchange that
proved it). Checks that pass say so too (severity OK), so the report shows what was
checked; checks that were not run say why (severity INFO, skipped=True).

Nothing here holds a credential: evidence names addresses, codes and attributes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """testssl.sh's scale, lowest first; OK is a check that passed."""

    OK = 0
    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @classmethod
    def parse(cls, text: str) -> Severity:
        """'medium' → MEDIUM; ValueError naming the choices otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"'{text}' is not a severity ({choices})") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding of one check against one server."""

    id: str  # stable: "open-relay", "peer-acl-loopback", "tls-1.0", "software-version"
    severity: Severity
    finding: str  # one line: what was found, in words
    hint: str = ""  # what to change, naming the setting of the server in front of the user
    cve: tuple[str, ...] = ()  # CVE or GHSA ids
    evidence: str = ""  # the exchange that proves it (addresses, codes, attributes)
    target: str = ""  # the URL, or host:port, it concerns
    skipped: bool = False  # the check did not run; `finding` says why

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.name,
            "finding": self.finding,
            "cve": list(self.cve),
            "hint": self.hint,
            "evidence": self.evidence,
            "target": self.target,
            "skipped": self.skipped,
        }
