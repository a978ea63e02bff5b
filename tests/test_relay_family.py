"""IPv6 relays and RFC 8656 dual allocation (`probe --relay-family`): the attribute encodings,
and data really relayed through each family of a real coturn, to relayed addresses turncheck
holds or to a UDP echo on ::1 that this test listens on. The family's Allocate is a row of its
own beside the browser's (which asks for no family): what a browser gets never depends on it,
and the exit code and the verdict name it when it fails."""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.servers.coturn import Coturn
from turncheck import stun

CREDS = ("-u", "alice", "-p", "s3cret")


@contextmanager
def udp_echo_peer(host: str = "::1") -> Iterator[tuple[str, int]]:
    """A UDP echo server on loopback that also records who sent it what."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    stop = threading.Event()
    seen: list[tuple[str, int]] = []

    def serve() -> None:
        for _ in range(200_000):  # bounded
            if stop.is_set():
                return
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                data, addr = sock.recvfrom(65535)
                seen.append((addr[0], addr[1]))
                sock.sendto(data, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield host, sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()
    udp_echo_peer.seen = seen  # type: ignore[attr-defined]


def attributes(message: stun.Message) -> list[tuple[int, bytes]]:
    data = bytes(message)
    out, pos = [], 20
    while pos < len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        out.append((kind, data[pos + 4 : pos + 4 + length]))
        pos += 4 + length + (-length % 4)
    return out


# -- the wire, without a server ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "draft", "kind", "value"),
    [
        ("ipv4", False, 0x0017, b"\x01\x00\x00\x00"),  # RFC 8656 §18.11: family, 3 bytes RFFU
        ("ipv6", False, 0x0017, b"\x02\x00\x00\x00"),
        ("dual", False, 0x8000, b"\x02\x00\x00\x00"),  # §18.12 ADDITIONAL-ADDRESS-FAMILY
        ("dual", True, 0x8032, b"\x02\x00\x00\x00"),  # the draft's code point, coturn's
    ],
)
def test_family_attributes_on_the_wire(family: str, draft: bool, kind: int, value: bytes) -> None:
    attrs = {"REQUESTED-TRANSPORT": stun.REQUESTED_TRANSPORT_UDP}
    attrs.update(stun.requested_family(family, draft=draft))
    message = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST, attributes=attrs)
    assert attributes(message) == [(0x0019, b"\x11\x00\x00\x00"), (kind, value)]


def test_tcp_transport_and_rfc6062_methods() -> None:
    assert struct.pack("!I", stun.REQUESTED_TRANSPORT_TCP) == b"\x06\x00\x00\x00"
    for method, code, name in (
        (stun.CONNECT, 0x000A, "Connect"),
        (stun.CONNECTION_BIND, 0x000B, "ConnectionBind"),
        (stun.CONNECTION_ATTEMPT, 0x000C, "ConnectionAttempt"),
    ):
        cls = stun.Class.INDICATION if name == "ConnectionAttempt" else stun.Class.RESPONSE
        message = stun.Message(
            method, cls, attributes={"CONNECTION-ID": 0x01020304, "XOR-PEER-ADDRESS": ("::1", 9)}
        )
        data = bytes(message)
        assert struct.unpack_from("!H", data)[0] & 0x3EEF == code
        assert (0x002A, b"\x01\x02\x03\x04") in attributes(message)
        parsed = stun.decode(data)
        assert parsed.message_method == code and stun.method_name(parsed.message_method) == name
        assert parsed.attributes["CONNECTION-ID"] == 0x01020304
        assert parsed.attributes["XOR-PEER-ADDRESS"] == ("::1", 9)


def test_every_relayed_address_of_a_dual_answer_is_read() -> None:
    """aioice keeps one value per name; a dual allocation's success carries two."""
    tid = b"\x01" * 12
    xor = stun._stun.pack_xor_address

    def attr(kind: int, value: bytes) -> bytes:
        return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)

    def header(length: int) -> bytes:
        return struct.pack("!HHI12s", 0x0103, length, stun.COOKIE, tid)

    body = (
        attr(0x0016, xor(("192.0.2.1", 1), tid))
        + attr(0x0016, xor(("::1", 2), tid))
        + attr(0x000D, struct.pack("!I", 600))
    )
    key = b"k" * 16
    integrity = stun._stun.message_integrity(header(len(body)) + body, key)
    body += attr(0x0008, integrity)
    # A third XOR-RELAYED-ADDRESS after MESSAGE-INTEGRITY is not authenticated: not read.
    body += attr(0x0016, xor(("198.51.100.1", 3), tid))
    parsed = stun.decode(header(len(body)) + body)
    assert parsed.check_message_integrity(key)
    assert parsed.attributes["XOR-RELAYED-ADDRESS"] == ("::1", 2)  # aioice: the last kept
    assert stun.repeated(parsed, "XOR-RELAYED-ADDRESS") == [("192.0.2.1", 1), ("::1", 2)]
    assert stun.repeated(parsed, "LIFETIME") == [600]
    assert stun.repeated(parsed, "SOFTWARE") == []


def test_address_error_code() -> None:
    """RFC 8656 §18.13: family, reserved, class, number, reason (coturn's 0x8033 alike)."""
    value = b"\x02\x00\x04\x28Address Family not Supported"
    assert stun.address_error(value) == ("IPv6", 440, "Address Family not Supported")
    assert stun.address_error(b"\x01\x00\x05\x08x") == ("IPv4", 508, "x")
    assert stun.address_error(b"\x02") == ("?", 0, "")


# -- against coturn ---------------------------------------------------------------------------


@pytest.fixture
def dual_stack(coturn_factory) -> Coturn:
    """coturn with relay addresses of both families (and allow-loopback-peers)."""
    return coturn_factory(hosts=("127.0.0.1", "::1"), relay_ips=("127.0.0.1", "::1"), tls=False)


@pytest.fixture
def ipv4_only(coturn_factory) -> Coturn:
    return coturn_factory(hosts=("127.0.0.1",), tls=False)


def probe(cli, server: Coturn, *args: str, table: bool = False):
    """The run, and its --relay-family row; the browser's own Allocate beside it is checked
    here: no family asked, so the server's default IPv4 relay, carrying data on a channel."""
    result = cli(
        "probe",
        f"turn:127.0.0.1:{server.port}?transport=udp",
        *CREDS,
        "--count",
        "5",
        *args,
        *(() if table else ("--json",)),
        env={"COLUMNS": "80"},
    )
    if table:
        return result, None
    turn = [c for c in result.json()["checks"] if c["kind"] == "turn"]
    asked = [c for c in turn if "relay_family" in c["details"]]
    own = [c for c in turn if "relay_family" not in c["details"]]
    assert len(asked) == 1 and len(own) == 1, result.out
    assert_the_browsers_own(own[0])
    assert asked[0]["details"]["browsers"] == []  # no browser makes it
    assert "browser_error" not in asked[0]["details"]  # nor raises an error for it
    return result, asked[0]


def assert_the_browsers_own(check: dict) -> None:
    """The browser's Allocate: no REQUESTED-ADDRESS-FAMILY, so the server's default family
    (IPv4, RFC 8656 §7.1), relayed over a channel as a browser's media goes."""
    assert check["ok"] is True, check
    assert check["details"]["browsers"] == ["chromium", "firefox"]
    assert [c["address"] for c in check["candidates"] if c["type"] == "relay"] == ["127.0.0.1"]
    assert check["relay_test"]["peer"].startswith("the second allocation 127.0.0.1:")
    assert check["relay_test"]["paths"]["channel"]["ok"] is True


def assert_browsers_get_their_relay(doc: dict) -> None:
    for engine in ("chromium", "firefox"):
        view = doc["browsers"][engine]
        assert view["ok"] is True and view["relay"] == ["udp"], view
        assert view["relays_media"] is True and view["errors"] == [], view


def assert_all_deleted(server: Coturn, *, some: bool = True) -> None:
    made, deleted = server.allocation_sessions()
    assert made <= deleted, server.log_tail(40)
    assert bool(made) is some, made


def in_range(server: Coturn, hostport: str, ip: str) -> bool:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]") == ip and server.min_port <= int(port) <= server.max_port


def test_ipv6_relay_carries_data_between_two_ipv6_relayed_addresses(
    cli, dual_stack: Coturn
) -> None:
    result, check = probe(cli, dual_stack, "--relay-family", "ipv6")
    assert result.code == 0, result.out
    found = check["details"]["relay_family"]
    assert found["asked"] == "ipv6"
    (relayed,) = found["relayed"]
    assert in_range(dual_stack, relayed, "::1")
    relay = check["relay_test"]
    assert relay["peer"].startswith("the second allocation [::1]:")
    assert relay["sent"] == relay["received"] == 5
    assert relay["paths"]["channel"] == {"ok": True, "sent": 5, "received": 5}
    assert relay["paths"]["indication"]["ok"] is True
    # The row's Allocate asked for IPv6: its relay candidate is the IPv6 relayed address.
    assert [c["type"] for c in check["candidates"]] == ["srflx", "relay"]
    assert relayed == f"[::1]:{check['candidates'][1]['port']}"
    assert check["details"]["note"] == f"relay ipv6 {relayed}"
    assert_all_deleted(dual_stack)


def test_ipv6_relay_to_an_ipv6_udp_echo_peer(cli, dual_stack: Coturn) -> None:
    with udp_echo_peer("::1") as peer:
        result, check = probe(
            cli, dual_stack, "--relay-family", "ipv6", "--peer", f"[::1]:{peer[1]}"
        )
    assert result.code == 0, result.out
    relay = check["relay_test"]
    assert relay["peer"] == f"the peer [::1]:{peer[1]}"
    assert relay["sent"] == relay["received"] == 5
    # Every packet the echo peer saw came from coturn's IPv6 relayed address.
    seen = udp_echo_peer.seen  # type: ignore[attr-defined]
    assert len(seen) >= 5
    assert {s[0] for s in seen} == {"::1"}
    assert all(dual_stack.min_port <= s[1] <= dual_stack.max_port for s in seen)
    (relayed,) = check["details"]["relay_family"]["relayed"]
    assert {s[1] for s in seen} == {int(relayed.rpartition(":")[2])}
    assert_all_deleted(dual_stack)


def test_dual_allocation_relays_through_each_family(cli, dual_stack: Coturn) -> None:
    result, check = probe(cli, dual_stack, "--relay-family", "dual")
    assert result.code == 0, result.out
    found = check["details"]["relay_family"]
    # coturn 4.6.1 reads ADDITIONAL-ADDRESS-FAMILY at the draft's 0x8032 only: RFC 8656's
    # 0x8000 got one IPv4 relay, so the check asked again at 0x8032.
    assert found["attribute"] == "draft"
    v4, v6 = found["relayed"]
    assert in_range(dual_stack, v4, "127.0.0.1") and in_range(dual_stack, v6, "::1")
    for family in ("ipv4", "ipv6"):
        echo = found["families"][family]
        assert echo["sent"] == echo["received"] == 5, family
        assert echo["paths"]["channel"]["ok"] is True
    relays = [c for c in check["candidates"] if c["type"] == "relay"]
    assert [f"{c['address']}:{c['port']}" for c in relays] == [
        v4,
        v6.replace("[", "").replace("]", ""),
    ]
    relay = check["relay_test"]
    assert relay["path"] == "ipv4+ipv6"
    assert relay["sent"] == relay["received"] == 10
    assert set(relay["paths"]) == {"indication", "channel", "ipv6 indication", "ipv6 channel"}
    assert_all_deleted(dual_stack)


def test_ipv4_relay_family(cli, dual_stack: Coturn) -> None:
    result, check = probe(cli, dual_stack, "--relay-family", "ipv4")
    assert result.code == 0, result.out
    (relayed,) = check["details"]["relay_family"]["relayed"]
    assert in_range(dual_stack, relayed, "127.0.0.1")
    assert check["relay_test"]["paths"]["channel"]["ok"] is True
    assert_all_deleted(dual_stack)


def test_no_ipv6_relay_address_is_440_and_browsers_still_get_their_relay(
    cli, ipv4_only: Coturn
) -> None:
    result, check = probe(cli, ipv4_only, "--relay-family", "ipv6")
    assert result.code == 1, result.out  # the user asked for an IPv6 relay
    found = check["details"]["relay_family"]
    assert found["relayed"] == [] and found["refused"]["code"] == 440
    error = check["error"]
    assert error["code"] == 440
    assert error["reason"].startswith("the server has no IPv6 relay address (440")
    assert "relay-ip= with an IPv6 address" in error["hint"]  # coturn's setting, by SOFTWARE
    assert check["candidates"] == []  # the Allocate asked for IPv6 itself
    assert check["relay_test"] is None
    doc = result.json()
    assert doc["ok"] is False
    assert_browsers_get_their_relay(doc)
    verdict = doc["verdict"]
    assert verdict.startswith(
        "the IPv6 relay failed over UDP (browsers ask for no address family): the server has "
        "no IPv6 relay address (440 "
    ), verdict
    assert "; calls connect: a browser with this configuration gets relay candidates over UDP;" in (
        verdict
    )
    assert verdict.endswith("; the 2 other checks passed"), verdict
    assert_all_deleted(ipv4_only)  # the browser's allocations; the IPv6 one was never made


def test_the_80_column_table_names_the_failed_ipv6_row(cli, ipv4_only: Coturn) -> None:
    result, _ = probe(cli, ipv4_only, "--relay-family", "ipv6", table=True)
    assert result.code == 1, result.out
    lines = result.out.splitlines()
    assert all(len(line) <= 80 for line in lines), result.out
    (own,) = [line for line in lines if "udp Allocate " in line]
    assert re.search(r"\bok\s+127\.0\.0\.1:\d+.*\b5/5 \d+\.\dms$", own), own
    (asked,) = [line for line in lines if line.lstrip().startswith("udp+ Allocate v6")]
    assert re.search(r"udp\+ Allocate v6\s+FAIL 1$", asked), asked
    finding = result.out.split("\n1  ", 1)[1]
    assert finding.startswith("udp+ Allocate v6 of turn:127.0.0.1:"), finding
    assert "Chromium:" not in result.out  # no browser makes it: no icecandidateerror
    assert "verdict: the IPv6 relay failed over UDP" in result.out


def test_the_80_column_table_marks_the_family_of_the_figures(cli, dual_stack: Coturn) -> None:
    for family, mark, address in (("ipv6", "v6", r"\[::1\]"), ("dual", r"v4\+v6", r"127\.0\.0\.1")):
        result, _ = probe(cli, dual_stack, "--relay-family", family, table=True)
        assert result.code == 0, result.out
        lines = result.out.splitlines()
        assert all(len(line) <= 80 for line in lines), result.out
        (row,) = [line for line in lines if re.search(rf"udp\+ Allocate {mark}\b", line)]
        figures = "10/10" if family == "dual" else "5/5"  # dual: --count per family
        assert re.search(rf"\bok\s+{address}:\d+\s.*\b{figures} \d+\.\dms$", row), row
        (own,) = [line for line in lines if "udp Allocate " in line]
        assert re.search(r"\bok\s+127\.0\.0\.1:\d+\s.*\b5/5 \d+\.\dms$", own), own
        assert "verdict: calls connect: a browser with this configuration gets relay " in result.out
    assert_all_deleted(dual_stack)


def test_dual_allocation_without_ipv6_gets_ipv4_and_address_error_code(
    cli, ipv4_only: Coturn
) -> None:
    result, check = probe(cli, ipv4_only, "--relay-family", "dual")
    assert result.code == 1, result.out
    found = check["details"]["relay_family"]
    assert found["attribute"] == "draft"
    (v4,) = found["relayed"]  # coturn's placeholder 0.0.0.0:0 beside it is no address
    assert in_range(ipv4_only, v4, "127.0.0.1")
    assert found["address_error"] == {
        "family": "IPv6",
        "code": 440,
        "reason": "Address Family not Supported",
    }
    assert found["families"]["ipv4"]["received"] == 5  # IPv4 still relays
    error = check["relay_test"]["error"]
    assert error["code"] == 440
    assert error["reason"].startswith("IPv6 relay: the server has no IPv6 relay address")
    doc = result.json()
    assert_browsers_get_their_relay(doc)
    assert doc["verdict"].startswith("the dual allocation failed over UDP (browsers ask for no ")
    assert (
        "calls connect: a browser with this configuration gets relay candidates over UDP"
        in (doc["verdict"])
    )
    assert_all_deleted(ipv4_only)
