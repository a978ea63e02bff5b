"""RFC 6062 TCP relays (`probe --tcp-relay --peer`): real bytes through a real coturn to a TCP
echo server this test listens on, and back; coturn's no-tcp-relay gives 442. The TCP
allocation is a row of its own beside the browser's Allocate (which relays UDP, over TCP and
TLS too): what a browser gets never depends on it."""

from __future__ import annotations

import asyncio
import re
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from turncheck import stun
from turncheck.transport import RetryPolicy, StreamChannel
from turncheck.turn import Allocation

CREDS = ("-u", "alice", "-p", "s3cret")


@dataclass
class EchoLog:
    """What the TCP echo peer saw: where each connection came from, how many bytes."""

    sources: list[tuple[str, int]] = field(default_factory=list)
    echoed: int = 0


@contextmanager
def tcp_echo_peer(host: str = "127.0.0.1") -> Iterator[tuple[tuple[str, int], EchoLog]]:
    """A TCP echo server on loopback (what an operator names with --peer)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(8)
    log = EchoLog()
    stop = threading.Event()

    def serve() -> None:
        conns: list[socket.socket] = []
        for _ in range(200_000):  # bounded
            if stop.is_set():
                break
            ready, _, _ = select.select([listener, *conns], [], [], 0.05)
            for sock in ready:
                if sock is listener:
                    conn, addr = listener.accept()
                    log.sources.append((addr[0], addr[1]))
                    conns.append(conn)
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        sock.sendall(data)
                        log.echoed += len(data)
                        continue
                except OSError:  # coturn resets the peer connection when the allocation goes
                    pass
                conns.remove(sock)
                sock.close()
        for conn in conns:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield (host, listener.getsockname()[1]), log
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def turn_checks(doc: dict) -> list[dict]:
    return [c for c in doc["checks"] if c["kind"] == "turn"]


def split(doc: dict) -> tuple[dict, dict]:
    """(the browser's own Allocate, the --tcp-relay row beside it) of a one-URL run."""
    turn = turn_checks(doc)
    asked = [c for c in turn if "tcp_relay" in c["details"]]
    own = [c for c in turn if "tcp_relay" not in c["details"]]
    assert len(asked) == 1 and len(own) == 1, turn
    assert asked[0]["details"]["browsers"] == []  # no browser makes it
    assert "browser_error" not in asked[0]["details"]  # nor raises an error for it
    return own[0], asked[0]


def assert_the_browsers_own(check: dict) -> None:
    """The browser's Allocate over TCP/TLS: a UDP relay, carrying data on a channel."""
    assert check["ok"] is True, check
    relay = check["relay_test"]
    assert relay["peer"].startswith("the second allocation")
    assert relay["paths"]["channel"]["ok"] is True
    assert "tcp" not in relay["paths"]
    assert [c["protocol"] for c in check["candidates"] if c["type"] == "relay"] == ["udp"]


@pytest.fixture
def server(coturn_factory) -> Coturn:
    return coturn_factory(hosts=("127.0.0.1",))


def assert_all_deleted(server: Coturn) -> None:
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted, server.log_tail(40)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_tcp_relay_carries_bytes_both_ways_through_coturn(
    cli, server: Coturn, ca_file: Path, transport: str
) -> None:
    url = (
        f"turns:localhost:{server.tls_port}?transport=tcp"
        if transport == "tls"
        else f"turn:127.0.0.1:{server.port}?transport=tcp"
    )
    with tcp_echo_peer() as (peer, log):
        result = cli(
            "probe",
            url,
            *CREDS,
            "-4",
            "--ca-file",
            str(ca_file),
            "--tcp-relay",
            "--peer",
            f"{peer[0]}:{peer[1]}",
            "--count",
            "5",
            "--size",
            "200",
            "--json",
        )
    assert result.code == 0, result.out + result.err
    own, check = split(result.json())
    # The UDP relaying a browser does is its own row, through a second allocation.
    assert_the_browsers_own(own)
    assert own["relay_test"]["paths"]["channel"] == {"ok": True, "sent": 5, "received": 5}
    relay = check["relay_test"]
    assert relay["path"] == "tcp"
    assert relay["sent"] == relay["received"] == 5
    assert 0 < relay["rtt_ms"]["min"] <= relay["rtt_ms"]["avg"] <= relay["rtt_ms"]["max"]
    assert relay["paths"] == {"tcp": {"ok": True, "sent": 5, "received": 5}}
    assert relay["peer"] == f"the TCP peer {peer[0]}:{peer[1]}"
    tcp = check["details"]["tcp_relay"]
    assert tcp["both_ways"] is True and tcp["refused"] is None
    assert tcp["peer"] == f"{peer[0]}:{peer[1]}"
    relayed_ip, _, relayed_port = tcp["relayed"].rpartition(":")
    assert relayed_ip == "127.0.0.1"
    assert server.min_port <= int(relayed_port) <= server.max_port
    # The row's relay candidate is the TCP allocation's relayed address.
    (candidate,) = [c for c in check["candidates"] if c["type"] == "relay"]
    assert (candidate["protocol"], candidate["relay_protocol"]) == ("tcp", transport)
    assert f"{candidate['address']}:{candidate['port']}" == tcp["relayed"]
    # The echo server's one connection came from coturn's relay, and carried every byte.
    assert len(log.sources) == 1
    assert server.min_port <= log.sources[0][1] <= server.max_port
    assert log.echoed == 5 * 200
    assert check["details"]["note"].endswith(f"TCP relay to {peer[0]}:{peer[1]}: data both ways")
    assert_all_deleted(server)


def test_tcp_relay_row_fits_80_columns(cli, server: Coturn) -> None:
    with tcp_echo_peer() as (peer, _):
        result = cli(
            "probe",
            f"turn:127.0.0.1:{server.port}?transport=tcp",
            *CREDS,
            "--tcp-relay",
            "--peer",
            f"{peer[0]}:{peer[1]}",
            "--count",
            "4",
            env={"COLUMNS": "80"},
        )
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert all(len(line) <= 80 for line in lines), result.out
    # The TCP echo, named TCP: both ways, and its RTT; the browser's UDP relay beside it.
    (row,) = [line for line in lines if line.lstrip().startswith("tcp+ Allocate TCP")]
    assert re.search(r"\bok\s+127\.0\.0\.1:\d+\s.*\b4/4 \d+\.\dms$", row), row
    (own,) = [line for line in lines if line.lstrip().startswith("tcp Allocate")]
    assert re.search(r"\bok\s+127\.0\.0\.1:\d+\s.*\b4/4 \d+\.\dms$", own), own
    assert_all_deleted(server)


@pytest.mark.parametrize("table", [False, True])
def test_no_tcp_relay_server_answers_442_and_browsers_still_get_their_relay(
    cli, coturn_factory, table: bool
) -> None:
    server = coturn_factory(hosts=("127.0.0.1",), tls=False, extra=["no-tcp-relay"])
    with tcp_echo_peer() as (peer, log):
        result = cli(
            "probe",
            f"turn:127.0.0.1:{server.port}?transport=tcp",
            *CREDS,
            "--tcp-relay",
            "--peer",
            f"{peer[0]}:{peer[1]}",
            "--count",
            "5",
            *(() if table else ("--json",)),
            env={"COLUMNS": "80"},
        )
    assert result.code == 1, result.out  # the user asked for a TCP relay
    assert log.sources == []  # nothing reached the peer
    assert_all_deleted(server)  # the browser's allocations; the TCP one was never made
    if table:
        lines = result.out.splitlines()
        assert all(len(line) <= 80 for line in lines), result.out
        (row,) = [line for line in lines if line.lstrip().startswith("tcp+ Allocate TCP")]
        assert re.search(r"tcp\+ Allocate TCP\s+FAIL 1$", row), row
        (own,) = [line for line in lines if line.lstrip().startswith("tcp Allocate")]
        assert re.search(r"\bok\s+127\.0\.0\.1:\d+\s.*\b5/5 \d+\.\dms$", own), own
        assert result.out.split("\n1  ", 1)[1].startswith("tcp+ Allocate TCP of turn:127.0.0.1:")
        assert "Chromium:" not in result.out  # no browser makes it: no icecandidateerror
        assert "verdict: the TCP relay failed over TCP" in result.out
        return
    doc = result.json()
    own, check = split(doc)
    assert_the_browsers_own(own)  # the browser's Allocate and its UDP relaying work
    tcp = check["details"]["tcp_relay"]
    assert tcp["relayed"] is None and tcp["both_ways"] is False
    assert tcp["refused"]["code"] == 442
    error = check["error"]
    assert error == tcp["error"]
    assert error["code"] == 442
    assert "does not offer TCP relays" in error["reason"]
    assert "no-tcp-relay" in error["hint"]
    assert check["candidates"] == [] and check["relay_test"] is None
    for engine in ("chromium", "firefox"):
        view = doc["browsers"][engine]
        assert view["ok"] is True and view["relay"] == ["tcp"], view
        assert view["relays_media"] is True and view["errors"] == [], view
    verdict = doc["verdict"]
    assert verdict.startswith(
        "the TCP relay failed over TCP (browsers relay UDP only): the server does not offer "
        "TCP relays (RFC 6062): 442 "
    ), verdict
    assert "; calls connect: a browser with this configuration gets relay candidates over TCP;" in (
        verdict
    )


def test_a_bare_urls_tcp_relay_is_shown_but_does_not_gate(cli, coturn_factory) -> None:
    """turn:host is UDP in browsers: its TCP row is turncheck's extra, and so is the TCP relay
    beside it (docs/probe.md): named, not failing the run by itself."""
    server = coturn_factory(hosts=("127.0.0.1",), tls=False, extra=["no-tcp-relay"])
    with tcp_echo_peer() as (peer, _):
        result = cli(
            "probe",
            f"turn:127.0.0.1:{server.port}",
            *CREDS,
            "--tcp-relay",
            "--peer",
            f"{peer[0]}:{peer[1]}",
            "--count",
            "3",
            "--json",
        )
    assert result.code == 0, result.out
    doc = result.json()
    (asked,) = [c for c in turn_checks(doc) if "tcp_relay" in c["details"]]
    assert asked["extra"] is True and asked["ok"] is False and asked["error"]["code"] == 442
    assert "TCP relay failed over tcp: the server does not offer TCP relays" in doc["verdict"]
    assert_all_deleted(server)


def test_udp_rows_keep_their_udp_relay_and_never_send_to_the_tcp_peer(cli, server: Coturn) -> None:
    with tcp_echo_peer() as (peer, log):
        result = cli(
            "probe",
            f"turn:127.0.0.1:{server.port}",
            *CREDS,
            "--tcp-relay",
            "--peer",
            f"{peer[0]}:{peer[1]}",
            "--count",
            "3",
            "--json",
        )
    assert result.code == 0, result.out + result.err
    turn = turn_checks(result.json())
    assert [(c["transport"], "tcp_relay" in c["details"]) for c in turn] == [
        ("udp", False),
        ("tcp", False),
        ("tcp", True),  # beside the tcp+ Allocate it belongs to
    ]
    for own in turn[:2]:
        assert own["relay_test"]["peer"].startswith("the second allocation")
        assert "tcp" not in own["relay_test"]["paths"]
    assert turn[2]["relay_test"]["path"] == "tcp"
    assert len(log.sources) == 1  # the tcp row's TCP relay only
    assert_all_deleted(server)


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--tcp-relay"], "--tcp-relay needs --peer IP:PORT"),
        (["--tcp-relay", "--peer", "127.0.0.1:7", "--no-relay"], "--tcp-relay needs the relay"),
        (["--relay-family", "ipv6", "--no-relay"], "--relay-family needs the relay check"),
        (["--relay-family", "ipv5"], "--relay-family ipv5: choose ipv4, ipv6 or dual"),
        (["--relay-family", "dual", "--peer", "127.0.0.1:7"], "--relay-family dual"),
        (["--relay-family", "ipv6", "--peer", "127.0.0.1:7"], "is an IPv4 address, but"),
        (["--relay-family", "ipv4", "--peer", "[::1]:7"], "is an IPv6 address, but"),
    ],
)
def test_bad_relay_combinations_exit_2_naming_the_culprit(cli, args, culprit) -> None:
    result = cli("probe", "turn:127.0.0.1:3478?transport=tcp", *CREDS, *args, "--dry-run")
    assert result.code == 2, result.out + result.err
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert culprit in lines[0]


@pytest.mark.parametrize(
    ("url", "culprit"),
    [
        ("turn:127.0.0.1:3478?transport=udp", "--tcp-relay needs a TURN URL over TCP or TLS"),
        ("stun:127.0.0.1:3478", "--tcp-relay needs a turn: or turns: URL"),
    ],
)
def test_tcp_relay_needs_a_turn_url_over_a_stream(cli, url: str, culprit: str) -> None:
    result = cli("probe", url, *CREDS, "--tcp-relay", "--peer", "127.0.0.1:7", "--dry-run")
    assert result.code == 2
    assert culprit in result.err.strip()


def test_connection_bind_turns_the_data_connection_raw(server: Coturn) -> None:
    """The wire: Allocate TCP, Connect → CONNECTION-ID, ConnectionBind on a second
    connection, then raw bytes (no STUN framing, no padding) both ways."""

    async def run(peer: tuple[str, int]) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        address = ("127.0.0.1", server.port)
        control = await StreamChannel.open(address, deadline=deadline)
        async with control:
            a = Allocation(
                control, address, stun.Credentials("alice", "s3cret"), policy=RetryPolicy()
            )
            async with a:
                await a.allocate(deadline, {"REQUESTED-TRANSPORT": stun.REQUESTED_TRANSPORT_TCP})
                await a.create_permission(peer[0], deadline)
                connection_id = await a.connect(peer, deadline)
                data = await StreamChannel.open(address, deadline=deadline)
                async with data:
                    await a.connection_bind(data, connection_id, deadline)
                    assert data.raw
                    got = bytearray()
                    done = asyncio.Event()

                    def received(chunk: bytes) -> None:
                        got.extend(chunk)
                        if len(got) >= 7:
                            done.set()

                    data.stream_to(received)
                    data.send_stream(b"raw\x00one")  # 7 bytes: no padding to 8
                    async with asyncio.timeout(5):
                        await done.wait()
                    return bytes(got)
            raise AssertionError("unreachable")

    with tcp_echo_peer() as (peer, log):
        echoed = asyncio.run(run(peer))
    assert echoed == b"raw\x00one"
    assert log.echoed == 7
    assert_all_deleted(server)
