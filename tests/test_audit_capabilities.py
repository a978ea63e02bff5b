"""The audit's capability checks (turncheck/audit/capabilities.py), against real servers on
loopback, each capability proven by the exchange that uses it."""

from __future__ import annotations

import asyncio

from tests.servers.coturn import Coturn
from turncheck.audit import AuditContext
from turncheck.audit.capabilities import (
    CHECKS,
    challenge_findings,
    even_port,
    even_port_harms,
    nonce_cookie,
    password_algorithms,
)
from turncheck.checks import CheckSettings
from turncheck.config import Credentials
from turncheck.findings import Finding, Severity
from turncheck.plan import build_targets, command_line_entries
from turncheck.resolve import Endpoint

ALICE = Credentials("alice", "s3cret")


def context(url: str, port: int, software: str | None = None) -> AuditContext:
    target = build_targets(command_line_entries([url], ALICE, "test"))[0]
    endpoint = Endpoint(target, "127.0.0.1", port, "IP literal")
    return AuditContext(
        endpoints=(endpoint,),
        settings=CheckSettings(timeout=2.0, relay=None),
        software=software,
    )


def audit(ctx: AuditContext) -> dict[str, Finding]:
    async def run() -> list[Finding]:
        found = await asyncio.gather(*(check(ctx) for check in CHECKS))
        return [f for each in found for f in each]

    findings = asyncio.run(run())
    assert len({f.id for f in findings}) == len(findings), findings
    return {f.id: f for f in findings}


def coturn_audit(server: Coturn, software: str | None = None) -> dict[str, Finding]:
    found = audit(context(f"turn:127.0.0.1:{server.port}?transport=udp", server.port, software))
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted, (made, deleted)  # every allocation deleted
    return found


# -- pure: the version rule and the 401's parts ---------------------------------------------


def test_the_even_port_skip_rule_reads_coturns_version() -> None:
    assert even_port_harms(None) is None
    assert "coturn 4.6.1" in (even_port_harms("Coturn-4.6.1 'Gorst'") or "")
    assert even_port_harms("Coturn-4.16.9") is not None
    assert even_port_harms("Coturn-4.17.0 'Gorst'") is None
    assert even_port_harms("rfc5766-turn-server 3.2.5.9") is not None
    assert even_port_harms("Coturn") is None  # no version: nothing known
    assert even_port_harms(None) is None


def test_the_nonce_cookie_and_its_feature_bits() -> None:
    # RFC 8489 Appendix B.1's nonce: feature bits 0x000002, username anonymity.
    cookie = nonce_cookie(b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA")
    assert cookie is not None and cookie.features == 0x000002
    assert cookie.username_anonymity and not cookie.password_algorithms
    # The bit as some servers set it, reading the RFC's prose left to right.
    leftmost = nonce_cookie(b"obMatJos2gAAAnonce")
    assert leftmost is not None and leftmost.password_algorithms
    assert nonce_cookie(b"ab37f492d9d7f118") is None  # coturn 4.6.1's nonce
    assert nonce_cookie(b"obMatJos2!!!!nonce") is None
    # RFC 8489 B.1's PASSWORD-ALGORITHMS value: SHA-256, then MD5, no parameters.
    assert password_algorithms(bytes([0, 2, 0, 0, 0, 1, 0, 0])) == ["SHA-256", "MD5"]
    assert password_algorithms(bytes([0, 9, 0, 2, 1, 2, 0, 0])) == ["0x0009"]


def test_a_401_that_offers_everything() -> None:
    attrs = {
        "NONCE": b"obMatJos2AAADrest-of-the-nonce",
        "PASSWORD-ALGORITHMS": bytes([0, 2, 0, 0, 0, 1, 0, 0]),
        "THIRD-PARTY-AUTHORIZATION": "as.example.org",
    }
    found = {f.id: f for f in challenge_findings(attrs, "turn:192.0.2.1")}
    assert "offered" in found["third-party-authorization"].finding
    assert "'as.example.org'" in found["third-party-authorization"].evidence
    assert found["password-algorithms"].finding == (
        "RFC 8489 password algorithms offered: SHA-256, MD5"
    )
    assert "feature bits 0x000003" in found["password-algorithms"].evidence
    assert found["userhash"].finding == "RFC 8489 username anonymity (USERHASH) offered"
    assert all(f.severity is Severity.INFO for f in found.values())


# -- coturn 4.6.1 ------------------------------------------------------------------------------


def test_coturn_as_configured_by_default(coturn_factory) -> None:
    server = coturn_factory(tls=False)  # listening on 127.0.0.1 and 127.0.0.2
    found = coturn_audit(server)
    mobility = found["mobility"]
    assert mobility.finding == "RFC 8016 mobility not offered: 405 Mobility Forbidden"
    assert mobility.hint == "coturn: `mobility` turns it on"
    # Its SOFTWARE says 4.6.1: EVEN-PORT is skipped (read by a Binding: no ctx.software).
    assert found["even-port"].skipped
    assert "coturn 4.6.1" in found["even-port"].finding
    assert found["dont-fragment"].finding == "DONT-FRAGMENT offered: the Allocate with it succeeded"
    assert found["third-party-authorization"].finding == (
        "RFC 7635 third-party authorization not offered"
    )
    password = found["password-algorithms"]
    assert password.finding.endswith("not offered: MD5 long-term credentials only")
    assert "without the obMatJos2 cookie, no PASSWORD-ALGORITHMS" in password.evidence
    assert found["userhash"].finding.endswith("not offered")
    assert found["origin"].finding == "ORIGIN accepted, with no visible effect (the same realm)"
    lifetime = found["lifetime-long"]
    assert lifetime.severity is Severity.OK  # coturn's max-allocate-lifetime: 3600
    assert "granted 3600 s" in lifetime.evidence
    rfc5780 = found["rfc5780"]
    assert rfc5780.finding == "RFC 5780 NAT behaviour discovery offered"
    assert f"OTHER-ADDRESS 127.0.0.2:{server.port + 1}" in rfc5780.evidence
    assert f"RESPONSE-ORIGIN 127.0.0.1:{server.port}" in rfc5780.evidence
    assert not any(f.skipped for k, f in found.items() if k != "even-port")


def test_even_port_is_skipped_on_the_softwares_word_alone(coturn_factory) -> None:
    server = coturn_factory(tls=False)
    ctx = context(
        f"turn:127.0.0.1:{server.port}?transport=udp", server.port, "Coturn-4.6.1 'Gorst'"
    )
    (finding,) = asyncio.run(even_port(ctx))
    assert finding.skipped and finding.severity is Severity.INFO
    assert finding.hint == "upgrade coturn to 4.17.0 or later"
    assert server.allocation_sessions()[0] == set()  # not one allocation was made


def test_coturn_with_the_features_turned_on(coturn_factory) -> None:
    server = coturn_factory(
        tls=False,
        extra=[
            "mobility",
            "max-allocate-lifetime=7200",
            "oauth",
            "server-name=auth.turncheck.test",
            "no-rfc5780",
            # Every request of a session must carry the Allocate's ORIGIN, the delete too.
            "check-origin-consistency",
            # No SOFTWARE, as coturn 4.7.0 and later by default: nothing says this is a
            # coturn below 4.17.0, so EVEN-PORT (R=1, once) is asked. Only R=0 leaks ports.
            "no-software-attribute",
        ],
    )
    found = coturn_audit(server)
    assert found["mobility"].finding == (
        "RFC 8016 mobility offered: the Allocate success carries a MOBILITY-TICKET"
    )
    even = found["even-port"]
    assert even.finding.startswith("EVEN-PORT and RESERVATION-TOKEN offered: ports ")
    first, second = (int(p) for p in even.finding.rsplit(": ports ", 1)[1].split(" and "))
    assert first % 2 == 0 and second == first + 1
    assert "RESERVATION-TOKEN of 8 bytes" in even.evidence
    assert found["third-party-authorization"].evidence == (
        "401 with THIRD-PARTY-AUTHORIZATION 'auth.turncheck.test'"
    )
    lifetime = found["lifetime-long"]
    assert lifetime.severity is Severity.LOW
    assert lifetime.finding.startswith("allocations are granted for 7200 s")
    assert "3600" in lifetime.hint
    assert found["rfc5780"].finding == "RFC 5780 NAT behaviour discovery not offered"


# -- pion/turn and ejabberd -----------------------------------------------------------------


def test_pion(pion_factory) -> None:
    server = pion_factory("udp")
    found = audit(context(server.url, server.port))
    assert found["mobility"].finding == (
        "RFC 8016 mobility not offered: the server ignored the MOBILITY-TICKET"
    )
    # pion/turn v2.1.0 gives an even port and a token, but the token reserves that same
    # even port (allocation_manager.go CreateReservation): the second Allocate gets another.
    even = found["even-port"]
    assert even.finding.startswith("EVEN-PORT offered, but its RESERVATION-TOKEN gave 127.0.0.1:")
    dont = found["dont-fragment"]
    # An unsigned 420 with an empty reason phrase.
    assert dont.finding == "DONT-FRAGMENT not offered: 420 (without MESSAGE-INTEGRITY)"
    assert found["password-algorithms"].finding.endswith("MD5 long-term credentials only")
    assert found["lifetime-long"].severity is Severity.OK  # always 600 s
    assert "granted 600 s" in found["lifetime-long"].evidence
    assert found["rfc5780"].finding == "RFC 5780 NAT behaviour discovery not offered"


def test_ejabberd(ejabberd_factory) -> None:
    server = ejabberd_factory()
    found = audit(context(server.url("udp"), server.port))
    assert found["even-port"].finding == "EVEN-PORT not offered: 420 Unknown Attribute"
    assert found["dont-fragment"].finding == "DONT-FRAGMENT not offered: 420 Unknown Attribute"
    assert found["mobility"].finding.endswith("the server ignored the MOBILITY-TICKET")
    assert found["origin"].finding.startswith("ORIGIN accepted")
    assert found["lifetime-long"].severity is Severity.OK
    assert found["rfc5780"].finding.endswith("not offered")
