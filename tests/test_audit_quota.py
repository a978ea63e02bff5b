"""The audit's quota probe (turncheck/audit/quota.py), against real servers on loopback:
bounded, and every allocation deleted."""

from __future__ import annotations

import asyncio

from tests.servers.coturn import Coturn
from turncheck.audit import AuditContext
from turncheck.audit.quota import quota
from turncheck.checks import CheckSettings
from turncheck.config import Credentials
from turncheck.findings import Finding, Severity
from turncheck.plan import build_targets, command_line_entries
from turncheck.resolve import Endpoint

ALICE = Credentials("alice", "s3cret")


def probe_quota(url: str, port: int, bound: int = 20) -> Finding:
    target = build_targets(command_line_entries([url], ALICE, "test"))[0]
    ctx = AuditContext(
        endpoints=(Endpoint(target, "127.0.0.1", port, "IP literal"),),
        settings=CheckSettings(timeout=2.0, relay=None),
        max_allocations=bound,
    )
    (finding,) = asyncio.run(quota(ctx))
    assert finding.id == "quota"
    return finding


def coturn_quota(server: Coturn, bound: int = 20) -> tuple[Finding, int]:
    """The finding, and how many allocations coturn made (each one deleted)."""
    finding = probe_quota(f"turn:127.0.0.1:{server.port}?transport=udp", server.port, bound)
    made, deleted = server.allocation_sessions()
    assert made <= deleted, (made, deleted)
    return finding, len(made)


def test_a_user_quota_is_found_and_each_allocation_deleted(coturn_factory) -> None:
    server = coturn_factory(tls=False, extra=["user-quota=3"])
    finding, made = coturn_quota(server)
    assert made == 3
    assert finding.severity is Severity.OK
    assert (
        finding.finding
        == "user quota: 3 allocations (486 Allocation Quota Reached at allocation 4)"
    )
    assert finding.evidence.startswith("3 granted, 3 deleted; relays 127.0.0.1:")


def test_no_quota_up_to_the_bound_is_low(coturn_factory) -> None:
    server = coturn_factory(tls=False)  # coturn's default: user-quota=0, no limit
    finding, made = coturn_quota(server, bound=8)
    assert made == 8  # and no more: the bound holds
    assert finding.severity is Severity.LOW
    assert finding.finding == (
        "no per-user quota up to 8 allocations: one credential can hold every relay port"
    )
    assert finding.hint.startswith("coturn: user-quota=N")
    assert "8 granted, 8 deleted" in finding.evidence


def test_one_user_filling_the_relay_ports_is_low_too(coturn_factory) -> None:
    server = coturn_factory(tls=False, relay_range=4)  # four relay ports in all
    finding, made = coturn_quota(server)
    assert made == 4
    assert finding.severity is Severity.LOW
    assert finding.finding.startswith("one user filled the server: 508 ")
    assert finding.finding.endswith("at allocation 5, before any per-user quota")


def test_pion_has_no_quota(pion_factory) -> None:
    server = pion_factory("udp")
    finding = probe_quota(server.url, server.port, bound=6)
    assert finding.severity is Severity.LOW
    assert "6 granted, 6 deleted" in finding.evidence


def test_ejabberd_does_not_enforce_turn_max_allocations(ejabberd_factory) -> None:
    # ejabberd 23.01's p1_stun 1.2.7 takes the option and ignores it (eturnal, on a newer
    # p1_stun, defaults max_allocations to 10).
    server = ejabberd_factory(turn_max_allocations=3)
    finding = probe_quota(server.url("udp"), server.port, bound=6)
    assert finding.severity is Severity.LOW
    assert "6 granted, 6 deleted" in finding.evidence
    assert "turn_max_allocations" in finding.hint  # SOFTWARE "P1 STUN library"
