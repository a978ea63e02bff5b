"""Relay loss measured on a lossy path: iptables statistic drops in the lab's router."""

from __future__ import annotations


def test_relay_loss_is_reported_within_a_band(turn_lab) -> None:
    t = turn_lab("none")
    # Every relayed round trip crosses the router four times (A→server, server→B, B→server,
    # server→A): with 10 % drops per crossing, about 1 - 0.9**4 = 34 % of echoes are lost.
    t.lab.add_loss(0.10)
    run = t.turncheck(
        "probe",
        f"turn:{t.primary}?transport=udp",
        "-u",
        "alice",
        "-p",
        "s3cret",
        "--count",
        "60",
        "--interval",
        "5",
        "--timeout",
        "5",
        "--json",
    )
    doc = run.json()
    (turn,) = [c for c in doc["checks"] if c["kind"] == "turn"]
    relay = turn["relay_test"]
    assert turn["ok"], turn["error"]  # STUN/TURN transactions survive by retransmission
    assert relay["sent"] == 60
    assert 8 <= relay["loss_pct"] <= 65, relay
    assert relay["received"] == round(60 * (1 - relay["loss_pct"] / 100))
    assert any(n.startswith(f"relay loss {relay['loss_pct']:.0f} %") for n in doc["notes"])
