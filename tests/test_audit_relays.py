"""The audit's relay capabilities against real coturn: each proven with data relayed to a
peer this test holds (its own allocations, or a TCP echo it listens on), and not offered
where coturn is configured without them; every allocation deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.servers.coturn import Coturn
from tests.test_tcp_relay import tcp_echo_peer
from turncheck.audit import AuditContext, relays
from turncheck.checks import CheckSettings
from turncheck.config import Credentials
from turncheck.findings import Finding, Severity
from turncheck.plan import build_targets, command_line_entries
from turncheck.resolve import Endpoint
from turncheck.transport import Address

ALICE = Credentials("alice", "s3cret")


def context(server: Coturn, *urls: str, peer: Address | None = None) -> AuditContext:
    """The endpoints of *urls* (IP literals: no DNS), as the audit's runner builds them."""
    targets = build_targets(command_line_entries(list(urls), ALICE, "test"))
    endpoints = tuple(
        Endpoint(t, t.url.host.strip("[]"), t.port, via="literal") for t in targets if not t.extra
    )
    return AuditContext(
        endpoints=endpoints,
        settings=CheckSettings(timeout=3.0, relay=None),
        peer=peer,
        hosts=("127.0.0.1",),
    )


def run(check, ctx: AuditContext) -> Finding:
    async def go() -> Sequence[Finding]:
        async with asyncio.timeout(ctx.budget + 5):
            return await check(ctx)

    (finding,) = asyncio.run(go())
    return finding


def assert_all_deleted(server: Coturn, *, some: bool = True) -> None:
    made, deleted = server.allocation_sessions()
    assert made <= deleted, server.log_tail(40)
    assert bool(made) is some, made


@pytest.fixture
def dual_stack(coturn_factory) -> Coturn:
    return coturn_factory(hosts=("127.0.0.1", "::1"), relay_ips=("127.0.0.1", "::1"), tls=False)


def test_checks_are_registered() -> None:
    assert [c.__name__ for c in relays.CHECKS] == ["tcp_relay", "ipv6_relay", "dual_allocation"]


def test_tcp_relay_between_two_of_our_own_tcp_allocations(dual_stack: Coturn) -> None:
    """A Connects to B's relayed address; B gets the ConnectionAttempt and binds it."""
    ctx = context(dual_stack, f"turn:127.0.0.1:{dual_stack.port}?transport=tcp")
    finding = run(relays.tcp_relay, ctx)
    assert finding.id == "tcp-relay" and finding.severity is Severity.INFO, finding
    assert not finding.skipped
    assert finding.finding.startswith("TCP relays (RFC 6062) offered: 127.0.0.1:")
    assert "data both ways" in finding.finding
    assert "5/5 packets echoed" in finding.evidence
    assert "no-tcp-relay" in finding.hint
    assert "ConnectionAttempt there" in finding.evidence
    log = dual_stack.log_text()
    assert log.count("incoming packet CONNECT processed, success") == 1
    assert log.count("incoming packet CONNECTION_BIND processed, success") == 2  # A and B
    assert_all_deleted(dual_stack)


def test_tcp_relay_to_the_operators_peer(dual_stack: Coturn) -> None:
    with tcp_echo_peer() as (peer, log):
        ctx = context(dual_stack, f"turn:127.0.0.1:{dual_stack.port}?transport=tcp", peer=peer)
        finding = run(relays.tcp_relay, ctx)
    assert finding.severity is Severity.INFO and not finding.skipped, finding
    assert f"connected to {peer[0]}:{peer[1]}, data both ways" in finding.finding
    assert len(log.sources) == 1
    assert dual_stack.min_port <= log.sources[0][1] <= dual_stack.max_port
    assert log.echoed == 5 * 100
    assert_all_deleted(dual_stack)


def test_no_tcp_relay_is_not_offered(coturn_factory) -> None:
    server = coturn_factory(hosts=("127.0.0.1",), tls=False, extra=["no-tcp-relay"])
    ctx = context(server, f"turn:127.0.0.1:{server.port}?transport=tcp")
    finding = run(relays.tcp_relay, ctx)
    assert finding.severity is Severity.INFO and not finding.skipped, finding
    assert finding.finding.startswith("TCP relays (RFC 6062) not offered")
    assert "442" in finding.finding and "442" in finding.evidence
    assert "CONNECT" not in server.log_text()
    assert_all_deleted(server, some=False)


def test_tcp_relay_needs_a_stream_url(dual_stack: Coturn) -> None:
    ctx = context(dual_stack, f"turn:127.0.0.1:{dual_stack.port}?transport=udp")
    finding = run(relays.tcp_relay, ctx)
    assert finding.skipped and "TCP or TLS" in finding.finding
    assert_all_deleted(dual_stack, some=False)


def test_ipv6_relay_offered_with_data(dual_stack: Coturn) -> None:
    ctx = context(dual_stack, f"turn:127.0.0.1:{dual_stack.port}?transport=udp")
    finding = run(relays.ipv6_relay, ctx)
    assert finding.id == "ipv6-relay" and finding.severity is Severity.INFO, finding
    assert finding.finding.startswith("IPv6 relays offered: [::1]:")
    assert "REQUESTED-ADDRESS-FAMILY=IPv6" in finding.evidence
    assert "ipv6: 5/5 packets echoed" in finding.evidence
    assert_all_deleted(dual_stack)


def test_ipv6_relay_not_offered_without_an_ipv6_relay_ip(coturn_factory) -> None:
    server = coturn_factory(hosts=("127.0.0.1",), tls=False)
    ctx = context(server, f"turn:127.0.0.1:{server.port}?transport=udp")
    finding = run(relays.ipv6_relay, ctx)
    assert finding.severity is Severity.INFO and not finding.skipped, finding
    assert finding.finding.startswith("IPv6 relays not offered: Allocate got 440")
    assert_all_deleted(server, some=False)


def test_dual_allocation_offered_at_coturns_draft_code_point(dual_stack: Coturn) -> None:
    ctx = context(dual_stack, f"turn:127.0.0.1:{dual_stack.port}?transport=udp")
    finding = run(relays.dual_allocation, ctx)
    assert finding.id == "dual-allocation" and finding.severity is Severity.INFO, finding
    assert finding.finding.startswith("dual allocation (RFC 8656) offered: 127.0.0.1:")
    assert "+ [::1]:" in finding.finding
    assert "at the draft's code point 0x8032 only" in finding.finding
    assert "0x8000" in finding.hint
    assert "ipv4: 5/5 packets echoed" in finding.evidence
    assert "ipv6: 5/5 packets echoed" in finding.evidence
    assert_all_deleted(dual_stack)


def test_dual_allocation_without_ipv6_is_not_offered(coturn_factory) -> None:
    server = coturn_factory(hosts=("127.0.0.1",), tls=False)
    ctx = context(server, f"turn:127.0.0.1:{server.port}?transport=udp")
    finding = run(relays.dual_allocation, ctx)
    assert finding.severity is Severity.INFO and not finding.skipped, finding
    assert finding.finding == (
        "dual allocation (RFC 8656) not offered: the server has no IPv6 relay address "
        "(440 Address Family not Supported)"
    )
    assert "ADDRESS-ERROR-CODE IPv6 440" in finding.evidence
    assert "ipv4: 5/5 packets echoed" in finding.evidence
    assert_all_deleted(server)
