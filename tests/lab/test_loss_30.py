"""30 % UDP loss on the path: STUN/TURN succeed by retransmission, and the loss is reported."""

from __future__ import annotations

import re


def test_thirty_percent_udp_loss(turn_lab) -> None:
    t = turn_lab("none")
    # 30 % of UDP from the client side dropped in the router. Requests are retransmitted
    # on the RFC 8489 schedule (0, 0.5, 1.5, 3.5, 7.5 s ...), so a transaction fails only
    # when every send is lost: 0.3**6 within --timeout 16.
    t.lab.iptables(
        t.lab.nat_ns,
        "-A",
        "FORWARD",
        "-i",
        t.lab.nat_inside_if,
        "-p",
        "udp",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.3",
        "-j",
        "DROP",
    )
    run = t.turncheck(
        "probe",
        f"turn:{t.primary}?transport=udp",
        f"stun:{t.secondary}",
        "--transport",
        "udp",
        "-v",
        "-u",
        "alice",
        "-p",
        "s3cret",
        "--count",
        "60",
        "--packet-interval",
        "5",
        "--timeout",
        "16",
        "--json",
        timeout=120,
    )
    doc = run.json()
    assert all(c["ok"] for c in doc["checks"]), [c["error"] for c in doc["checks"]]
    by = {c["kind"]: c for c in doc["checks"] if c["url"].startswith("turn:")}
    assert by["stun"]["ok"], by["stun"]["error"]
    assert by["turn"]["ok"], by["turn"]["error"]
    relay = by["turn"]["relay_test"]
    # A relayed echo crosses the lossy direction twice (A→server, B→server): ~51 % lost.
    assert 25 <= relay["loss_pct"] <= 80, relay
    assert any(n.startswith(f"relay loss {relay['loss_pct']:.0f} %") for n in doc["notes"])
    # Retransmission did the work: some transaction ID went out more than once. (About 20
    # transactions each lose their first send with p = 0.3: all first sends arrive with
    # p = 0.7**20 < 0.1 %.)
    sent = re.findall(r"→ \S+\s+\S+ (?:request|indication)\s+tid=(\w+)", run.err)
    assert len(sent) > len(set(sent)), "no retransmission seen in the trace"
