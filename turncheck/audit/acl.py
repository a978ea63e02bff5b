"""The peer ACL matrix: which peer addresses the relay accepts, by CreatePermission and
ChannelBind alone.

RFC 8656 §9 and §11: CreatePermission and ChannelBind install state on the server and send
nothing to the peer, so the server's answer (success or 403 Forbidden) is the whole answer,
and no packet ever reaches the addresses probed here. Each form is asked by CreatePermission
and then by ChannelBind (a server that checks its ACL in one handler only lets the other
through), a few at a time, on one allocation that is deleted at the end; a server that caps
the permissions of an allocation (p1_stun: 508 past 10) gets the rest asked on another, one
allocation after the other.

An IPv6 peer on an IPv4 relay (and the other way round) gets 443 Peer Address Family
Mismatch (RFC 8656 §9.1): that says nothing about the ACL. Those forms are asked again on
a relay of the other family (REQUESTED-ADDRESS-FAMILY, §7.2); a server that grants none
(440) cannot relay to them at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from turncheck import stun
from turncheck.audit import AuditContext, Check
from turncheck.checks import CheckSettings, allocated
from turncheck.errors import AuthFailure, CheckFailure, ErrorResponse, UnprotectedAnswer
from turncheck.explain import COTURN, P1_STUN, PION, explain, server_family
from turncheck.findings import Finding, Severity
from turncheck.resolve import Endpoint
from turncheck.transport import Address
from turncheck.turn import FIRST_CHANNEL, Allocation, Redirect
from turncheck.urls import Transport, fmt_address

CONCURRENCY = 4  # CreatePermission/ChannelBind transactions in flight at once
MAX_ROUNDS = 6  # allocations (one after another) for servers that cap permissions
PEER_PORT = 9  # ChannelBind names a transport address; nothing is ever sent to it
TEREDO_SERVER = "192.0.2.1"  # RFC 5737 documentation address, as the Teredo server field

# The address groups, worst first: (finding id, severity when any form gets through, words).
GROUPS: dict[str, tuple[str, Severity, str]] = {
    "loopback": ("peer-acl-loopback", Severity.CRITICAL, "loopback and unspecified addresses"),
    "metadata": ("peer-acl-metadata", Severity.CRITICAL, "cloud metadata addresses"),
    "private": ("peer-acl-private", Severity.HIGH, "private, shared and link-local addresses"),
    "multicast": (
        "peer-acl-multicast",
        Severity.MEDIUM,
        "multicast, broadcast and reserved addresses",
    ),
    # The server's own addresses: services bound there see the server itself as the source.
    # LOW: some deployments allow them on purpose (TURN-to-TURN relaying through one server).
    "self": ("peer-acl-self", Severity.LOW, "the server's own relay and listening addresses"),
}

# What a deny rule must cover, per group (the most specific range that holds a form is named
# in the hint). The IPv6 embeddings of IPv4 (RFC 4291 §2.5.5, RFC 6052, RFC 3056, RFC 4380)
# belong to every group whose IPv4 addresses they carry.
_EMBEDDINGS = ("::ffff:0:0/96", "::/96", "64:ff9b::/96", "2002::/16", "2001::/32")
RANGES: dict[str, tuple[str, ...]] = {
    "loopback": ("127.0.0.0/8", "0.0.0.0/8", "::1/128", "::/128", *_EMBEDDINGS),
    "metadata": ("169.254.0.0/16", "100.64.0.0/10", "fd00:ec2::/32", *_EMBEDDINGS),
    "private": (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        *_EMBEDDINGS,
    ),
    "multicast": ("224.0.0.0/4", "240.0.0.0/4", "ff00::/8"),
    "self": (),
}


@dataclass(frozen=True, slots=True)
class PeerForm:
    """One peer address to ask about, and what it is."""

    group: str  # a key of GROUPS
    address: str
    note: str = ""  # "IPv4-mapped 127.0.0.1", "AWS IMDS over IPv6"
    port: int = PEER_PORT
    embeds: str | None = None  # the IPv4 address carried inside an IPv6 form

    @property
    def label(self) -> str:
        # The server's own addresses with their ports (a relay and a listener share an IP).
        shown = fmt_address((self.address, self.port)) if self.group == "self" else self.address
        return f"{shown} ({self.note})" if self.note else shown

    @property
    def ipv6(self) -> bool:
        return ":" in self.address


def mapped(v4: str) -> str:
    """RFC 4291 §2.5.5.2 IPv4-mapped: ::ffff:a.b.c.d."""
    return f"::ffff:{ipaddress.IPv4Address(v4)}"


def compatible(v4: str) -> str:
    """RFC 4291 §2.5.5.1 IPv4-compatible (deprecated): ::a.b.c.d."""
    return f"::{ipaddress.IPv4Address(v4)}"


def nat64(v4: str) -> str:
    """RFC 6052 §2.1 well-known NAT64 prefix: 64:ff9b::/96."""
    return str(ipaddress.IPv6Address((0x0064FF9B << 96) | int(ipaddress.IPv4Address(v4))))


def six_to_four(v4: str) -> str:
    """RFC 3056 §2 6to4: 2002:WWXX:YYZZ::/48."""
    return str(ipaddress.IPv6Address((0x2002 << 112) | (int(ipaddress.IPv4Address(v4)) << 80)))


def teredo(client: str, port: int = PEER_PORT, server: str = TEREDO_SERVER) -> str:
    """RFC 4380 §4: 2001:0000:<server>:<flags>:<port>:<client>, the client's port and
    address obfuscated (every bit inverted)."""
    value = (
        (0x20010000 << 96)
        | (int(ipaddress.IPv4Address(server)) << 64)
        | ((port ^ 0xFFFF) << 32)
        | (int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF)
    )
    return str(ipaddress.IPv6Address(value))


def embedded(group: str, v4: str) -> tuple[PeerForm, ...]:
    """The IPv6 spellings of an IPv4 address that an IPv4-only deny list misses."""
    return (
        PeerForm(group, mapped(v4), "IPv4-mapped", embeds=v4),
        PeerForm(group, compatible(v4), "IPv4-compatible", embeds=v4),
        PeerForm(group, nat64(v4), f"NAT64 of {v4}", embeds=v4),
        PeerForm(group, six_to_four(v4), f"6to4 of {v4}", embeds=v4),
        PeerForm(group, teredo(v4), f"Teredo of {v4}", embeds=v4),
    )


DEFAULT_FORMS: tuple[PeerForm, ...] = (
    PeerForm("loopback", "127.0.0.1"),
    PeerForm("loopback", "127.1.2.3", "loopback 127/8"),
    PeerForm("loopback", "0.0.0.0", "unspecified: Linux delivers it to loopback"),
    PeerForm("loopback", "::1"),
    PeerForm("loopback", "::", "unspecified"),
    *embedded("loopback", "127.0.0.1"),
    PeerForm("metadata", "169.254.169.254", "AWS, GCP, Azure, OpenStack metadata"),
    PeerForm("metadata", "fd00:ec2::254", "AWS IMDS over IPv6"),
    PeerForm("metadata", "100.100.100.200", "Alibaba Cloud metadata"),
    *embedded("metadata", "169.254.169.254"),
    PeerForm("private", "10.0.0.1", "RFC 1918"),
    PeerForm("private", "172.16.0.1", "RFC 1918"),
    PeerForm("private", "192.168.0.1", "RFC 1918"),
    PeerForm("private", "100.64.0.1", "shared address space, RFC 6598"),
    PeerForm("private", "169.254.1.1", "link-local"),
    PeerForm("private", "fc00::1", "unique local"),
    PeerForm("private", "fd00::1", "unique local"),
    PeerForm("private", "fe80::1", "link-local"),
    PeerForm("private", mapped("10.0.0.1"), "IPv4-mapped", embeds="10.0.0.1"),
    PeerForm("private", mapped("192.168.0.1"), "IPv4-mapped", embeds="192.168.0.1"),
    PeerForm("multicast", "224.0.0.1", "all-hosts multicast"),
    PeerForm("multicast", "239.255.255.250", "SSDP multicast"),
    PeerForm("multicast", "ff02::1", "all-nodes multicast"),
    PeerForm("multicast", "255.255.255.255", "limited broadcast"),
    PeerForm("multicast", "240.0.0.1", "reserved 240/4"),
)

# What an exchange came to.
GRANTED = "granted"
DENIED = "denied"  # 403 Forbidden
MISMATCH = "mismatch"  # 443 Peer Address Family Mismatch: not asked on a relay of its family
UNRELAYABLE = "unrelayable"  # no relay of the form's family to be had
REFUSED = "refused"  # another error response
FULL = "full"  # 508 Insufficient Capacity: no room for another permission; ask elsewhere
FAILED = "failed"  # no usable answer: says nothing

# Error responses that say nothing about the peer: the allocation is gone (437), the user
# or server is out of room (486), the server failed (500).
SAYS_NOTHING = frozenset({437, 486, 500})


@dataclass(frozen=True, slots=True)
class Reply:
    state: str
    text: str


@dataclass(frozen=True, slots=True)
class Probe:
    """What the server said to one form, on which relay."""

    form: PeerForm
    relay: str  # "IPv4 relay 127.0.0.1:50000"
    permission: Reply
    channel: Reply | None = None

    @property
    def allowed(self) -> bool:
        return self.permission.state == GRANTED or (
            self.channel is not None and self.channel.state == GRANTED
        )

    @property
    def conclusive(self) -> bool:
        """Allowed, or refused by an answer (a timeout says nothing either way)."""
        return self.allowed or self.permission.state in (DENIED, REFUSED, UNRELAYABLE)

    @property
    def evidence(self) -> str:
        if self.permission.state == UNRELAYABLE or not self.relay:
            return f"{self.form.label}: {self.permission.text}"
        said = f"CreatePermission {self.permission.text}"
        if self.channel is not None:
            said += f", ChannelBind {self.channel.text}"
        return f"{self.form.label}: {said} ({self.relay})"


def _reply(exc: BaseException) -> Reply:
    """An exchange's failure as a Reply."""
    if isinstance(exc, ErrorResponse):
        text = f"{exc.code} {exc.phrase}".strip() if exc.code else "error without ERROR-CODE"
        if exc.code == 403:
            return Reply(DENIED, text)
        if exc.code == 443:
            return Reply(MISMATCH, text)
        if exc.code == 508:
            return Reply(FULL, text)
        if exc.code in SAYS_NOTHING:
            return Reply(FAILED, text)
        return Reply(REFUSED, text)
    if isinstance(exc, AuthFailure):
        return Reply(REFUSED, f"{exc.code} {exc.phrase}".strip())
    if isinstance(exc, UnprotectedAnswer):
        if exc.kind == "success":
            # The server said yes, unsigned: still a yes for an audit of its ACL.
            return Reply(GRANTED, "granted (answer without MESSAGE-INTEGRITY)")
        said = f"{exc.code} {exc.phrase}".strip() if exc.code else "an error without ERROR-CODE"
        return Reply(REFUSED, f"{said} without MESSAGE-INTEGRITY")
    if isinstance(exc, Redirect):
        return Reply(REFUSED, f"300 Try Alternate ({exc})")
    assert isinstance(exc, CheckFailure)
    return Reply(FAILED, f"no usable answer: {explain(exc).reason}")


async def _ask(exchange: Callable[[], Awaitable[Any]]) -> Reply:
    try:
        await exchange()
    except (CheckFailure, Redirect) as exc:
        return _reply(exc)
    return Reply(GRANTED, "granted")


def _relay_words(allocation: Allocation) -> str:
    assert allocation.relayed is not None
    family = "IPv6" if ":" in allocation.relayed[0] else "IPv4"
    return f"{family} relay {fmt_address(allocation.relayed)}"


async def probe_forms(
    allocation: Allocation,
    forms: Sequence[PeerForm],
    settings: CheckSettings,
    deadline: float,
) -> list[Probe]:
    """CreatePermission, then ChannelBind, for each form on one allocation, CONCURRENCY at a
    time; each exchange gets the run's timeout within the check's deadline."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(CONCURRENCY)
    relay = _relay_words(allocation)

    def until() -> float:
        return min(deadline, loop.time() + settings.timeout)

    async def one(form: PeerForm, number: int) -> Probe:
        async with limit:
            permission = await _ask(lambda: allocation.create_permission(form.address, until()))
            channel = None
            if permission.state not in (MISMATCH, FULL, FAILED):
                peer = (form.address, form.port)
                channel = await _ask(lambda: allocation.channel_bind(number, peer, until()))
                if channel.state == FULL:  # no room for a channel: says nothing
                    channel = Reply(FAILED, channel.text)
            return Probe(form, relay, permission, channel)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(f, FIRST_CHANNEL + i)) for i, f in enumerate(forms)]
    return [task.result() for task in tasks]


def _listening_form(ep: Endpoint) -> PeerForm:
    return PeerForm("self", ep.address, "the server's listening address", ep.port)


def _relay_form(allocation: Allocation) -> PeerForm:
    assert allocation.relayed is not None
    address, port = allocation.relayed
    return PeerForm("self", address, "the server's relay address", port)


def _target(ep: Endpoint) -> str:
    text = ep.target.url.text
    return text if ep.address in text else f"{text} ({ep.server})"


async def peer_acl(ctx: AuditContext, forms: Sequence[PeerForm] = DEFAULT_FORMS) -> list[Finding]:
    """The peer ACL matrix: one finding per address group, what got through listed."""
    ep = ctx.turn(Transport.UDP) or ctx.turn()
    if ep is None:
        return [_untested("no TURN URL to audit", "")]
    target = _target(ep)
    deadline = ctx.deadline()
    try:
        asked = await ask_on_relays(ctx, ep, [*forms, _listening_form(ep)], deadline)
    except (CheckFailure, Redirect) as exc:
        return [_no_allocation(exc, ep, target)]
    probes = asked.probes
    astray = [p.form for p in probes if p.permission.state == MISMATCH]
    if astray:
        probes = [p for p in probes if p.permission.state != MISMATCH]
        probes += await _other_family(ctx, ep, asked.family, astray, deadline)
    family = server_family(ctx.software or asked.software)
    return findings_of(probes, family, target)


@dataclass(frozen=True, slots=True)
class Asked:
    probes: list[Probe]
    family: str  # of the relays asked on: "IPv4" or "IPv6"
    software: str | None


async def ask_on_relays(
    ctx: AuditContext,
    ep: Endpoint,
    forms: Sequence[PeerForm],
    deadline: float,
    extra: dict[str, Any] | None = None,
) -> Asked:
    """Every form asked, on as few allocations as the server's limit of permissions per
    allocation allows (p1_stun's max_permissions, 10 by default, answers 508 past it): each
    allocation is deleted before the next is made, MAX_ROUNDS of them at most. The first
    allocation's failure is raised; a later one's leaves its forms unanswered."""
    server: Address = (ep.address, ep.port)
    done: list[Probe] = []
    pending = list(forms)
    family = ""
    software: str | None = None
    for round_ in range(MAX_ROUNDS):
        try:
            async with allocated(ep, server, ctx.settings, deadline, extra) as (_, allocation):
                if round_ == 0:
                    assert allocation.relayed is not None
                    family = "IPv6" if ":" in allocation.relayed[0] else "IPv4"
                    software = allocation.software
                    pending.append(_relay_form(allocation))
                got = await probe_forms(allocation, pending, ctx.settings, deadline)
        except (CheckFailure, Redirect) as exc:
            if round_ == 0:
                raise
            said = explain(exc).reason if isinstance(exc, CheckFailure) else str(exc)
            text = f"not asked: no allocation {round_ + 1} to ask on ({said})"
            return Asked(
                [*done, *(Probe(f, "", Reply(FAILED, text)) for f in pending)], family, software
            )
        full = [p for p in got if p.permission.state == FULL]
        done += [p for p in got if p.permission.state != FULL]
        if not full:
            break
        if len(full) == len(pending) or round_ == MAX_ROUNDS - 1:
            # No room even on a fresh allocation: that says nothing about the ACL.
            done += [
                dataclasses.replace(p, permission=Reply(FAILED, p.permission.text)) for p in full
            ]
            break
        pending = [p.form for p in full]
    return Asked(done, family, software)


async def _other_family(
    ctx: AuditContext,
    ep: Endpoint,
    first: str,
    forms: Sequence[PeerForm],
    deadline: float,
) -> list[Probe]:
    """The forms the first relay's family could not carry, on a relay of the other family
    (RFC 8656 §7.2 REQUESTED-ADDRESS-FAMILY)."""
    other, sample = ("IPv4", "0.0.0.0") if first == "IPv6" else ("IPv6", "::")
    family = {"REQUESTED-ADDRESS-FAMILY": stun.family_attribute(sample)}
    why = f"443 on the {first} relay"
    try:
        asked = await ask_on_relays(ctx, ep, forms, deadline, family)
    except ErrorResponse as exc:
        state = UNRELAYABLE if exc.code in (440, 442) else FAILED
        text = f"{why}; no {other} relay ({exc.code} {exc.phrase})".rstrip()
        return [Probe(f, "", Reply(state, text)) for f in forms]
    except (CheckFailure, Redirect) as exc:
        reason = explain(exc).reason if isinstance(exc, CheckFailure) else str(exc)
        text = f"{why}; no {other} relay to ask on: {reason}"
        return [Probe(f, "", Reply(FAILED, text)) for f in forms]
    if asked.family != other:
        text = f"{why}; asked for an {other} relay, the server gave {first} again"
        return [Probe(f, "", Reply(UNRELAYABLE, text)) for f in forms]
    # Still a mismatch on a relay of the form's own family: the server will not relay there.
    return [
        dataclasses.replace(
            p, permission=Reply(UNRELAYABLE, f"{why}, and {p.permission.text} on the {other}")
        )
        if p.permission.state == MISMATCH
        else p
        for p in asked.probes
    ]


def _untested(why: str, target: str, hint: str = "") -> Finding:
    return Finding(
        "peer-acl",
        Severity.INFO,
        f"the peer ACL was not checked: {why}",
        hint=hint,
        target=target,
        skipped=True,
    )


def _no_allocation(exc: CheckFailure | Redirect, ep: Endpoint, target: str) -> Finding:
    if isinstance(exc, Redirect):
        return _untested(f"the server redirects to {exc.alternate[0]}: audit that one", target)
    said = explain(exc, server=ep.server)
    if isinstance(exc, AuthFailure) and ep.target.entry.credentials is None:
        return _untested(
            "it needs an allocation, and that needs credentials",
            target,
            hint="give -u/-p or --secret-file",
        )
    return _untested(f"no allocation to ask on: {said.reason}", target, said.hint)


# -- findings ----------------------------------------------------------------------------------


def findings_of(probes: Sequence[Probe], family: str | None, target: str) -> list[Finding]:
    """One finding per address group: what got through (the group's severity), all refused
    (OK), or no answer to judge by (INFO)."""
    out: list[Finding] = []
    for group, (finding_id, severity, words) in GROUPS.items():
        mine = [p for p in probes if p.form.group == group]
        if not mine:
            continue
        evidence = "; ".join(p.evidence for p in mine)
        allowed = [p for p in mine if p.allowed]
        if allowed:
            out.append(
                Finding(
                    finding_id,
                    severity,
                    f"the relay accepts {words} as peers: {_allowed_words(allowed, probes)}",
                    hint=hint_for(family, group, [p.form for p in allowed]),
                    cve=_cves(family, allowed, probes),
                    evidence=evidence,
                    target=target,
                )
            )
            continue
        answered = [p for p in mine if p.conclusive]
        if answered:
            unsure = len(mine) - len(answered)
            tail = f"; {unsure} unanswered" if unsure else ""
            out.append(
                Finding(
                    finding_id,
                    Severity.OK,
                    f"{words} refused as peers: {len(answered)} of {len(mine)} forms{tail}",
                    evidence=evidence,
                    target=target,
                )
            )
            continue
        out.append(
            Finding(
                finding_id,
                Severity.INFO,
                f"could not tell whether {words} are refused as peers: no usable answer",
                evidence=evidence,
                target=target,
            )
        )
    return out


def _refused_plain(form: PeerForm, probes: Sequence[Probe]) -> bool:
    """The IPv4 address this form carries was itself refused: the form is a bypass."""
    return form.embeds is not None and any(
        p.form.address == form.embeds and p.conclusive and not p.allowed for p in probes
    )


def _allowed_words(allowed: Sequence[Probe], probes: Sequence[Probe]) -> str:
    text = ", ".join(p.form.label for p in allowed)
    bypassed = [p.form.embeds for p in allowed if _refused_plain(p.form, probes)]
    if bypassed:
        plain = ", ".join(str(b) for b in dict.fromkeys(bypassed))
        text += f" (a bypass: {plain} itself is refused)"
    return text


def _cves(family: str | None, allowed: Sequence[Probe], probes: Sequence[Probe]) -> tuple[str, ...]:
    """coturn's advisories that the forms which got through prove (a refused plain form with
    an allowed spelling of it is the bypass the advisory describes)."""
    if family != COTURN:
        return ()
    out: list[str] = []
    loopback_refused = any(
        p.form.address == "127.0.0.1" and p.conclusive and not p.allowed for p in probes
    )
    for probe in allowed:
        form = probe.form
        if form.address in ("0.0.0.0", "::") and loopback_refused:
            out.append("CVE-2020-26262")  # 0.0.0.0/[::] past the loopback guard, fixed 4.5.2
        if form.address.startswith("::ffff:") and _refused_plain(form, probes):
            out.append("CVE-2026-27624")  # GHSA-j8mm-mpf8-gvjg: mapped past denied-peer-ip
            if form.group == "loopback":
                out.append("CVE-2026-53450")  # mapped loopback past the default guard
    return tuple(dict.fromkeys(out))


def covering(address: str, group: str) -> str:
    """The most specific range of the group's deny list that holds the address (the address
    itself when none does, as for the server's own addresses)."""
    ip = ipaddress.ip_address(address)
    holding = [
        net
        for net in (ipaddress.ip_network(r) for r in RANGES.get(group, ()))
        if net.version == ip.version and ip in net
    ]
    if not holding:
        return str(ipaddress.ip_network(address))
    return str(max(holding, key=lambda n: n.prefixlen))


def coturn_range(cidr: str) -> str:
    """A CIDR as coturn's denied-peer-ip value: an address, or first-last."""
    net = ipaddress.ip_network(cidr)
    if net.num_addresses == 1:
        return str(net.network_address)
    return f"{net.network_address}-{net.broadcast_address}"


def hint_for(family: str | None, group: str, allowed: Sequence[PeerForm]) -> str:
    """The setting that closes it, on the server in front of the user (all of them when the
    SOFTWARE names none)."""
    cidrs = list(dict.fromkeys(covering(f.address, group) for f in allowed))
    listed = ", ".join(cidrs)
    if family == COTURN:
        return _coturn_hint(group, allowed, cidrs)
    if family == P1_STUN:
        return (
            f"eturnal: add {listed} to blacklist_peers (its default, 'recommended', holds the "
            "usual ranges) and check that whitelist_peers does not let them back in; ejabberd: "
            "turn_blacklist of the ejabberd_stun listener"
        )
    if family == PION:
        return (
            "pion/turn allows every peer by default: give each PacketConnConfig/ListenerConfig "
            f"of turn.ServerConfig a PermissionHandler that refuses {listed}; LiveKit: "
            "turn.deny_peer_cidrs, and no allow_restricted_peer_cidrs covering them"
        )
    return (
        f"refuse {listed} as peers: coturn denied-peer-ip (and no-multicast-peers), eturnal "
        "blacklist_peers, ejabberd turn_blacklist, pion/turn a PermissionHandler, LiveKit "
        "turn.deny_peer_cidrs"
    )


def _coturn_hint(group: str, allowed: Sequence[PeerForm], cidrs: Sequence[str]) -> str:
    parts: list[str] = []
    plain_loopback = any(
        f.address == "::1" or f.address.startswith("127.") for f in allowed if f.group == "loopback"
    )
    if plain_loopback:
        parts.append("remove allow-loopback-peers")
    if group == "multicast":
        parts.append("set no-multicast-peers")
    denied = [c for c in cidrs if not (plain_loopback and c in ("127.0.0.0/8", "::1/128"))]
    if denied:
        parts.append(", ".join(f"denied-peer-ip={coturn_range(c)}" for c in denied))
    text = "coturn: " + "; ".join(parts)
    text += " (allowed-peer-ip wins over denied-peer-ip: no allowed-peer-ip may cover them)"
    if any(f.address.startswith("::ffff:") for f in allowed):
        text += "; coturn before 4.13.0 lets IPv4-mapped peers past its checks: upgrade"
    if group == "self":
        text += "; keep the server's own addresses only if TURN-to-TURN relaying needs them"
    return text


CHECKS: tuple[Check, ...] = (peer_acl,)
