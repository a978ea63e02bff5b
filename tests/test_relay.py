"""The relay check: packets really cross the TURN relay, against a real coturn."""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block

CREDS = ("-u", "alice", "-p", "s3cret")


def turn_checks(doc: dict) -> list[dict]:
    return [c for c in doc["checks"] if c["kind"] == "turn"]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_relay_echo_over_each_control_transport(
    cli, coturn: Coturn, ca_file: Path, transport: str
) -> None:
    url = (
        f"turns:localhost:{coturn.tls_port}?transport=tcp"
        if transport == "tls"
        else f"turn:127.0.0.1:{coturn.port}?transport={transport}"
    )
    result = cli("probe", url, *CREDS, "--ca-file", str(ca_file), "--count", "20", "--json")
    assert result.code == 0, result.out
    (check,) = turn_checks(result.json())
    relay = check["relay_test"]
    assert relay["path"] == "channel"
    assert relay["sent"] == relay["received"] == 20
    assert relay["loss_pct"] == 0
    assert 0 < relay["rtt_ms"]["min"] <= relay["rtt_ms"]["avg"] <= relay["rtt_ms"]["max"]
    assert relay["jitter_ms"] >= 0
    assert relay["duplicates"] == 0
    assert relay["paths"]["indication"] == {"ok": True, "sent": 3, "received": 3}
    assert relay["paths"]["channel"] == {"ok": True, "sent": 20, "received": 20}
    assert relay["error"] is None
    assert relay["peer"].startswith("the second allocation 127.0.0.1:")


def test_relay_columns_in_the_table(cli, coturn: Coturn) -> None:
    result = cli("probe", f"turn:127.0.0.1:{coturn.port}?transport=udp", *CREDS)
    assert result.code == 0
    row = next(line for line in result.out.splitlines() if "udp Allocate" in line)
    assert re.search(r"  10/10 \d+\.\dms\b", row), row  # echoed packets and their average RTT


def test_denied_peer_ip_gives_403_explained(cli, coturn_factory) -> None:
    server = coturn_factory(extra=["denied-peer-ip=127.0.0.1"], tls=False)
    result = cli("probe", f"turn:127.0.0.1:{server.port}?transport=udp", *CREDS, "--json")
    assert result.code == 1
    (check,) = turn_checks(result.json())
    assert check["ok"] is False
    assert check["candidates"][1]["type"] == "relay"  # the allocation itself worked
    error = check["relay_test"]["error"]
    assert error["code"] == 403
    assert "refuses to relay to that peer address" in error["reason"]
    assert "denied-peer-ip" in error["hint"]
    assert check["error"] == error


@contextmanager
def udp_echo_peer() -> Iterator[tuple[str, int]]:
    """A UDP echo server on loopback, like turnutils_peer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        for _ in range(100_000):  # bounded
            if stop.is_set():
                return
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                data, addr = sock.recvfrom(65535)
                sock.sendto(data, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_peer_option_relays_to_an_outside_echo_peer(cli, coturn: Coturn) -> None:
    with udp_echo_peer() as (host, port):
        result = cli(
            "probe",
            f"turn:127.0.0.1:{coturn.port}?transport=tcp",
            *CREDS,
            "--peer",
            f"{host}:{port}",
            "--count",
            "5",
            "--size",
            "1200",
            "--interval",
            "5",
            "--json",
        )
    assert result.code == 0, result.out
    (check,) = turn_checks(result.json())
    relay = check["relay_test"]
    assert relay["peer"] == f"the peer {host}:{port}"
    assert relay["sent"] == relay["received"] == 5


def test_silent_peer_means_relay_path_broken(cli, coturn: Coturn) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        result = cli(
            "probe",
            f"turn:127.0.0.1:{coturn.port}?transport=udp",
            *CREDS,
            "--peer",
            f"127.0.0.1:{port}",
            "--count",
            "3",
            "--json",
        )
    finally:
        silent.close()
    assert result.code == 1
    (check,) = turn_checks(result.json())
    error = check["relay_test"]["error"]
    assert error["reason"].startswith("relay path broken: permission granted but nothing came back")
    assert "relay-ip / external-ip" in error["hint"]
    assert check["relay_test"]["paths"]["channel"] == {"ok": False, "sent": 3, "received": 0}


def test_relay_only_counts_only_relay_checks(cli, coturn: Coturn, coturn_factory) -> None:
    closed = free_port_block(1)
    ok = cli(
        "probe",
        f"stun:127.0.0.1:{closed}",
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        *CREDS,
        "--relay-only",
        "--json",
    )
    doc = ok.json()
    assert ok.code == 0, ok.out
    assert doc["ok"] is True and doc["relay_only"] is True
    assert any(not c["ok"] for c in doc["checks"])  # the STUN failure is shown, not counted
    assert doc["verdict"].startswith(
        "calls connect: a browser with this configuration (iceTransportPolicy relay) gets relay "
        "candidates over UDP"
    )
    denied = coturn_factory(extra=["denied-peer-ip=127.0.0.1"], tls=False)
    bad = cli(
        "probe", f"turn:127.0.0.1:{denied.port}?transport=udp", *CREDS, "--relay-only", "--json"
    )
    assert bad.code == 1
    assert bad.json()["verdict"].startswith(
        "calls through TURN fail: a browser with this configuration (iceTransportPolicy relay) "
        "gathers relay candidates over UDP, but they carry no data"
    )


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--relay-only", "stun:127.0.0.1:3478"], "--relay-only needs a turn"),
        (["--relay-only", "--no-relay", "turn:127.0.0.1:3478", *CREDS], "--relay-only"),
        (["--count", "0", "turn:127.0.0.1:3478", *CREDS], "--count 0"),
        (["--size", "8", "turn:127.0.0.1:3478", *CREDS], "--size 8"),
        (["--size", "9000", "turn:127.0.0.1:3478", *CREDS], "--size 9000"),
        (["--packet-interval", "-1", "turn:127.0.0.1:3478", *CREDS], "--packet-interval -1"),
        (["--peer", "127.0.0.1", "turn:127.0.0.1:3478", *CREDS], "has no port"),
        (["--peer", "peer.example:7", "turn:127.0.0.1:3478", *CREDS], "not an IP address"),
    ],
)
def test_bad_relay_options_exit_2(cli, args: list[str], culprit: str) -> None:
    result = cli("probe", *args)
    assert result.code == 2
    assert culprit in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_no_relay_skips_the_relay_check(cli, coturn: Coturn) -> None:
    result = cli(
        "probe", f"turn:127.0.0.1:{coturn.port}?transport=udp", *CREDS, "--no-relay", "--json"
    )
    assert result.code == 0
    assert turn_checks(result.json())[0]["relay_test"] is None


def test_unsigned_channel_bind_success_is_named_and_bounded(cli, coturn_factory) -> None:
    """A ChannelBind success without MESSAGE-INTEGRITY (one small server sends that) is
    ignored as RFC 8489 §9.2.5 says, named in the table's note, and the relay check keeps to
    --timeout + 2 s (plus the packets' sending time)."""
    from tests.servers.proxy import strip_integrity, udp_delay_proxy

    server = coturn_factory(tls=False)
    with udp_delay_proxy(
        ("127.0.0.1", server.port), delay=0.0, rewrite=strip_integrity(0x0109)
    ) as proxy:
        started = time.monotonic()
        result = cli(
            "probe", f"turn:127.0.0.1:{proxy.port}?transport=udp", *CREDS, "--timeout", "2"
        )
        elapsed = time.monotonic() - started
        as_json = cli(
            "probe",
            f"turn:127.0.0.1:{proxy.port}?transport=udp",
            *CREDS,
            "--timeout",
            "2",
            "--json",
        )
    # The server relays Send indications, but Chromium asks for a ChannelBind with the first
    # real data and drops the connection when it fails (turn_port.cc): calls do not work.
    assert result.code == 1
    assert elapsed < 2 + 2 + 1.0, elapsed
    note = " ".join(result.out.split())
    assert "relaying works over indication but not over channel" in note
    assert "ChannelBind with a success without integrity" in note
    assert "right server and port" not in note
    assert "calls through TURN fail" in note
    assert "Chromium drops a TURN connection whose ChannelBind fails" in note
    doc = as_json.json()
    assert doc["browser"]["relays_media"] is False
    turn = next(c for c in doc["checks"] if c["kind"] == "turn")
    # The figures asked for (--count 10) come from the path that is left.
    assert turn["relay_test"]["path"] == "indication"
    assert turn["relay_test"]["paths"]["indication"] == {"ok": True, "sent": 10, "received": 10}
