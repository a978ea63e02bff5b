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

import ipaddress
import os
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from turncheck.explain import Explanation
from turncheck.urls import hostport

if TYPE_CHECKING:
    from turncheck.browser import BrowserView
    from turncheck.relay import RelayResult
    from turncheck.require import Requirement

SCHEMA = 1

# Chromium's type preferences (p2p/base/p2p_constants.h): host 126, srflx 100; relays by the
# client-to-server protocol, UDP 3 (2 before Chromium 146), TCP 1, TLS 0. Firefox's nICEr
# computes its own priorities; these lines are Chromium's.
_TYPE_PREF = {"host": 126, "prflx": 110, "srflx": 100}
_RELAY_TYPE_PREF = {"udp": 3, "tcp": 1, "tls": 0}
_FIRST_NETWORK = 127  # rtc_base/network.cc kHighestNetworkPreference: the first network
# One ICE tie-breaker per run, as Chromium has one per RTCPeerConnection: it is part of the
# foundation (api/candidate.cc ComputeFoundation), so no two sessions share foundations.
_TIE_BREAKER = int.from_bytes(os.urandom(8), "big")


def address_precedence(address: str) -> int:
    """rtc_base/ip_address.cc IPAddressPrecedence: IPv4 30; IPv6 by kind (global 40)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return 0
    if ip.version == 4:
        return 30
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.is_loopback:
        return 60
    if ip in ipaddress.IPv6Network("fc00::/7"):
        return 50
    if ip.ipv4_mapped is not None:
        return 30
    if ip in ipaddress.IPv6Network("2002::/16"):
        return 20
    if ip in ipaddress.IPv6Network("2001::/32"):
        return 10
    if ip in ipaddress.IPv6Network("::/96") or ip.is_site_local:
        return 1
    return 40


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
    relay_preference: int = 0  # Chromium: N for the first of N TURN URLs, ..., 1 for the last

    @property
    def priority(self) -> int:
        """api/candidate.cc GetPriority: (type << 24) | (local << 8) | (256 - component),
        local = ((network preference << 8) | address precedence) + relay preference."""
        if self.relay_protocol is not None:
            kind = _RELAY_TYPE_PREF[self.relay_protocol]
        else:
            kind = _TYPE_PREF[self.type]
        local = ((_FIRST_NETWORK << 8) | address_precedence(self.address)) + self.relay_preference
        return (kind << 24) | (local << 8) | (256 - 1)

    @property
    def foundation(self) -> str:
        """api/candidate.cc ComputeFoundation: CRC-32 of type, base address, protocol, relay
        protocol and the session's tie-breaker. The base of a relay is the relayed address,
        of a srflx the local address."""
        base = self.address if self.type == "relay" else (self.related_address or self.address)
        seed = f"{self.type}{base}{self.protocol}{self.relay_protocol or ''}{_TIE_BREAKER}"
        return str(zlib.crc32(seed.encode()))

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
    extra: bool = False  # a check the browser would not make (browser.py)
    # What kind of failure, for the browser's icecandidateerror: dns, timeout, invalid,
    # connect, timeout-connect, tls, auth, error, protocol, relay, internal.
    cause: str | None = None

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
            "extra": self.extra,
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
    browser: BrowserView | None = None
    every_check: bool = False  # --transport: the user chose the checks; all must pass

    @property
    def ok(self) -> bool:
        """The exit rule (README "Exit codes"): requirements when given; with --transport
        every check; else the browser's answer: would a call with this configuration work?"""
        if self.requirements:
            return all(r.ok for r in self.requirements)
        if self.every_check or self.browser is None:
            return bool(self.checks) and all(c.ok for c in self.checks)
        return calls_work(self.browser)

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
            "browser": None if self.browser is None else self.browser.to_json(),
        }


def calls_work(view: BrowserView) -> bool:
    """A browser gets what a call needs: a relay candidate that carries media (when the
    relay check ran) for a configuration with TURN or a relay policy; else a srflx."""
    if not view.ok:
        return False
    return view.relays_media is not False
