"""Which transports, ports and DNS names a URL gets; the plan is printable without traffic."""

from __future__ import annotations

import pytest

from turncheck.config import Credentials
from turncheck.errors import InputError
from turncheck.plan import ServerEntry, build_targets, parse_transports, require_credentials
from turncheck.urls import Transport, parse_url

U, T, S = Transport.UDP, Transport.TCP, Transport.TLS


def plan(
    text: str, override: tuple[Transport, ...] | None = None
) -> list[tuple[str, int, str | None]]:
    entry = ServerEntry(parse_url(text), Credentials("a", "b"))
    return [(t.transport.value, t.port, t.srv_name) for t in build_targets([entry], override)]


def test_bare_url_expands_to_udp_tcp_on_3478_and_tls_on_5349_with_srv() -> None:
    assert plan("turn:example.com") == [
        ("udp", 3478, "_turn._udp.example.com"),
        ("tcp", 3478, "_turn._tcp.example.com"),
        ("tls", 5349, "_turns._tcp.example.com"),
    ]
    assert plan("stun:example.com")[2] == ("tls", 5349, "_stuns._tcp.example.com")


def test_explicit_port_gives_udp_and_tcp_on_that_port_without_srv() -> None:
    assert plan("turn:example.com:3479") == [("udp", 3479, None), ("tcp", 3479, None)]


def test_ip_literal_never_uses_srv() -> None:
    assert plan("turn:192.0.2.1") == [("udp", 3478, None), ("tcp", 3478, None), ("tls", 5349, None)]


def test_url_naming_its_transport_is_tested_as_a_browser_would() -> None:
    assert plan("turn:example.com?transport=udp") == [("udp", 3478, "_turn._udp.example.com")]
    assert plan("turn:example.com:80?transport=tcp", (U, S)) == [("tcp", 80, None)]
    assert plan("turns:example.com:443?transport=tcp") == [("tls", 443, None)]
    assert plan("turns:example.com") == [("tls", 5349, "_turns._tcp.example.com")]
    assert plan("stuns:example.com:443", (U,)) == [("tls", 443, None)]


def test_transport_option_narrows_and_widens() -> None:
    assert plan("turn:example.com", (U,)) == [("udp", 3478, "_turn._udp.example.com")]
    assert plan("turn:example.com:3478", (U, T, S)) == [
        ("udp", 3478, None),
        ("tcp", 3478, None),
        ("tls", 3478, None),
    ]


def test_parse_transports() -> None:
    assert parse_transports("udp, TLS,udp") == (U, S)
    with pytest.raises(InputError, match="unknown transport 'quic'"):
        parse_transports("udp,quic")
    with pytest.raises(InputError):
        parse_transports(",")


def test_turn_without_credentials_is_refused_like_invalid_access_error() -> None:
    with pytest.raises(InputError, match="InvalidAccessError"):
        require_credentials([ServerEntry(parse_url("turns:example.com"))])
    require_credentials([ServerEntry(parse_url("stun:example.com"))])


def test_password_never_in_repr() -> None:
    assert "s3cret" not in repr(Credentials("alice", "s3cret"))
    assert Credentials("alice", "s3cret").masked == "alice:***"
