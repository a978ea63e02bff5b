"""Verdict wording as pure functions over check results: what the words claim must be what
the checks found (issue 19's wording cases; the lab and the server matrix prove the rest)."""

from __future__ import annotations

from turncheck.errors import DnsFailure
from turncheck.explain import Explanation, explain, verdict
from turncheck.results import CheckResult

TIMEOUT = Explanation(None, "no answer to STUN Binding (udp) after 3 send(s) in 1.6 s", "hint")
REFUSED = Explanation(None, "connection refused: nothing listens on 192.0.2.9:5349", "hint")


def check(url: str, transport: str, kind: str, server: str, ok: bool, **kw: object) -> CheckResult:
    port = server.rsplit(":", 1)[1]
    via = kw.pop("via", "A/AAAA h.test.")
    return CheckResult(url, transport, kind, server, int(port), ok, via=via, **kw)  # type: ignore[arg-type]


def test_one_address_is_never_1_of_n_addresses() -> None:
    # stuns: with one A record: the browser's UDP Binding on 3478 passes, turncheck's own
    # STUN over TLS on 5349 fails. Ports are not addresses.
    checks = [
        check("stuns:h.test", "udp", "stun", "192.0.2.9:3478", True),
        check("stuns:h.test", "tls", "stun", "192.0.2.9:5349", False, error=REFUSED),
    ]
    text = verdict(checks)
    assert "addresses of" not in text
    assert text.startswith("TLS failed: STUN Binding failed over tls: connection refused")


def test_a_transport_failing_on_every_address_is_no_address_at_fault() -> None:
    checks = [
        check("stun:h.test", "udp", "stun", ip, False, error=TIMEOUT, timed_out=True)
        for ip in ("192.0.2.9:3478", "192.0.2.10:3478")
    ] + [
        check("stun:h.test", "tls", "stun", ip, True)
        for ip in ("192.0.2.9:5349", "192.0.2.10:5349")
    ]
    assert "addresses of" not in verdict(checks)


def test_srv_targets_are_not_the_names_addresses() -> None:
    checks = [
        check("turn:h.test", "udp", "stun", "192.0.2.9:3478", True),
        check(
            "turn:h.test",
            "udp",
            "stun",
            "192.0.2.20:3478",
            False,
            error=TIMEOUT,
            via="SRV _stun._udp.h.test → other.test:3478",
        ),
    ]
    assert "addresses of" not in verdict(checks)


def test_a_dead_address_beside_a_live_one_is_named() -> None:
    checks = [
        check("stun:h.test", "udp", "stun", "192.0.2.9:3478", True),
        check("stun:h.test", "udp", "stun", "192.0.2.10:3478", False, error=TIMEOUT),
    ]
    assert verdict(checks).startswith("1 of 2 addresses of h.test (192.0.2.10) fails udp")


def test_a_resolver_that_fails_at_once_is_not_a_timeout() -> None:
    import socket

    from turncheck.resolve import _map_gai_error

    failure = _map_gai_error(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), "h.test")
    text = explain(failure).reason
    assert "timed out" not in text
    assert text == (
        "DNS lookup of h.test failed: no DNS server could be reached or none answered "
        "(temporary failure in name resolution)"
    )
    assert explain(DnsFailure("timeout", "h.test", "x")).reason == "DNS lookup of h.test timed out"
