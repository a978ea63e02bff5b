"""The browser model (turncheck/browser.py) as pure functions: no sockets, no DNS.

tests/browser/test_equivalence.py proves the same rules against a real Chromium; these
tests pin the rules that need no network and the corners a lab does not reach.
"""

from __future__ import annotations

import pytest

from turncheck import browser
from turncheck.browser import IceServerInput, check_constructor, check_policy, parse_ice_url
from turncheck.errors import ConfigRejected
from turncheck.results import Candidate, CheckResult, Explanation
from turncheck.urls import Transport


def urls(*texts: str):
    return [parse_ice_url(t) for t in texts]


def test_protocol_and_port_as_chromium_uses_them() -> None:
    cases = {
        "turn:h": (Transport.UDP, 3478),
        "turn:h:80?transport=tcp": (Transport.TCP, 80),
        "turns:h": (Transport.TLS, 5349),
        "turns:h:5349?transport=udp": (Transport.TLS, 5349),
        "stuns:h": (Transport.UDP, 3478),
        "stun:h:19302": (Transport.UDP, 19302),
    }
    for text, expected in cases.items():
        url = parse_ice_url(text)
        assert (browser.protocol_of(url), browser.port_of(url)) == expected, text


def test_candidate_urls_are_chromiums() -> None:
    assert browser.candidate_url(parse_ice_url("turn:h")) == "turn:h:3478?transport=udp"
    assert browser.candidate_url(parse_ice_url("turns:h")) == "turns:h:5349?transport=tcp"
    assert browser.candidate_url(parse_ice_url("turns:h?transport=udp")) == (
        "turns:h:5349?transport=tcp"
    )
    assert browser.stun_url(parse_ice_url("stuns:h")) == "stun:h:3478"
    assert browser.stun_url(parse_ice_url("turn:[::1]:3479")) == "stun:[::1]:3479"


def test_relay_preference_falls_with_position_and_low_ports_are_skipped() -> None:
    used = browser.uses(urls("stun:s", "turn:a", "turns:a:443", "turn:b:1000"))
    prefs = {str(u.url): (u.relay_preference, u.skipped is not None) for u in used}
    assert prefs == {
        "stun:s": (0, False),
        "turn:a": (3, False),
        "turns:a:443": (2, False),
        "turn:b:1000": (1, True),
    }


def test_more_than_32_turn_urls_are_dropped() -> None:
    used = browser.uses(urls(*(f"turn:h{i}" for i in range(34))))
    assert [u.skipped is not None for u in used] == [False] * 32 + [True] * 2


def test_priorities_match_chromium_156() -> None:
    """Values seen in a real Chromium 156 (tests/browser) and derived from api/candidate.cc."""
    relay = Candidate(
        "relay", "203.0.113.2", 49158, "udp", relay_protocol="udp", relay_preference=1
    )
    assert relay.priority == 58662911
    tls = Candidate("relay", "203.0.113.2", 1, "udp", relay_protocol="tls", relay_preference=1)
    assert tls.priority == 8331263
    tcp_first = Candidate(
        "relay", "203.0.113.2", 1, "udp", relay_protocol="tcp", relay_preference=2
    )
    assert tcp_first.priority == 25108735
    srflx = Candidate("srflx", "203.0.113.1", 1, "udp", related_address="192.0.2.2")
    assert srflx.priority == 1686052607


def test_constructor_two_passes_blink_first() -> None:
    servers = [
        IceServerInput(("turn:a",), "", "x", "iceServers[0]"),  # libwebrtc's fault
        IceServerInput(("turn:b",), None, None, "iceServers[1]"),  # Blink's fault
    ]
    with pytest.raises(ConfigRejected) as info:
        check_constructor(servers)
    assert info.value.exception == "InvalidAccessError"
    assert info.value.message.startswith("Both username and credential are required")
    assert info.value.culprit == "iceServers[1]: 'turn:b'"


def test_policy_values() -> None:
    assert check_policy("relay", "x") is True
    assert check_policy("all", "x") is False
    assert check_policy(None, "x") is False
    with pytest.raises(ConfigRejected, match="TypeError"):
        check_policy("none", "x")


def _check(url: str, transport: str, kind: str, ok: bool, **kw: object) -> CheckResult:
    return CheckResult(url, transport, kind, "192.0.2.9:3478", 3478, ok, **kw)  # type: ignore[arg-type]


def test_view_relay_that_carries_no_data_is_gathered_but_calls_fail() -> None:
    from turncheck.results import RelayResult

    relay = Candidate("relay", "192.0.2.9", 50000, "udp", relay_protocol="udp")
    broken = RelayResult("peer", None, {}, Explanation(None, "relay path broken", "hint"))
    checks = [
        _check("turn:h", "udp", "stun", True),
        _check("turn:h", "udp", "turn", False, candidates=(relay,), relay=broken, cause="relay"),
    ]
    view = browser.view(browser.uses(urls("turn:h")), checks, relay_only=False)
    assert view.relay == ("udp",) and view.ok and view.relays_media is False
    assert view.errors == ()


def test_view_errors_are_chromiums_events() -> None:
    checks = [
        _check("turn:h", "udp", "stun", False, cause="timeout"),
        _check("turn:h", "udp", "turn", False, cause="timeout"),
        _check("turns:h", "tls", "turn", False, cause="tls"),
        _check("turn:h?transport=tcp", "tcp", "turn", False, cause="auth"),
        _check(
            "turn:q?transport=tcp",
            "tcp",
            "turn",
            False,
            cause="error",
            error=Explanation(486, "quota", "hint"),
        ),
    ]
    used = browser.uses(urls("turn:h", "turns:h", "turn:h?transport=tcp", "turn:q?transport=tcp"))
    view = browser.view(used, checks, relay_only=False)
    assert set(view.errors) == {
        ("stun:h:3478", 701, "STUN binding request timed out."),
        ("turn:h:3478?transport=udp", 701, "TURN allocate request timed out."),
        ("turns:h:5349?transport=tcp", 701, "Failed to establish connection"),
        ("turn:h:3478?transport=tcp", 401, "Unauthorized."),
        ("turn:q:3478?transport=tcp", 486, "TURN allocate error."),
    }
    assert not view.ok and view.relay == ()


def test_stun_error_code_keeps_only_the_number() -> None:
    """stun_port.cc passes ERROR-CODE's number() (420 → 20); 400 and 500 raise nothing."""
    for code, expected in ((420, (20, "Unknown")), (400, None), (500, None)):
        check = _check(
            "stun:h",
            "udp",
            "stun",
            False,
            cause="error",
            error=Explanation(code, "x", "y"),
            details={"phrase": "Unknown"},
        )
        assert browser.binding_error(check) == expected


def test_extra_checks_do_not_count() -> None:
    relay = Candidate("relay", "192.0.2.9", 50000, "udp", relay_protocol="tcp")
    checks = [
        _check("turn:h", "udp", "turn", False, cause="timeout"),
        _check("turn:h", "tcp", "turn", True, candidates=(relay,), extra=True),
    ]
    view = browser.view(browser.uses(urls("turn:h")), checks, relay_only=False)
    assert view.relay == () and not view.ok


def test_expiry_note_names_the_clients_of_the_scheme() -> None:
    from turncheck.explain import tls_notes

    cert = {
        "not_after": "2026-12-01T00:00:00Z",
        "days_left": 5.0,
        "san_match": True,
        "san": [],
        "self_signed": False,
    }
    details = {"tls": {"verified": True, "certificate": cert}}
    (stuns,) = tls_notes([_check("stuns:h", "tls", "stun", True, details=details)])
    assert "TLS clients start refusing it" in stuns and "turns:" not in stuns
    (turns,) = tls_notes([_check("turns:h", "tls", "turn", True, details=details)])
    assert "browsers start refusing turns: connections" in turns


def test_empty_port_is_an_invalid_hostname_as_in_chromium_156() -> None:
    with pytest.raises(ConfigRejected) as info:
        parse_ice_url("turn:h:")
    assert info.value.message == "ICE server parsing failed: Invalid hostname format"
    assert "nothing after ':'" in str(info.value)


def test_lookup_text_is_only_udps_tcp_and_tls_fail_to_connect() -> None:
    """turn_port.cc: only the UDP port resolves the name itself (Chromium 156, lab)."""
    checks = [
        _check("turn:h", "udp", "turn", False, cause="dns"),
        _check("turn:h?transport=tcp", "tcp", "turn", False, cause="dns"),
        _check("turns:h", "tls", "turn", False, cause="dns"),
    ]
    used = browser.uses(urls("turn:h", "turn:h?transport=tcp", "turns:h"))
    view = browser.view(used, checks, relay_only=False)
    assert set(view.errors) == {
        ("turn:h:3478?transport=udp", 701, "TURN host lookup received error."),
        ("turn:h:3478?transport=tcp", 701, "Failed to establish connection"),
        ("turns:h:5349?transport=tcp", 701, "Failed to establish connection"),
    }


def test_a_udp_turn_url_on_a_skipped_port_is_still_a_stun_server() -> None:
    """Chromium skips the TURN port of turn:h:1000 but gathers a srflx from stun:h:1000."""
    srflx = Candidate("srflx", "203.0.113.1", 40000, "udp")
    checks = [
        _check("turn:h:1000", "udp", "stun", True, candidates=(srflx,)),
        _check("turn:h:1000", "udp", "turn", False, cause="timeout"),
    ]
    (use,) = browser.uses(urls("turn:h:1000"))
    assert use.skipped is not None and use.stun_server
    view = browser.view([use], checks, relay_only=False)
    assert view.ok and view.srflx and view.relay == () and not view.has_turn
    assert view.errors == ()  # the skipped TURN port raises nothing
    failed = [_check("turn:h:1000", "udp", "stun", False, cause="timeout")]
    view = browser.view([use], failed, relay_only=False)
    assert view.errors == (("stun:h:1000", 701, "STUN binding request timed out."),)


def test_skipped_tcp_and_tls_turn_and_turn_past_32_are_no_stun_servers() -> None:
    (tcp,) = browser.uses(urls("turn:h:1000?transport=tcp"))
    (tls,) = browser.uses(urls("turns:h:1000"))
    assert not tcp.stun_server and not tls.stun_server
    dropped = browser.uses(urls(*(f"turn:h{i}" for i in range(33))))[-1]
    assert dropped.skipped is not None and not dropped.stun_server


def test_relay_policy_verdicts_start_with_what_the_browser_gets() -> None:
    from turncheck.explain import browser_verdict

    stun_only = browser.uses(urls("stun:s"))
    checks = [
        _check("stun:s", "udp", "stun", True, candidates=(Candidate("srflx", "x", 1, "udp"),))
    ]
    view = browser.view(stun_only, checks, relay_only=True)
    text = browser_verdict({"chromium": view}, ["chromium"], checks, "all 1 checks passed")
    assert not view.ok
    assert text.startswith(
        "calls fail: Chromium with this configuration (iceTransportPolicy relay) gathers no "
        "candidate at all: the configuration has no TURN server"
    )
    skipped = browser.uses(urls("turn:h:1000", "turn:h:1000?transport=tcp"))
    relay = Candidate("relay", "192.0.2.9", 50000, "udp", relay_protocol="udp")
    checks = [
        _check("turn:h:1000", "udp", "turn", True, candidates=(relay,)),
        _check("turn:h:1000?transport=tcp", "tcp", "turn", True, candidates=(relay,)),
    ]
    view = browser.view(skipped, checks, relay_only=True)
    text = browser_verdict({"chromium": view}, ["chromium"], checks, "all 2 checks passed")
    assert text.startswith("calls fail: Chromium with this configuration (iceTransportPolicy")
    assert "it skips every TURN URL of it (Chromium never uses a TURN server on port 1000" in text
