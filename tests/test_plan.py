"""Which transports, ports and DNS names a URL gets; the plan is printable without traffic."""

from __future__ import annotations

import pytest

from turncheck.browser import parse_ice_url
from turncheck.config import Credentials
from turncheck.errors import ConfigRejected, InputError
from turncheck.plan import ServerEntry, build_targets, command_line_entries, parse_transports
from turncheck.urls import Transport

U, T, S = Transport.UDP, Transport.TCP, Transport.TLS


def plan(
    text: str, override: tuple[Transport, ...] | None = None
) -> list[tuple[str, int, str | None, str]]:
    entry = ServerEntry(parse_ice_url(text), Credentials("a", "b"))
    return [
        (t.transport.value, t.port, t.srv_name, t.role) for t in build_targets([entry], override)
    ]


def test_bare_url_is_udp_for_the_browser_plus_extras_and_srv() -> None:
    assert plan("turn:example.com") == [
        ("udp", 3478, None, "browser"),
        ("tcp", 3478, None, "extra"),
        ("tls", 5349, None, "extra"),
        ("udp", 3478, "_turn._udp.example.com", "extra (SRV)"),
        ("tcp", 3478, "_turn._tcp.example.com", "extra (SRV)"),
        ("tls", 5349, "_turns._tcp.example.com", "extra (SRV)"),
    ]
    assert plan("stun:example.com")[5] == ("tls", 5349, "_stuns._tcp.example.com", "extra (SRV)")


def test_browser_udp_target_resolves_the_absolute_name() -> None:
    entry = ServerEntry(parse_ice_url("turn:example.com"), Credentials("a", "b"))
    udp, tcp, *_ = build_targets([entry])
    assert udp.absolute and not tcp.absolute


def test_explicit_port_gives_udp_and_tcp_on_that_port_without_srv() -> None:
    assert plan("turn:example.com:3479") == [
        ("udp", 3479, None, "browser"),
        ("tcp", 3479, None, "extra"),
    ]


def test_ip_literal_never_uses_srv() -> None:
    assert [p[:3] for p in plan("turn:192.0.2.1")] == [
        ("udp", 3478, None),
        ("tcp", 3478, None),
        ("tls", 5349, None),
    ]


def test_url_naming_its_transport_is_tested_as_a_browser_would() -> None:
    assert plan("turn:example.com?transport=udp") == [
        ("udp", 3478, None, "browser"),
        ("udp", 3478, "_turn._udp.example.com", "extra (SRV)"),
    ]
    assert plan("turn:example.com:80?transport=tcp", (U, S)) == [("tcp", 80, None, "browser")]
    assert plan("turns:example.com:443?transport=tcp") == [("tls", 443, None, "browser")]
    assert plan("turns:example.com:5349?transport=udp") == [("tls", 5349, None, "browser")]


def test_stuns_is_udp_stun_for_the_browser_and_tls_as_an_extra() -> None:
    assert plan("stuns:example.com:443") == [
        ("udp", 443, None, "browser"),
        ("tls", 443, None, "extra"),
    ]
    assert plan("stuns:192.0.2.1") == [("udp", 3478, None, "browser"), ("tls", 5349, None, "extra")]


def test_transport_option_narrows_and_widens() -> None:
    assert plan("turn:example.com", (U,)) == [
        ("udp", 3478, None, "browser"),
        ("udp", 3478, "_turn._udp.example.com", "extra (SRV)"),
    ]
    assert plan("turn:example.com:3478", (U, T, S)) == [
        ("udp", 3478, None, "browser"),
        ("tcp", 3478, None, "extra"),
        ("tls", 3478, None, "extra"),
    ]


def test_parse_transports() -> None:
    assert parse_transports("udp, TLS,udp") == (U, S)
    with pytest.raises(InputError, match="unknown transport 'quic'"):
        parse_transports("udp,quic")
    with pytest.raises(InputError):
        parse_transports(",")


def test_turn_without_credentials_is_refused_like_invalid_access_error() -> None:
    with pytest.raises(ConfigRejected, match="InvalidAccessError") as info:
        command_line_entries(["turns:example.com"], None, "none")
    assert "--username" in str(info.value)
    (stun,) = command_line_entries(["stun:example.com"], Credentials("a", "b"), "env")
    assert stun.credentials is None  # credentials only go to TURN URLs


def test_password_never_in_repr() -> None:
    assert "s3cret" not in repr(Credentials("alice", "s3cret"))
    assert Credentials("alice", "s3cret").masked == "alice:***"
