"""Result values of a run and their JSON form (the schema lives here).

JSON schema 1 (README "JSON output"):

    {"schema": 1, "ok": bool, "verdict": str,
     "checks": [{"url", "server", "transport", "kind", "ok", "rtt_ms",
                 "candidates": [{"type", "address", "port", "protocol", ...}],
                 "error": null | {"code", "reason", "hint"}, "via", "details"}],
     "nat": {"symmetric": bool | null, "basis": str}}

Credentials never enter these values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from turncheck.explain import Explanation
from turncheck.urls import hostport

if TYPE_CHECKING:
    from turncheck.relay import RelayResult
    from turncheck.require import Requirement

SCHEMA = 1

# RFC 8445 §5.1.2.2 type preferences; a UDP relay is preferred to TCP and TLS ones (as Chrome).
_TYPE_PREF = {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}
_RELAY_LOCAL_PREF = {"udp": 2, "tcp": 1, "tls": 0}


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ICE candidate as the Trickle ICE page shows it."""

    type: str  # srflx | relay
    address: str
    port: int
    protocol: str  # udp | tcp: the candidate's own transport
    related_address: str | None = None
    related_port: int | None = None
    relay_protocol: str | None = None  # client-to-server leg of a relay: udp | tcp | tls

    @property
    def priority(self) -> int:
        local = (
            65535 if self.relay_protocol is None else _RELAY_LOCAL_PREF[self.relay_protocol] << 8
        )
        return (_TYPE_PREF[self.type] << 24) + (local << 8) + (256 - 1)

    @property
    def foundation(self) -> str:
        seed = f"{self.type}/{self.protocol}/{self.related_address}/{self.relay_protocol}"
        return str(int(hashlib.sha1(seed.encode()).hexdigest()[:8], 16))

    def sdp(self) -> str:
        """RFC 8839 candidate line."""
        line = (
            f"candidate:{self.foundation} 1 {self.protocol} {self.priority} "
            f"{self.address} {self.port} typ {self.type}"
        )
        if self.related_address is not None:
            line += f" raddr {self.related_address} rport {self.related_port}"
        return line

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
        }
        if self.relay_protocol is not None:
            out["relay_protocol"] = self.relay_protocol
        out["sdp"] = self.sdp()
        return out

    @property
    def hostport(self) -> str:
        return hostport(self.address, self.port)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one URL, transport and server address: success and failure alike."""

    url: str
    transport: str
    kind: str  # stun (Binding) | turn (Allocate)
    server: str | None  # the address actually contacted (after a redirect, the alternate)
    port: int | None
    ok: bool
    via: str = ""
    rtt_ms: float | None = None
    candidates: tuple[Candidate, ...] = ()
    error: Explanation | None = None
    timed_out: bool = False
    invalid_answers: bool = False  # timed out while ignoring answers that failed validation
    details: dict[str, Any] = field(default_factory=dict)
    # Where the server saw us: (local socket, mapped address) for the NAT comparison.
    local: str | None = None
    relay: RelayResult | None = None  # the relay check of a TURN allocation

    def candidate(self, ctype: str) -> Candidate | None:
        return next((c for c in self.candidates if c.type == ctype), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "server": self.server,
            "transport": self.transport,
            "kind": self.kind,
            "ok": self.ok,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "candidates": [c.to_json() for c in self.candidates],
            "error": None
            if self.error is None
            else {"code": self.error.code, "reason": self.error.reason, "hint": self.error.hint},
            "via": self.via,
            "details": dict(self.details),
        }
        if self.kind == "turn":
            out["relay_test"] = None if self.relay is None else self.relay.to_json()
        return out


@dataclass(frozen=True, slots=True)
class NatVerdict:
    symmetric: bool | None
    basis: str

    @property
    def text(self) -> str:
        word = {True: "yes", False: "no", None: "unknown"}[self.symmetric]
        return f"symmetric NAT: {word} ({self.basis})"

    def to_json(self) -> dict[str, Any]:
        return {"symmetric": self.symmetric, "basis": self.basis}


@dataclass(frozen=True, slots=True)
class Report:
    checks: tuple[CheckResult, ...]
    nat: NatVerdict
    verdict: str
    notes: tuple[str, ...] = ()
    relay_only: bool = False  # iceTransportPolicy "relay": only relay checks count
    advice: tuple[str, ...] = ()  # about the configuration itself (config.advice)
    requirements: tuple[Requirement, ...] = ()  # --require/--max-rtt/--max-loss results

    @property
    def ok(self) -> bool:
        """The exit rule: requirements when given (they replace "every check passed")."""
        if self.relay_only and not any(c.relay is not None and c.relay.ok for c in self.checks):
            return False
        if self.requirements:
            return all(r.ok for r in self.requirements)
        if self.relay_only:
            return True
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "verdict": self.verdict,
            "checks": [c.to_json() for c in self.checks],
            "nat": self.nat.to_json(),
            "notes": list(self.notes),
            "advice": list(self.advice),
            "requirements": [r.to_json() for r in self.requirements],
            "relay_only": self.relay_only,
        }
