"""ICE URL parsing as Chromium does it: accepted forms, and the browser's exception, message
and turncheck's explanation for each bad one (tests/browser/ checks these against Chromium)."""

from __future__ import annotations

import pytest

from turncheck.browser import parse_ice_url
from turncheck.errors import ConfigRejected
from turncheck.urls import Scheme, Transport


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
        # Chromium: turns: is TLS whatever ?transport= says (not DTLS).
        ("turns:example.com:5349?transport=udp", Scheme.TURNS, "example.com", 5349, Transport.TLS),
        ("turns:example.com", Scheme.TURNS, "example.com", None, None),
        ("turn:[2001:db8::1]:3478", Scheme.TURN, "2001:db8::1", 3478, None),
        ("turn:[::1]", Scheme.TURN, "::1", None, None),
        ("turn:_srv-name.example.com.", Scheme.TURN, "_srv-name.example.com.", None, None),
    ],
)
def test_valid_urls(
    text: str, scheme: Scheme, host: str, port: int | None, transport: Transport | None
) -> None:
    url = parse_ice_url(text)
    assert (url.scheme, url.host, url.port, url.transport) == (scheme, host, port, transport)


def test_round_trip_text() -> None:
    assert str(parse_ice_url("turn:[::1]:3478?transport=udp")) == "turn:[::1]:3478?transport=udp"
    assert (
        str(parse_ice_url("turns:h.example:443?transport=tcp"))
        == "turns:h.example:443?transport=tcp"
    )
    assert str(parse_ice_url("turns:h.example?transport=udp")) == "turns:h.example?transport=udp"


P = "ICE server parsing failed: "


@pytest.mark.parametrize(
    ("text", "exception", "message", "why"),
    [
        ("", "SyntaxError", "'' is not a valid URL.", "empty"),
        ("example.com", "SyntaxError", "'example.com' is not a valid URL.", "turn:host"),
        (
            "http://example.com",
            "SyntaxError",
            "'http://example.com' is not a valid stun or turn URL.",
            "start with stun:",
        ),
        ("turn:", "SyntaxError", P + "Invalid transport parameter in ICE URI", "missing host"),
        (
            "stun:example.com?transport=udp",
            "SyntaxError",
            "'stun:example.com?transport=udp' is not a valid stun or turn URL.",
            "take no query",
        ),
        (
            "turn:example.com?transport=sctp",
            "SyntaxError",
            P + "Transport parameter should always be udp or tcp.",
            "unknown transport 'sctp'",
        ),
        (
            "turn:example.com?proto=udp",
            "SyntaxError",
            "'turn:example.com?proto=udp' is not a valid stun or turn URL.",
            "only query allowed",
        ),
        ("turn:example.com:0", "SyntaxError", P + "Invalid port", "out of range"),
        ("turn:example.com:65536", "SyntaxError", P + "Invalid port", "out of range"),
        ("turn:example.com:abc", "SyntaxError", P + "Invalid port", "not a number"),
        ("turn:2001:db8::1", "SyntaxError", P + "Invalid port", "in brackets"),
        ("turn:[2001:db8::1", "SyntaxError", P + "Invalid hostname format", "unclosed"),
        ("turn:[::1]x", "SyntaxError", P + "Invalid hostname format", "unexpected"),
        (
            "turn:alice@example.com",
            "SyntaxError",
            P + "Invalid url with long deprecated user@host syntax",
            "credentials do not belong",
        ),
        ("turn:exa mple.com", "SyntaxError", P + "Invalid hostname format", "valid host name"),
    ],
)
def test_invalid_urls_give_chromiums_exception_and_message(
    text: str, exception: str, message: str, why: str
) -> None:
    with pytest.raises(ConfigRejected) as info:
        parse_ice_url(text)
    assert (info.value.exception, info.value.message) == (exception, message)
    assert why in info.value.why
    line = str(info.value)
    assert f"the browser throws {exception}: {message}" in line
    assert f"'{text.strip()}'" in line
