"""turncheck nat on loopback: RFC 5780 with coturn, the two-servers fallback, ALG detection,
the pystun3 cross-check, bad input and defaults."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block
from turncheck import stun
from turncheck.nat import classic_name
from turncheck.plan import DEFAULT_STUN_SERVERS

EIM, ADM, APDM = "endpoint-independent", "address-dependent", "address-and-port-dependent"


def test_rfc5780_on_loopback_is_open_internet(cli, coturn: Coturn) -> None:
    result = cli("nat", f"stun:127.0.0.1:{coturn.port}", "--json")
    assert result.code == 0, result.out
    doc = result.json()
    assert doc["schema"] == 1
    assert (doc["mapping"], doc["filtering"], doc["classic"]) == (EIM, EIM, "open internet")
    assert doc["method"] == "rfc5780"
    assert doc["public_address"] == doc["local_address"]
    assert doc["alg"] is False
    assert doc["advice"].startswith("no NAT")
    names = [t["name"] for t in doc["tests"]]
    assert names[:2] == ["mapping I", "mapping II"]
    assert "filtering II (change IP and port)" in names


def test_without_rfc5780_two_servers_are_compared(cli, coturn_factory) -> None:
    server = coturn_factory(extra=["no-rfc5780"], tls=False)
    one = cli("nat", f"stun:127.0.0.1:{server.port}", "--json")
    assert one.code == 0
    doc = one.json()
    assert doc["method"] is None
    assert doc["filtering"] is None
    assert "neither OTHER-ADDRESS (RFC 5780) nor CHANGED-ADDRESS" in doc["reasons"]["filtering"]
    two = cli("nat", f"stun:127.0.0.1:{server.port}", f"stun:127.0.0.2:{server.port}", "--json")
    doc = two.json()
    assert doc["method"] == "two-servers"
    assert doc["mapping"] == EIM
    assert doc["filtering"] is None


def test_no_answer_is_exit_1_udp_blocked(cli) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        result = cli(
            "nat", f"stun:127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.6", "--json"
        )
    finally:
        silent.close()
    assert result.code == 1
    doc = result.json()
    assert doc["classic"] == "UDP blocked"
    assert doc["mapping"] is None and doc["public_address"] is None
    assert doc["reasons"]["mapping"] == "no STUN server answered over UDP"


@contextmanager
def alg_server() -> Iterator[int]:
    """A STUN responder whose MAPPED-ADDRESS was "rewritten" as an ALG does (a fake: no real
    server does this on purpose)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        for _ in range(2000):  # bounded
            if stop.is_set():
                return
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:
                continue
            request = stun.decode(data)
            reply = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
            reply.attributes["XOR-MAPPED-ADDRESS"] = addr
            reply.attributes["MAPPED-ADDRESS"] = ("192.0.2.99", 1234)
            sock.sendto(bytes(reply), addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_alg_rewriting_mapped_address_is_flagged(cli) -> None:
    with alg_server() as port:
        result = cli("nat", f"stun:127.0.0.1:{port}", "--json")
        table = cli("nat", f"stun:127.0.0.1:{port}")
    assert result.json()["alg"] is True
    assert "MAPPED-ADDRESS and XOR-MAPPED-ADDRESS disagree" in table.out


def test_classic_cross_check_with_pystun3(cli, coturn: Coturn) -> None:
    result = cli("nat", f"stun:127.0.0.1:{coturn.port}", "--classic", "--json")
    check = result.json()["classic_check"]
    assert check["tool"] == "pystun3"
    assert check["classic"] == "open internet"
    assert check["agrees"] is True


def test_classic_names_from_rfc5780_results() -> None:
    assert classic_name(EIM, EIM, True, True) == "full cone"
    assert classic_name(EIM, ADM, True, True) == "restricted cone"
    assert classic_name(EIM, APDM, True, True) == "port-restricted cone"
    assert classic_name(ADM, APDM, True, True) == "symmetric"
    assert classic_name(APDM, EIM, True, True) == "symmetric"
    assert classic_name(EIM, EIM, False, True) == "open internet"
    assert classic_name(EIM, APDM, False, True) == "symmetric UDP firewall"
    assert classic_name(EIM, None, False, True) == "no NAT"  # filtering untested
    assert classic_name(None, None, None, False) == "UDP blocked"
    assert classic_name(None, APDM, True, True) == "unknown"


def test_nat_defaults_and_bad_input(cli) -> None:
    plan = cli("nat", "--dry-run", "--json")
    assert plan.code == 0
    assert sorted({p["url"] for p in plan.json()["plan"]}) == sorted(DEFAULT_STUN_SERVERS)
    assert {p["transport"] for p in plan.json()["plan"]} == {"udp"}
    bad = cli("nat", "turns:example.com")
    assert bad.code == 2 and "usable over UDP" in bad.err
    bad = cli("nat", "stun:example.com", "--filter-timeout", "0")
    assert bad.code == 2 and "--filter-timeout" in bad.err


def test_closed_port_nat_exit_1(cli) -> None:
    port = free_port_block(1)
    result = cli("nat", f"stun:127.0.0.1:{port}", "--timeout", "1", "--json")
    assert result.code == 1
    doc = result.json()
    # ICMP port unreachable came back: the network carries UDP, the server is not there.
    assert doc["classic"] == "unknown"
    assert "the server did not answer (connection refused" in doc["reasons"]["mapping"]
    assert "UDP blocked" not in result.out


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("raise", "pystun3 could not read the server's answer"),
        ("none", "pystun3 gave no verdict"),
    ],
)
def test_classic_check_speaks_in_words(monkeypatch, coturn, behaviour: str, expected: str) -> None:
    """pystun3's exceptions and None never reach the user as Python values."""
    import asyncio

    import stun as pystun3

    from turncheck.nat import classic_check

    def fake(*args: object, **kwargs: object) -> tuple[object, object]:
        if behaviour == "raise":
            raise ValueError("invalid literal for int() with base 16: ''")
        return None, None

    monkeypatch.setattr(pystun3, "get_nat_type", fake)
    check = asyncio.run(classic_check(("127.0.0.1", coturn.port), "open internet"))
    assert check["classic"] is None and check["note"].startswith(expected)
    assert "invalid literal" not in check["note"] and "None" not in check["note"]
    assert check["nat_type"] is None


def _binding(server: str, mapped: str, other: dict | None = None) -> object:
    from turncheck.results import Candidate, CheckResult

    ip, port = mapped.rsplit(":", 1)
    details: dict = {"local_ip": "192.0.2.2"}
    if other:
        details["other_mapped"] = other
    return CheckResult(
        "stun:x",
        "udp",
        "stun",
        server,
        3478,
        True,
        candidates=(Candidate("srflx", ip, int(port), "udp"),),
        details=details,
        local="0.0.0.0:40000",
    )


def test_probe_nat_line_by_the_same_methods_as_nat() -> None:
    from turncheck.nat import symmetric_from_bindings

    alone = symmetric_from_bindings([_binding("203.0.113.2:3478", "203.0.113.1:5000")])
    assert alone.symmetric is None and "RFC 3489 CHANGED-ADDRESS" in alone.basis
    changed = symmetric_from_bindings(
        [
            _binding(
                "203.0.113.2:3478",
                "203.0.113.1:5000",
                {"server": "203.0.113.3:3478", "mapped": "203.0.113.1:5001", "method": "rfc3489"},
            )
        ]
    )
    assert changed.symmetric is True and "RFC 3489 alternate address" in changed.basis
    own = symmetric_from_bindings([_binding("203.0.113.2:3478", "192.0.2.2:40000")])
    assert own.symmetric is False and own.basis.startswith("no NAT")
