"""Relay capabilities, each proven by the exchange that uses it, with data both ways.

    tcp-relay        RFC 6062: two TCP allocations A and B on one server; A Connects to B's
                     relayed address, B gets the ConnectionAttempt and binds it, data both
                     ways over the two data connections (or A Connects to --peer, a TCP echo)
    ipv6-relay       REQUESTED-ADDRESS-FAMILY IPv6 (RFC 8656 §7.1): two IPv6 relays echo each
                     other (or one relays to --peer, when that is an IPv6 echo)
    dual-allocation  ADDITIONAL-ADDRESS-FAMILY IPv6 (RFC 8656 §7.2): two dual allocations
                     echo each other through each family in turn

Every peer is one turncheck holds (its own relayed addresses) or the operator's --peer, so
no data and no Connect go anywhere else; every allocation is made by `checks.allocated`
and deleted on every path. Offered or not is INFO either way: a capability, not a flaw. A
capability the server grants but that carries no data is LOW: a client that asks for it
gets a relay that does not work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from turncheck.audit import AuditContext, Check
from turncheck.checks import FamilyRelay, TcpRelay, family_relay_check, tcp_relay_check
from turncheck.findings import Finding, Severity
from turncheck.relay import RelaySettings, family_of
from turncheck.resolve import Endpoint
from turncheck.results import Explanation, RelayResult
from turncheck.transport import Address
from turncheck.urls import Transport, fmt_address

# A few packets per family are proof enough; the audit runs many checks at once.
PROOF = RelaySettings(count=5, size=100, interval=0.005, grace=1.0)
# Allocate errors that mean "not offered": 420 a server that does not know the attribute
# (REQUESTED-ADDRESS-FAMILY is comprehension-required), 440 no relay of that family, 442 no
# TCP relays, 400 coturn's "Dual allocation cannot be supported in the current server
# configuration". Anything else (auth, quota, capacity) means the check could not tell.
NOT_OFFERED = frozenset({400, 420, 440, 442})

TCP_HINT = (
    "TCP relays let a client reach TCP services through the server: the peer ACL must "
    "cover Connect too (coturn: denied-peer-ip); turn them off where no client needs them "
    "(coturn: no-tcp-relay)"
)


def _endpoint(ctx: AuditContext, *transports: Transport) -> Endpoint | None:
    """The first TURN endpoint over *transports* (in their order), one with credentials
    first: the checks here allocate."""
    turn = [ep for ep in ctx.endpoints if ep.target.url.is_turn]
    for transport in transports:
        for ep in sorted(turn, key=lambda e: e.target.entry.credentials is None):
            if ep.target.transport is transport:
                return ep
    return None


def _target(ep: Endpoint) -> str:
    return f"{ep.target.url} ({fmt_address((ep.address, ep.port))})"


def _echo(result: RelayResult) -> str:
    stats = result.stats
    if stats is None:
        return "no data"
    rtt = "" if stats.rtt_avg is None else f", RTT {stats.rtt_avg * 1000:.1f} ms"
    return f"{stats.received}/{stats.sent} packets echoed{rtt}"


def _skipped(check: str, why: str, target: str, hint: str = "") -> Finding:
    return Finding(check, Severity.INFO, why, hint=hint, target=target, skipped=True)


def _could_not_tell(check: str, result: RelayResult, target: str) -> Finding:
    error = result.error
    why = error.reason if error is not None else "no answer"
    return _skipped(check, f"{check}: could not tell ({why})", target, error.hint if error else "")


async def tcp_relay(ctx: AuditContext) -> Sequence[Finding]:
    """RFC 6062 TCP allocations: offered or not, and proven with data both ways."""
    check = "tcp-relay"
    ep = _endpoint(ctx, Transport.TCP, Transport.TLS)
    if ep is None:
        return [
            _skipped(
                check,
                "TCP relays (RFC 6062) not checked: they need a TURN URL over TCP or TLS",
                ", ".join(ctx.hosts),
                "add turn:HOST?transport=tcp or turns:HOST to the audited URLs",
            )
        ]
    target = _target(ep)
    found = await tcp_relay_check(ep, (ep.address, ep.port), ctx.settings, PROOF, ctx.peer)
    return [_tcp_finding(found, target, ctx.peer is None)]


def _tcp_finding(found: TcpRelay, target: str, own: bool) -> Finding:
    check = "tcp-relay"
    result = found.result
    if found.relayed is None:
        if found.refused is not None and found.refused[0] in NOT_OFFERED:
            code, phrase = found.refused
            return Finding(
                check,
                Severity.INFO,
                f"TCP relays (RFC 6062) not offered: Allocate REQUESTED-TRANSPORT TCP got "
                f"{code} {phrase}".rstrip(),
                evidence=f"Allocate REQUESTED-TRANSPORT=6 → {code} {phrase}".rstrip(),
                target=target,
            )
        return _could_not_tell(check, result, target)
    relayed = fmt_address(found.relayed)
    if found.between:
        steps = (
            f"Connect to the second TCP allocation {found.peer} → CONNECTION-ID; "
            "ConnectionAttempt there; ConnectionBind on a new connection at each end"
        )
    else:
        steps = f"Connect to {found.peer} → CONNECTION-ID; ConnectionBind on a new connection"
    evidence = f"TCP allocation {relayed}; {steps}; {_echo(result)}"
    if result.ok:
        return Finding(
            check,
            Severity.INFO,
            f"TCP relays (RFC 6062) offered: {relayed} connected to {found.peer}, data both ways",
            hint=TCP_HINT,
            evidence=evidence,
            target=target,
        )
    error = result.error
    if _own_relay_refused(error, own):
        return _untested(check, "TCP relays (RFC 6062) granted", evidence, target)
    return Finding(
        check,
        Severity.LOW,
        "TCP relay allocations are granted but do not relay: "
        + (error.reason if error else "no data came back"),
        hint=error.hint if error else TCP_HINT,
        evidence=evidence,
        target=target,
    )


async def ipv6_relay(ctx: AuditContext) -> Sequence[Finding]:
    """IPv6 relays (REQUESTED-ADDRESS-FAMILY): offered or not, and proven with data."""
    check = "ipv6-relay"
    ep = _endpoint(ctx, Transport.UDP, Transport.TCP, Transport.TLS)
    if ep is None:
        return [_skipped(check, "IPv6 relays not checked: no TURN URL", ", ".join(ctx.hosts))]
    target = _target(ep)
    peer: Address | None = ctx.peer
    if peer is not None and family_of(peer[0]) != "ipv6":
        peer = None  # an IPv4 peer cannot be reached from an IPv6 relay: our own pair instead
    found = await family_relay_check(
        ep, (ep.address, ep.port), ctx.settings, replace(PROOF, peer=peer), "ipv6"
    )
    return [_family_finding(check, "IPv6 relays", found, target, ctx.peer is None)]


async def dual_allocation(ctx: AuditContext) -> Sequence[Finding]:
    """RFC 8656 dual allocation (ADDITIONAL-ADDRESS-FAMILY): data through each family."""
    check = "dual-allocation"
    ep = _endpoint(ctx, Transport.UDP, Transport.TCP, Transport.TLS)
    if ep is None:
        return [_skipped(check, "dual allocation not checked: no TURN URL", ", ".join(ctx.hosts))]
    target = _target(ep)
    # Our own pair always: a --peer has one family, a dual allocation two.
    found = await family_relay_check(ep, (ep.address, ep.port), ctx.settings, PROOF, "dual")
    return [_family_finding(check, "dual allocation (RFC 8656)", found, target, ctx.peer is None)]


def _family_finding(check: str, what: str, found: FamilyRelay, target: str, own: bool) -> Finding:
    result = found.result
    if not found.relayed:
        if found.refused is not None and found.refused[0] in NOT_OFFERED:
            code, phrase = found.refused
            return Finding(
                check,
                Severity.INFO,
                f"{what} not offered: Allocate got {code} {phrase}".rstrip(),
                evidence=_asked(found) + f" → {code} {phrase}".rstrip(),
                target=target,
            )
        return _could_not_tell(check, result, target)
    relayed = " + ".join(fmt_address(r) for r in found.relayed)
    evidence = f"{_asked(found)} → {relayed}"
    if found.address_error is not None:
        fam, code, phrase = found.address_error
        evidence += f", ADDRESS-ERROR-CODE {fam} {code} {phrase}".rstrip()
    for family, echoed in found.families.items():
        evidence += f"; {family}: {_echo(echoed)}"
    wanted = ("ipv4", "ipv6") if found.asked == "dual" else (found.asked,)
    missing = [f for f in wanted if not found.has(f)]
    if missing:
        # The server read the request but could not serve every family (ADDRESS-ERROR-CODE),
        # or ignored it: either way a client gets fewer families than it asked for.
        gone = found.families.get(missing[0])
        why = gone.error.reason if gone is not None and gone.error is not None else "not given"
        return Finding(
            check,
            Severity.INFO,
            f"{what} not offered: {why}",
            hint=gone.error.hint if gone is not None and gone.error is not None else "",
            evidence=evidence,
            target=target,
        )
    if result.ok:
        words = f"{what} offered: {relayed}, data relayed through "
        words += "each family" if found.asked == "dual" else "it"
        hint = ""
        if found.attribute == "draft":
            words += " (at the draft's code point 0x8032 only)"
            hint = (
                "the server reads ADDITIONAL-ADDRESS-FAMILY at draft-ietf-tram-turnbis's 0x8032 "
                "(coturn), not RFC 8656's 0x8000: RFC 8656 clients get IPv4 alone"
            )
        return Finding(check, Severity.INFO, words, hint=hint, evidence=evidence, target=target)
    error = result.error
    if _own_relay_refused(error, own):
        return _untested(check, f"{what} granted", evidence, target)
    return Finding(
        check,
        Severity.LOW,
        f"{what} granted but not relaying: " + (error.reason if error else "no data came back"),
        hint=error.hint if error else "",
        evidence=evidence,
        target=target,
    )


def _own_relay_refused(error: Explanation | None, own: bool) -> bool:
    """A 403 to our own relay address (*own*: no --peer): the server's ACL refuses its own
    addresses as peers (as hardening guides advise), so data between two of our allocations
    cannot go; that says nothing about relaying to the peers of a call."""
    return own and error is not None and error.code == 403


def _untested(check: str, what: str, evidence: str, target: str) -> Finding:
    return Finding(
        check,
        Severity.INFO,
        f"{what}; relaying not tested: the server refuses its own relay addresses as peers "
        "(as hardening guides advise)",
        hint="give --peer IP:PORT, an echo you run that the server may relay to, to test it",
        evidence=evidence,
        target=target,
    )


def _asked(found: FamilyRelay) -> str:
    if found.asked == "dual":
        point = {"draft": "0x8032 (draft)", "rfc8656": "0x8000"}.get(found.attribute or "")
        if point is None:  # neither read: both were asked, or the first was refused
            point = "0x8000, then 0x8032 (draft)" if found.relayed else "0x8000"
        return f"Allocate ADDITIONAL-ADDRESS-FAMILY=IPv6 at {point}"
    return f"Allocate REQUESTED-ADDRESS-FAMILY={found.asked.replace('ip', 'IP')}"


CHECKS: tuple[Check, ...] = (tcp_relay, ipv6_relay, dual_allocation)
