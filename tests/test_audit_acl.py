"""The audit's peer ACL matrix (turncheck/audit/acl.py), against real servers on loopback.

CreatePermission and ChannelBind send nothing to the peer: every test that probes a server
also listens on the probed port of every local address and asserts that nothing arrived.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from tests.servers.coturn import Coturn
from turncheck.audit import AuditContext
from turncheck.audit.acl import (
    DEFAULT_FORMS,
    DENIED,
    GRANTED,
    UNRELAYABLE,
    PeerForm,
    Probe,
    Reply,
    compatible,
    coturn_range,
    covering,
    findings_of,
    mapped,
    nat64,
    peer_acl,
    six_to_four,
    teredo,
)
from turncheck.checks import CheckSettings
from turncheck.config import Credentials
from turncheck.explain import COTURN, PION
from turncheck.findings import Finding, Severity
from turncheck.plan import build_targets, command_line_entries
from turncheck.resolve import Endpoint

ALICE = Credentials("alice", "s3cret")

# Enable Security's coturn-secure-config, configs/recommended.conf ("Access control -
# comprehensive IP blocking"), with the two lines it says coturn before 4.9.0 needs
# (CVE-2026-27624 workaround): https://github.com/EnableSecurity/coturn-secure-config and
# https://www.enablesecurity.com/blog/coturn-security-configuration-guide/
HARDENED = [
    "no-multicast-peers",
    "denied-peer-ip=0.0.0.0-0.255.255.255",
    "denied-peer-ip=10.0.0.0-10.255.255.255",
    "denied-peer-ip=100.64.0.0-100.127.255.255",
    "denied-peer-ip=127.0.0.0-127.255.255.255",
    "denied-peer-ip=169.254.0.0-169.254.255.255",
    "denied-peer-ip=172.16.0.0-172.31.255.255",
    "denied-peer-ip=192.0.0.0-192.0.0.255",
    "denied-peer-ip=192.0.2.0-192.0.2.255",
    "denied-peer-ip=192.31.196.0-192.31.196.255",
    "denied-peer-ip=192.52.193.0-192.52.193.255",
    "denied-peer-ip=192.88.99.0-192.88.99.255",
    "denied-peer-ip=192.168.0.0-192.168.255.255",
    "denied-peer-ip=192.175.48.0-192.175.48.255",
    "denied-peer-ip=198.18.0.0-198.19.255.255",
    "denied-peer-ip=198.51.100.0-198.51.100.255",
    "denied-peer-ip=203.0.113.0-203.0.113.255",
    "denied-peer-ip=224.0.0.0-239.255.255.255",
    "denied-peer-ip=240.0.0.0-255.255.255.255",
    "denied-peer-ip=::1",
    "denied-peer-ip=::0",
    "denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255",
    "denied-peer-ip=64:ff9b::-64:ff9b::ffff:ffff",
    "denied-peer-ip=64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=100::-100::ffff:ffff:ffff:ffff",
    "denied-peer-ip=100::1:0:0:0:0-100::1:ffff:ffff:ffff:ffff",
    "denied-peer-ip=2001::-2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=2620:4f:8000::-2620:4f:8000:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=3fff::-3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=5f00::-5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    # The guide's protocol hardening and limits, as far as this test server allows them.
    "no-tcp-relay",
    "user-quota=100",
    "total-quota=10000",
    "max-allocate-lifetime=3600",
    "stale-nonce=600",
]
# running_coturn writes allow-loopback-peers (its relay tests need it); a later line wins.
NO_LOOPBACK = "allow-loopback-peers=false"
DUAL_STACK = ("127.0.0.1", "::1")  # an IPv4 and an IPv6 relay (relay-ip 127.0.0.1 and ::1)


def context(url: str, host: str, port: int, software: str | None = None) -> AuditContext:
    target = build_targets(command_line_entries([url], ALICE, "test"))[0]
    endpoint = Endpoint(target, host, port, "IP literal")
    return AuditContext(
        endpoints=(endpoint,),
        settings=CheckSettings(timeout=2.0, relay=None),
        software=software,
    )


@contextmanager
def listening() -> Iterator[tuple[socket.socket, int]]:
    """A UDP socket on [::]:<port>, dual-stack: whatever reaches that port on any local
    address, IPv4 or IPv6, lands here."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


def received(sock: socket.socket, wait: float = 0.3) -> list[bytes]:
    """What arrived (bounded: one wait, then what is queued)."""
    got: list[bytes] = []
    ready, _, _ = select.select([sock], [], [], wait)
    for _ in range(100):
        if not ready:
            break
        got.append(sock.recv(4096))
        ready, _, _ = select.select([sock], [], [], 0)
    return got


def audit_acl(ctx: AuditContext, port: int) -> dict[str, Finding]:
    """peer_acl with every default form's ChannelBind aimed at *port*."""
    forms = [dataclasses.replace(f, port=port) for f in DEFAULT_FORMS]
    found = asyncio.run(peer_acl(ctx, forms))
    assert len({f.id for f in found}) == len(found), found
    return {f.id: f for f in found}


def assert_all_deleted(server: Coturn) -> None:
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted, (made, deleted)


def coturn_acl(server: Coturn) -> dict[str, Finding]:
    ctx = context(f"turn:127.0.0.1:{server.port}?transport=udp", "127.0.0.1", server.port)
    with listening() as (sock, port):
        findings = audit_acl(ctx, port)
        assert received(sock) == []  # CreatePermission and ChannelBind sent nothing on
    assert_all_deleted(server)
    return findings


def allowed_in(finding: Finding) -> str:
    return finding.finding.split(" as peers: ", 1)[1]


# -- pure: the address forms and the judgement -----------------------------------------------


def test_the_embedded_forms_carry_the_address_the_rfcs_say() -> None:
    v4 = ipaddress.IPv4Address("127.0.0.1")
    assert ipaddress.IPv6Address(mapped("127.0.0.1")).ipv4_mapped == v4
    assert mapped("127.0.0.1") == "::ffff:127.0.0.1"
    assert int(ipaddress.IPv6Address(compatible("127.0.0.1"))) == int(v4)
    assert nat64("127.0.0.1") == "64:ff9b::7f00:1"
    assert six_to_four("127.0.0.1") == "2002:7f00:1::"
    assert ipaddress.IPv6Address(six_to_four("127.0.0.1")).sixtofour == v4
    server, client = ipaddress.IPv6Address(teredo("127.0.0.1")).teredo or (None, None)
    assert (str(server), client) == ("192.0.2.1", v4)  # the obfuscated client address inside
    assert teredo("127.0.0.1") == "2001:0:c000:201:0:fff6:80ff:fffe"


def test_every_default_form_is_an_address_of_its_group() -> None:
    for form in DEFAULT_FORMS:
        ip = ipaddress.ip_address(form.address)
        carried = ipaddress.ip_address(form.embeds) if form.embeds else ip
        if form.group == "loopback":
            assert carried.is_loopback or carried.is_unspecified, form
        elif form.group == "private":
            shared = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598: not is_private
            assert (carried.is_private or carried in shared) and not carried.is_loopback, form
        elif form.group == "multicast":
            assert carried.is_multicast or carried.is_reserved, form
        # Never a public unicast address by itself (the forms are asked about, never sent to).
        assert not ip.is_global or ip.is_multicast or form.embeds, form


def test_the_hint_names_the_range_that_holds_each_form() -> None:
    assert covering("::ffff:127.0.0.1", "loopback") == "::ffff:0:0/96"
    assert covering("127.1.2.3", "loopback") == "127.0.0.0/8"
    assert covering("::", "loopback") == "::/128"
    assert covering("::127.0.0.1", "loopback") == "::/96"
    assert covering("203.0.113.7", "self") == "203.0.113.7/32"
    assert coturn_range("127.0.0.0/8") == "127.0.0.0-127.255.255.255"
    assert coturn_range("203.0.113.7/32") == "203.0.113.7"
    assert coturn_range("::ffff:0:0/96") == "::ffff:0:0-::ffff:ffff:ffff"


def probe(group: str, address: str, state: str, embeds: str | None = None) -> Probe:
    form = PeerForm(group, address, embeds=embeds)
    return Probe(form, "IPv4 relay 192.0.2.1:50000", Reply(state, state))


def test_a_mapped_form_past_a_refused_plain_one_is_named_a_bypass_with_coturns_cves() -> None:
    probes = [
        probe("loopback", "127.0.0.1", DENIED),
        probe("loopback", "::ffff:127.0.0.1", GRANTED, embeds="127.0.0.1"),
        probe("loopback", "0.0.0.0", GRANTED),
        probe("private", "10.0.0.1", DENIED),
        probe("multicast", "ff02::1", UNRELAYABLE),
    ]
    found = {f.id: f for f in findings_of(probes, COTURN, "turn:192.0.2.1")}
    loopback = found["peer-acl-loopback"]
    assert loopback.severity is Severity.CRITICAL
    assert "a bypass: 127.0.0.1 itself is refused" in loopback.finding
    assert loopback.cve == ("CVE-2026-27624", "CVE-2026-53450", "CVE-2020-26262")
    assert "denied-peer-ip=::ffff:0:0-::ffff:ffff:ffff" in loopback.hint
    assert "allow-loopback-peers" not in loopback.hint  # 127.0.0.1 itself is refused
    assert found["peer-acl-private"].severity is Severity.OK
    assert found["peer-acl-multicast"].severity is Severity.OK  # no relay for it: refused
    # Another server: the same finding, no coturn CVE, its own setting.
    other = {f.id: f for f in findings_of(probes, PION, "turn:192.0.2.1")}
    assert other["peer-acl-loopback"].cve == ()
    assert "PermissionHandler" in other["peer-acl-loopback"].hint


def test_only_timeouts_say_nothing() -> None:
    probes = [probe("metadata", "169.254.169.254", "failed")]
    (finding,) = findings_of(probes, None, "turn:192.0.2.1")
    assert finding.severity is Severity.INFO and "could not tell" in finding.finding


# -- coturn 4.6.1, three configurations --------------------------------------------------------


def test_coturn_permissive_lets_every_group_through(coturn_factory) -> None:
    server = coturn_factory(hosts=DUAL_STACK, tls=False)  # allow-loopback-peers, no deny list
    found = coturn_acl(server)
    loopback = found["peer-acl-loopback"]
    assert loopback.severity is Severity.CRITICAL
    for form in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"):
        assert form in allowed_in(loopback)
    assert "0.0.0.0" not in allowed_in(loopback)  # coturn refuses the unspecified address
    assert "remove allow-loopback-peers" in loopback.hint
    assert loopback.cve == ()  # configured so, not a bypass
    assert found["peer-acl-metadata"].severity is Severity.CRITICAL
    assert "169.254.169.254" in allowed_in(found["peer-acl-metadata"])
    assert found["peer-acl-private"].severity is Severity.HIGH
    assert found["peer-acl-multicast"].severity is Severity.MEDIUM
    assert "no-multicast-peers" in found["peer-acl-multicast"].hint
    assert found["peer-acl-self"].severity is Severity.LOW


def test_coturn_default_refuses_loopback_but_not_its_ipv4_mapped_spelling(coturn_factory) -> None:
    server = coturn_factory(hosts=DUAL_STACK, tls=False, extra=[NO_LOOPBACK])
    found = coturn_acl(server)
    loopback = found["peer-acl-loopback"]
    # coturn 4.6.1 refuses 127.0.0.1 and ::1 by default, but an IPv6 relay takes
    # ::ffff:127.0.0.1 (CVE-2026-53450, fixed in 4.13.0).
    assert loopback.severity is Severity.CRITICAL
    allowed = allowed_in(loopback)
    assert "::ffff:127.0.0.1 (IPv4-mapped)" in allowed
    assert "a bypass: 127.0.0.1 itself is refused" in allowed
    assert not allowed.startswith("127.0.0.1")
    assert "127.0.0.1: CreatePermission 403 Forbidden IP" in loopback.evidence
    assert "CVE-2026-53450" in loopback.cve
    assert "IPv6 relay [::1]:" in loopback.evidence  # the IPv6 forms asked on an IPv6 relay
    # Nothing else is refused by default.
    assert found["peer-acl-metadata"].severity is Severity.CRITICAL
    assert found["peer-acl-private"].severity is Severity.HIGH
    assert found["peer-acl-multicast"].severity is Severity.MEDIUM
    assert found["peer-acl-self"].severity is Severity.OK  # 127.0.0.1 and ::1 here


def test_coturn_hardened_by_the_enable_security_guide_refuses_everything(coturn_factory) -> None:
    server = coturn_factory(hosts=DUAL_STACK, tls=False, extra=[NO_LOOPBACK, *HARDENED])
    found = coturn_acl(server)
    assert {k: f.severity for k, f in found.items()} == {
        "peer-acl-loopback": Severity.OK,
        "peer-acl-metadata": Severity.OK,
        "peer-acl-private": Severity.OK,
        "peer-acl-multicast": Severity.OK,
        "peer-acl-self": Severity.OK,
    }
    assert "403 Forbidden IP" in found["peer-acl-loopback"].evidence


def test_an_ipv4_only_coturn_cannot_relay_to_ipv6_peers_at_all(coturn_factory) -> None:
    server = coturn_factory(tls=False, extra=[NO_LOOPBACK])  # relay-ip 127.0.0.1 only
    found = coturn_acl(server)
    loopback = found["peer-acl-loopback"]
    assert loopback.severity is Severity.OK  # 127/8 refused; no IPv6 relay for the rest
    assert "::ffff:127.0.0.1 (IPv4-mapped): 443 on the IPv4 relay; no IPv6 relay (440" in (
        loopback.evidence
    )


# -- pion/turn and ejabberd -----------------------------------------------------------------


def test_pion_allows_every_peer_even_ipv6_ones_on_its_ipv4_relay(pion_factory) -> None:
    server = pion_factory("udp")  # pion/turn v2.1.0: DefaultPermissionHandler, no SOFTWARE
    ctx = context(server.url, "127.0.0.1", server.port)
    with listening() as (sock, port):
        found = audit_acl(ctx, port)
        assert received(sock) == []
    loopback = found["peer-acl-loopback"]
    assert loopback.severity is Severity.CRITICAL
    for form in ("127.0.0.1", "0.0.0.0", "::1", "::ffff:127.0.0.1"):
        assert form in allowed_in(loopback)
    # No 443 for an IPv6 peer on its IPv4 relay (RFC 8656 §9.1 asks for one).
    assert "::1: CreatePermission granted, ChannelBind granted (IPv4 relay 127.0.0.1:" in (
        loopback.evidence
    )
    assert "PermissionHandler" in loopback.hint  # no SOFTWARE: every server's setting
    assert found["peer-acl-metadata"].severity is Severity.CRITICAL
    assert found["peer-acl-private"].severity is Severity.HIGH
    assert found["peer-acl-multicast"].severity is Severity.MEDIUM
    assert found["peer-acl-self"].severity is Severity.LOW


def test_ejabberd_refuses_only_the_unspecified_address_and_caps_permissions(
    ejabberd_factory,
) -> None:
    server = ejabberd_factory(turn_blacklist=None)  # ejabberd 23.01's own default
    ctx = context(server.url("udp"), "127.0.0.1", server.port)
    with listening() as (sock, port):
        found = audit_acl(ctx, port)
        assert received(sock) == []
    loopback = found["peer-acl-loopback"]
    assert loopback.severity is Severity.CRITICAL
    assert allowed_in(loopback) == "127.0.0.1, 127.1.2.3 (loopback 127/8)"
    assert "0.0.0.0 (unspecified: Linux delivers it to loopback): CreatePermission 403" in (
        loopback.evidence
    )
    assert "::1: 443 on the IPv4 relay; no IPv6 relay (440" in loopback.evidence
    assert "turn_blacklist" in loopback.hint  # SOFTWARE "P1 STUN library"
    # p1_stun allows 10 permissions per allocation and answers 508 past them: the forms
    # left over were asked on a second allocation, none is left unanswered.
    evidence = " ".join(f.evidence for f in found.values())
    assert "CreatePermission 508" not in evidence
    assert evidence.count("IPv4 relay 127.0.0.1:") > 10
    assert found["peer-acl-metadata"].severity is Severity.CRITICAL
    assert found["peer-acl-private"].severity is Severity.HIGH
    assert found["peer-acl-multicast"].severity is Severity.MEDIUM
    assert found["peer-acl-self"].severity is Severity.LOW
