"""iceServers JSON shapes, browser-like validation, REST credentials and advice: no network."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from turncheck.browser import parse_ice_url
from turncheck.config import (
    advice,
    parse_configuration,
    parse_ice_servers,
    rest_credentials,
    rest_expiry,
)
from turncheck.errors import InputError
from turncheck.plan import ServerEntry, entries_from

ENTRY = '{"urls": ["turn:a.example?transport=udp", "stun:a.example"], "username": "u", "credential": "c"}'


@pytest.mark.parametrize(
    "text",
    [
        f'{{"iceServers": [{ENTRY}]}}',
        f"[{ENTRY}]",
        f'{{"customServers": [{ENTRY}]}}',
    ],
)
def test_the_three_shapes(text: str) -> None:
    (server,) = parse_ice_servers(text, "x.json")
    assert server.urls == ("turn:a.example?transport=udp", "stun:a.example")
    assert server.credentials is not None and server.credentials.username == "u"
    assert server.origin.endswith("[0] in x.json")


def test_urls_as_a_string_and_legacy_url_key() -> None:
    (a, b) = parse_ice_servers('[{"urls": "stun:a.example"}, {"url": "stun:b.example"}]')
    assert a.urls == ("stun:a.example",) and b.urls == ("stun:b.example",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"iceServers": [', "neither JSON nor a JavaScript object literal: line 1, column 17"),
        (
            '[\n {"urls": "stun:a"}\n {"urls": "stun:b"}]',
            "neither JSON nor a JavaScript object literal: line 3, column 2",
        ),
        ('{"servers": []}', 'an object with an "iceServers" list'),
        ('{"iceServers": {}}', '"iceServers" must be a list'),
        ('["stun:a.example"]', "iceServers[0] in f.json: an RTCIceServer must be an object"),
        ('[{"username": "u"}]', '"urls" must be a URL string'),
        ('[{"urls": "stun:a", "username": 5, "credential": "c"}]', '"username" must be a string'),
        ('{"iceServers": []}', "is an empty list: there is no server to test"),
        (
            '{"iceServers": [{"urls": "stun:a"}], "iceTransportPolicy": "none"}',
            "the browser throws TypeError",
        ),
    ],
)
def test_malformed_documents(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_ice_servers(text, "f.json")
    assert message in str(info.value)


def test_syntax_error_and_invalid_access_error_name_the_entry() -> None:
    servers = parse_ice_servers(
        '[{"urls": "stun:ok.example"}, {"urls": "turn:bad:1:2", "username": "u", '
        '"credential": "c"}]',
        "f.json",
    )
    with pytest.raises(
        InputError, match=r"iceServers\[1\] in f.json: .*'turn:bad:1:2'.*SyntaxError"
    ):
        entries_from(servers)


def test_rest_credentials_match_coturn_formula() -> None:
    creds = rest_credentials("secret", "alice", 600, now=1_700_000_000)
    assert creds.username == "1700000600:alice"
    digest = hmac.new(b"secret", b"1700000600:alice", hashlib.sha1).digest()
    assert creds.password == base64.b64encode(digest).decode()
    assert rest_credentials("secret", None, 60, now=1_700_000_000).username == "1700000060"
    assert rest_expiry("1700000600:alice") == 1_700_000_600
    assert rest_expiry("alice") is None


def entries(*texts: str, username: str = "u") -> list[ServerEntry]:
    from turncheck.config import Credentials

    return [ServerEntry(parse_ice_url(t), Credentials(username, "p")) for t in texts]


def test_advice_lines() -> None:
    only_stun = advice(entries("stun:a.example"))
    assert any(a.startswith("no TURN server") for a in only_stun)
    assert any(a.startswith("only one ICE server URL") for a in only_stun)
    udp_only = advice(entries("turn:a.example", "turn:b.example"))
    assert any(a.startswith("no TURN over TCP or TLS") for a in udp_only)
    assert any(a.startswith("no turns: on port 443") for a in udp_only)
    assert any(a.startswith("2 turn: URLs over udp on different hosts") for a in udp_only)
    good = advice(entries("turn:a.example?transport=udp", "turns:a.example:443?transport=tcp"))
    assert good == []


def test_advice_on_rest_credential_expiry() -> None:
    now = 1_700_000_000
    expired = advice(
        entries("turns:a.example:443", "turn:a.example?transport=tcp", username="1699999000:al"),
        now=now,
    )
    assert any("has expired: the timestamp in the username" in a for a in expired)
    soon = advice(
        entries("turns:a.example:443", "turn:a.example?transport=tcp", username="1700000900:al"),
        now=now,
    )
    assert any("expires in 15 min" in a for a in soon)


def test_javascript_object_literal_from_app_code_is_read() -> None:
    text = """{
      // from the app's source
      iceServers: [
        { urls: ['stun:a.example', 'turn:a.example?transport=tcp'], username: 'u',
          credential: 'c', },
      ],
      iceTransportPolicy: 'relay',
    }"""
    config = parse_configuration(text, "app.js")
    assert config.relay_only is True
    assert config.servers[0].urls == ("stun:a.example", "turn:a.example?transport=tcp")


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("iceServers: [{urls: 'stun:a'}]", "wrap it in { }"),
        ("{iceServers: [{urls: `stun:${host}`}]}", "replace variables, function calls"),
    ],
)
def test_javascript_that_cannot_be_read_says_what_to_change(text: str, hint: str) -> None:
    with pytest.raises(InputError, match="neither JSON nor a JavaScript object literal") as info:
        parse_configuration(text, "app.js")
    assert hint in str(info.value)
