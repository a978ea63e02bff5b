"""Result values: what a check found, success and failure alike (the bottom layer).

A check returns a CheckResult; its candidates, its relay figures and its explained failure
are values here too. The browser models, the explanations and the renderers read them;
nothing here reads those back. Credentials never enter these values.
"""

from __future__ import annotations

import ipaddress
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

from turncheck.urls import hostport


@dataclass(frozen=True, slots=True)
class Explanation:
    """A failure in words: the STUN/TURN code when there is one, what happened, what to try."""

    code: int | None
    reason: str
    hint: str


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
class PathStats:
    """Echo statistics of one relaying path."""

    path: str
    sent: int
    received: int
    rtt_min: float | None
    rtt_avg: float | None
    rtt_max: float | None
    jitter: float | None
    out_of_order: int
    duplicates: int

    @property
    def loss_pct(self) -> float:
        return 0.0 if self.sent == 0 else 100.0 * (self.sent - self.received) / self.sent

    def to_json(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "path": self.path,
            "sent": self.sent,
            "received": self.received,
            "loss_pct": round(self.loss_pct, 2),
            "rtt_ms": {"min": ms(self.rtt_min), "avg": ms(self.rtt_avg), "max": ms(self.rtt_max)},
            "jitter_ms": ms(self.jitter),
            "out_of_order": self.out_of_order,
            "duplicates": self.duplicates,
        }


@dataclass(frozen=True, slots=True)
class RelayResult:
    """The relay check of one allocation: its main path's figures, each path's outcome."""

    peer: str  # "second allocation at <addr>" or the --peer address
    stats: PathStats | None  # the path reported: channel when it works, else indication
    paths: dict[str, PathStats | Explanation] = field(default_factory=dict)
    error: Explanation | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.stats is not None and self.stats.received > 0

    @property
    def carries_calls(self) -> bool:
        """Relays over a channel, as a browser's media goes: Chromium asks for a ChannelBind
        with the first real data and drops the connection when it fails (turn_port.cc
        TurnEntry::OnChannelBindError/Timeout: FailAndPruneConnection)."""
        channel = self.paths.get("channel")
        return self.ok and isinstance(channel, PathStats) and channel.received > 0

    @property
    def channel_failure(self) -> Explanation | None:
        """Why the ChannelBind failed, when it did."""
        channel = self.paths.get("channel")
        return channel if isinstance(channel, Explanation) else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = self.stats.to_json() if self.stats else {"path": None}
        out["peer"] = self.peer
        out["paths"] = {
            name: (
                {"ok": value.received > 0, "sent": value.sent, "received": value.received}
                if isinstance(value, PathStats)
                else {"ok": False, "error": _error_json(value)}
            )
            for name, value in self.paths.items()
        }
        out["error"] = _error_json(self.error) if self.error else None
        return out


def _error_json(e: Explanation) -> dict[str, Any]:
    return {"code": e.code, "reason": e.reason, "hint": e.hint}


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
            "error": None if self.error is None else _error_json(self.error),
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
