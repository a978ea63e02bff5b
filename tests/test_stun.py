"""Our layer over aioice's codec: RFC 5769 vectors, and every malformed input a typed error."""

from __future__ import annotations

import struct

import pytest

from turncheck import stun

# RFC 5769 §2.2: sample IPv4 response (SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT).
RFC5769_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"


def test_rfc5769_ipv4_response_decodes_and_authenticates() -> None:
    message = stun.decode(RFC5769_IPV4_RESPONSE)
    assert message.message_method == stun.Method.BINDING
    assert message.message_class == stun.Class.RESPONSE
    assert message.attributes["XOR-MAPPED-ADDRESS"] == ("192.0.2.1", 32853)
    assert message.attributes["SOFTWARE"] == "test vector"
    assert message.check_message_integrity(RFC5769_PASSWORD)
    assert not message.check_message_integrity(b"wrong")


def test_extra_attributes_round_trip() -> None:
    msg = stun.Message(stun.Method.ALLOCATE, stun.Class.ERROR)
    msg.attributes["ERROR-CODE"] = (300, "Try Alternate")
    msg.attributes["ALTERNATE-SERVER"] = ("192.0.2.7", 3478)
    msg.attributes["REQUESTED-ADDRESS-FAMILY"] = stun.family_attribute("2001:db8::1")
    back = stun.decode(bytes(msg))
    assert back.attributes["ALTERNATE-SERVER"] == ("192.0.2.7", 3478)
    assert back.attributes["REQUESTED-ADDRESS-FAMILY"] == 0x02000000


def test_sign_puts_integrity_last_without_fingerprint_as_chromium_does() -> None:
    """turn_port.cc AddRequestAuthInfo: USERNAME, REALM, NONCE, MESSAGE-INTEGRITY, nothing after
    (the lab capture in tests/browser/test_equivalence.py compares it with Chromium's)."""
    msg = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
    msg.attributes["REQUESTED-TRANSPORT"] = stun.REQUESTED_TRANSPORT_UDP
    msg.attributes["USERNAME"] = "alice"
    msg.attributes["REALM"] = "turncheck.test"
    msg.attributes["NONCE"] = b"abc"
    key = stun.long_term_key("alice", "turncheck.test", "s3cret")
    stun.sign(msg, key)
    back = stun.decode(bytes(msg))
    assert list(back.attributes) == [
        "REQUESTED-TRANSPORT",
        "USERNAME",
        "REALM",
        "NONCE",
        "MESSAGE-INTEGRITY",
    ]
    assert back.check_message_integrity(key)
    assert not back.check_message_integrity(stun.long_term_key("alice", "x", "s3cret"))


def _header(msg_type: int, length: int, cookie: int = stun.COOKIE) -> bytes:
    return struct.pack("!HHI12s", msg_type, length, cookie, b"x" * 12)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "shorter than a STUN header"),
        (b"\x01\x01\x00", "shorter than a STUN header"),
        (b"\xff" * 20, "first two bits"),
        (_header(0x0101, 0, cookie=0xDEADBEEF), "magic cookie"),
        (_header(0x0101, 3) + b"abc", "multiple of 4"),
        (_header(0x0101, 8), "length field says 8"),
        (_header(0x0101, 0) + b"\x00" * 4, "length field says 0"),
        (_header(0x0FFF, 0), "unknown method"),
        (_header(0x0101, 4) + b"\x00\x20\x00\x08", "overruns"),
        (_header(0x0101, 8) + b"\x00\x20\x00\x04\x00\x07\x00\x01", "unknown protocol"),
        (_header(0x0101, 12) + b"\x00\x20\x00\x08\x00\x01\xa1\x47\xe1\x12\xa6\x43"[:12], ""),
    ],
)
def test_malformed_input_is_a_malformed_message(data: bytes, why: str) -> None:
    if why == "":
        stun.decode(data)  # the well-formed control case
        return
    with pytest.raises(stun.MalformedMessage, match=why):
        stun.decode(data)


def test_bad_fingerprint_is_malformed() -> None:
    bad = bytearray(RFC5769_IPV4_RESPONSE)
    bad[-1] ^= 0xFF
    with pytest.raises(stun.MalformedMessage, match="fingerprint"):
        stun.decode(bytes(bad))


def test_error_phrase_is_cleaned_of_control_bytes() -> None:
    msg = stun.Message(stun.Method.ALLOCATE, stun.Class.ERROR)
    msg.attributes["ERROR-CODE"] = (440, "Unsupported address family\x00\x00\x1b[31m")
    assert stun.error_of(stun.decode(bytes(msg))) == (440, "Unsupported address family???[31m")
    msg.attributes["ERROR-CODE"] = (440, "Unsupported address family\x00\x00")
    assert stun.error_of(stun.decode(bytes(msg))) == (440, "Unsupported address family")


def test_long_term_key_is_md5_of_user_realm_password() -> None:
    import hashlib

    assert (
        stun.long_term_key("alice", "example.org", "pw")
        == hashlib.md5(b"alice:example.org:pw").digest()
    )
