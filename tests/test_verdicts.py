"""Verdict wording as pure functions over check results: what the words claim must be what
the checks found (issue 19's wording cases; the lab and the server matrix prove the rest)."""

from __future__ import annotations

from dataclasses import replace

from turncheck import browser, firefox
from turncheck.browser import parse_ice_url
from turncheck.errors import DnsFailure, ErrorResponse
from turncheck.explain import (
    Explanation,
    asked_refused,
    asked_verdict,
    browser_verdict,
    explain,
    verdict,
)
from turncheck.render.table import check_name
from turncheck.report import Report
from turncheck.results import Candidate, CheckResult, NatVerdict, PathStats, RelayResult

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


# -- what browsers never ask for: --relay-family, --tcp-relay ---------------------------------

URL = "turn:h.test:3478?transport=udp"


def _echoed(path: str = "channel") -> RelayResult:
    stats = PathStats(path, 10, 10, 0.001, 0.002, 0.003, 0.0, 0, 0)
    return RelayResult("the second allocation 192.0.2.9:50002", stats, {path: stats})


def _browsers_allocate() -> CheckResult:
    relay = Candidate("relay", "192.0.2.9", 50000, "udp", relay_protocol="udp")
    return check(URL, "udp", "turn", "192.0.2.9:3478", True, candidates=(relay,), relay=_echoed())


def _asked(variant: str, error: Explanation) -> CheckResult:
    details = (
        {"tcp_relay": {"refused": {"code": error.code, "reason": ""}}}
        if variant == "tcp"
        else {"relay_family": {"asked": variant, "relayed": [], "families": {}}}
    )
    return check(
        URL, "udp", "turn", "192.0.2.9:3478", False, error=error, cause="error", details=details
    )


def test_a_failed_relay_family_row_is_not_the_browsers_but_fails_the_run() -> None:
    own = _browsers_allocate()
    refused = asked_refused(
        ErrorResponse("Allocate", 440, "Address Family not Supported"), family="ipv6"
    )
    v6 = _asked("ipv6", refused)
    uses = browser.uses([parse_ice_url(URL)])
    checks = (own, v6)
    chromium = browser.view(uses, checks, False)
    ff = firefox.view([parse_ice_url(URL)], checks, False, None)
    for view in (chromium, ff):
        assert (view.ok, view.relay, view.relays_media, view.errors) == (True, ("udp",), True, ())
    assert not browser.makes(v6, uses) and not firefox.makes(v6)
    assert browser.relay_variant(v6) == "ipv6" and browser.relay_variant(own) is None
    nat = NatVerdict(None, "-")
    assert Report((own,), nat, "", browser=chromium, firefox=ff).ok
    assert not Report(checks, nat, "", browser=chromium, firefox=ff).ok  # the user asked for it
    # An extra target's variant (a bare turn: URL's TCP row) is shown, not gating.
    assert Report((own, replace(v6, extra=True)), nat, "", browser=chromium, firefox=ff).ok
    views = {"chromium": chromium, "firefox": ff}
    base = browser_verdict(views, ("chromium", "firefox"), checks, verdict([own], others=True))
    assert asked_verdict([v6], base) == (
        "the IPv6 relay failed over UDP (browsers ask for no address family): the server has no "
        "IPv6 relay address (440 Address Family not Supported); calls connect: a browser with "
        "this configuration gets relay candidates over UDP; the other check passed"
    )
    assert check_name(replace(v6, details={**v6.details, "browsers": []})) == "udp+ Allocate v6"


def test_a_tcp_relay_row_is_named_tcp() -> None:
    refused = asked_refused(
        ErrorResponse("Allocate", 442, "Unsupported Transport Protocol", "Coturn-4.6.1 'Gorst'"),
        tcp=True,
    )
    row = replace(_asked("tcp", refused), transport="tls")
    assert browser.relay_variant(row) == "tcp"
    assert check_name(row) == "tls+ Allocate TCP"
    assert asked_verdict([row], "rest").startswith(
        "the TCP relay failed over TLS (browsers relay UDP only): the server does not offer TCP "
        "relays (RFC 6062): 442 Unsupported Transport Protocol; rest"
    )
    assert "no-tcp-relay" in refused.hint


def test_440_in_words_by_what_the_allocate_asked_for() -> None:
    # The browser's Allocate asks for no family: a 440 there means no IPv4 relay address.
    own = explain(ErrorResponse("Allocate", 440, "Address Family not Supported"))
    assert "IPv4 relay address" in own.hint
    # --relay-family's Allocate asked for IPv6: the setting that gives one, per server.
    for software, setting in (
        ("Coturn-4.6.1 'Gorst'", "relay-ip= with an IPv6 address"),
        ("eturnal 1.12.1", "relay_ipv6_addr"),
        ("ejabberd 24.02", "turn_ipv6_address"),
        (None, "relay-ip="),
    ):
        failure = ErrorResponse("Allocate", 440, "Address Family not Supported", software)
        words = asked_refused(failure, family="ipv6")
        assert words.reason == (
            "the server has no IPv6 relay address (440 Address Family not Supported)"
        )
        assert setting in words.hint, (software, words.hint)
    eturnal = ErrorResponse("Allocate", 442, "Unsupported Transport Protocol", "eturnal 1.12.1")
    assert "relay UDP only" in asked_refused(eturnal, tcp=True).hint
    # Anything else is explain()'s.
    assert asked_refused(DnsFailure("nxdomain", "h.test"), family="ipv6") == explain(
        DnsFailure("nxdomain", "h.test")
    )
