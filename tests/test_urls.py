"""ICE URL parsing (RFC 7064/7065): accepted forms and one clear error for each bad one."""

from __future__ import annotations

import pytest

from turncheck.errors import InputError
from turncheck.urls import Scheme, Transport, parse_url


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "transport"),
    [
        ("stun:stun.example.com", Scheme.STUN, "stun.example.com", None, None),
        ("stun:stun.example.com:19302", Scheme.STUN, "stun.example.com", 19302, None),
        ("STUN:Example.COM", Scheme.STUN, "Example.COM", None, None),
        ("stuns:example.com", Scheme.STUNS, "example.com", None, None),
        ("turn:10.0.0.1:3478?transport=udp", Scheme.TURN, "10.0.0.1", 3478, Transport.UDP),
        ("turn:example.com?transport=tcp", Scheme.TURN, "example.com", None, Transport.TCP),
        ("turn:example.com?transport=UDP", Scheme.TURN, "example.com", None, Transport.UDP),
        ("turns:example.com:443?transport=tcp", Scheme.TURNS, "example.com", 443, Transport.TLS),
        ("turns:example.com", Scheme.TURNS, "example.com", None, None),
        ("turn:[2001:db8::1]:3478", Scheme.TURN, "2001:db8::1", 3478, None),
        ("turn:[::1]", Scheme.TURN, "::1", None, None),
        ("turn:_srv-name.example.com.", Scheme.TURN, "_srv-name.example.com.", None, None),
    ],
)
def test_valid_urls(
    text: str, scheme: Scheme, host: str, port: int | None, transport: Transport | None
) -> None:
    url = parse_url(text)
    assert (url.scheme, url.host, url.port, url.transport) == (scheme, host, port, transport)


def test_round_trip_text() -> None:
    assert str(parse_url("turn:[::1]:3478?transport=udp")) == "turn:[::1]:3478?transport=udp"
    assert (
        str(parse_url("turns:h.example:443?transport=tcp")) == "turns:h.example:443?transport=tcp"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("example.com", "no scheme"),
        ("http://example.com", "unknown scheme 'http'"),
        ("turn://example.com", "no '//'"),
        ("turn:", "missing host"),
        ("turn::3478", "missing host"),
        ("stun:example.com?transport=udp", "take no query part"),
        ("turn:example.com?transport=sctp", "unknown transport 'sctp'"),
        ("turn:example.com?proto=udp", "only query allowed"),
        ("turns:example.com?transport=udp", "DTLS"),
        ("turn:example.com:0", "out of range"),
        ("turn:example.com:65536", "out of range"),
        ("turn:example.com:abc", "not a number"),
        ("turn:2001:db8::1", "in brackets"),
        ("turn:[2001:db8::1", "unclosed"),
        ("turn:[example.com]", "not an IPv6 address"),
        ("turn:[::1]x", "unexpected"),
        ("turn:alice@example.com", "credentials do not belong"),
        ("turn:exa mple.com", "not a valid host name"),
        ("turn:-bad.example.com", "not a valid host name"),
        ("turn:999.1.1.1", "not a valid IPv4 address"),
    ],
)
def test_invalid_urls_name_the_url_and_the_fault(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_url(text)
    assert message in str(info.value)
    assert f"'{text.strip()}'" in str(info.value)
