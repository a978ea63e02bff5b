"""NAT verdicts proven on real Linux NATs built in network namespaces (PROTOCOL.md recipes)."""

from __future__ import annotations

import re

import pytest

EIM, ADM, APDM = "endpoint-independent", "address-dependent", "address-and-port-dependent"

# mode → (mapping, filtering, classic, probe's symmetric line)
EXPECTED = {
    "none": (EIM, EIM, "open internet", False),
    "masquerade": (EIM, APDM, "port-restricted cone", False),
    "symmetric": (APDM, APDM, "symmetric", True),
}


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_nat_verdict_five_runs_out_of_five_and_the_probe_line(turn_lab, mode: str) -> None:
    t = turn_lab(mode)
    mapping, filtering, classic, symmetric = EXPECTED[mode]
    for _ in range(5):
        run = t.turncheck("nat", f"stun:{t.primary}", "--json")
        assert run.code == 0, run.out + run.err
        doc = run.json()
        assert (doc["mapping"], doc["filtering"], doc["classic"]) == (mapping, filtering, classic)
        assert doc["method"] == "rfc5780"
        assert doc["symmetric"] is symmetric
        assert doc["alg"] is False
        public_ip = doc["public_address"].split(":")[0]
        assert public_ip == (t.lab.client_ip if mode == "none" else t.lab.nat_outside_ip)
    probe = t.turncheck(
        "probe", f"stun:{t.primary}", f"stun:{t.secondary}", "--transport", "udp", "--json"
    )
    assert probe.code == 0
    assert probe.json()["nat"]["symmetric"] is symmetric
    # One URL is enough: the probe also asks the server's RFC 5780 other address.
    single = t.turncheck("probe", f"stun:{t.primary}", "--transport", "udp", "--json")
    assert single.json()["nat"]["symmetric"] is symmetric
    basis = single.json()["nat"]["basis"]
    assert basis.startswith("no NAT") if mode == "none" else "RFC 5780" in basis, basis


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_turnutils_natdiscovery_agrees_on_mapping(turn_lab, mode: str) -> None:
    t = turn_lab(mode)
    ours = t.turncheck("nat", f"stun:{t.primary}", "--json").json()["mapping"]
    host, port = t.primary.split(":")
    theirs = t.client(["turnutils_natdiscovery", "-m", "-p", port, host], timeout=20)
    found = re.search(r"NAT with (.+) Mapping!", theirs.out)
    assert found, theirs.out
    assert found.group(1).lower().replace(" ", "-") == ours


def test_udp_blocked_nat_verdict_and_probe_shows_tcp_tls_turn_working(turn_lab) -> None:
    t = turn_lab("block-udp")
    for _ in range(5):
        run = t.turncheck("nat", f"stun:{t.primary}", "--timeout", "1", "--json")
        assert run.code == 1  # no server answered
        doc = run.json()
        assert doc["classic"] == "UDP blocked"
        assert doc["mapping"] is None and doc["filtering"] is None
        assert doc["advice"].startswith("UDP is blocked: only TURN over TCP/TLS")
    host = t.lab.server_ips[0]
    turns = f"turns:{host}:{t.coturn.tls_port}?transport=tcp"
    options = ("-u", "alice", "-p", "s3cret", "--ca-file", str(t.ca_file))
    options += ("--timeout", "1.5", "--json")
    probe = t.turncheck(
        "probe", f"turn:{host}:{t.coturn.port}", turns, *options, "--browser", "chromium"
    )
    assert probe.code == 0  # Chromium gets a TLS relay from the turns: URL: calls connect
    doc = probe.json()
    assert doc["browser"]["relay"] == ["tls"]
    by = {(c["transport"], c["kind"]): c for c in doc["checks"]}
    assert not by[("udp", "stun")]["ok"] and not by[("udp", "turn")]["ok"]
    assert "UDP may be blocked" in by[("udp", "stun")]["error"]["hint"]
    for transport in ("tcp", "tls"):
        turn = by[(transport, "turn")]
        assert turn["ok"], turn["error"]
        assert turn["relay_test"]["received"] == turn["relay_test"]["sent"]
    assert doc["verdict"].startswith(
        "calls connect: Chromium with this configuration gets relay candidates over TLS; "
        "UDP looks blocked on this network (or at the server); TURN over TCP on "
    )
    assert "TLS on" in doc["verdict"]
    assert doc["nat"]["symmetric"] is None
    assert list(doc["browsers"]) == ["chromium"]
    # Both browsers (the default): Firefox drops turns: with an IP address, and says so.
    both = t.turncheck("probe", turns, *options)
    assert both.code == 1
    verdict = both.json()["verdict"]
    assert verdict.startswith(
        "calls work in Chromium, not in Firefox: Chromium with this configuration gets relay "
        "candidates over TLS; Firefox drops turns:"
    ), verdict
    assert "TLS needs a host name, not an IP address" in verdict
    assert both.json()["browsers"]["firefox"]["relay"] == []


def test_nat_table_output_in_the_lab(turn_lab) -> None:
    t = turn_lab("masquerade")
    run = t.turncheck("nat", f"stun:{t.primary}", "--classic")
    assert run.code == 0
    assert "port-restricted cone" in run.out
    assert "verdict: port-restricted cone (mapping endpoint-independent, filtering" in run.out
    assert "direct peer-to-peer works with most peers" in run.out
    assert "classic RFC 3489 test (pystun3): " in run.out


def test_icmp_reject_from_a_firewall_is_not_blamed_on_the_server(turn_lab) -> None:
    t = turn_lab("reject-udp")
    run = t.turncheck("probe", f"stun:{t.primary}", "--transport", "udp", "--json")
    assert run.code == 1
    error = run.json()["checks"][0]["error"]
    assert error["reason"] == (
        f"a firewall rejects this traffic to {t.primary}: ICMP unreachable from "
        f"{t.lab.nat_inside_ip}, a host on the path, not the server"
    )
    assert "TURN over TCP/TLS" in error["hint"]
