"""EchoMeter arithmetic (loss, RTT, RFC 3550 jitter, reordering) and relay notes, without a network."""

from __future__ import annotations

import pytest

from turncheck.explain import relay_notes
from turncheck.relay import EchoMeter
from turncheck.results import CheckResult, Explanation, PathStats, RelayResult


def make_meter(count: int = 4) -> EchoMeter:
    meter = EchoMeter("channel", count, 64)
    for seq in range(count):
        meter.sent(seq, float(seq))
    return meter


def test_loss_rtt_reorder_duplicates_and_foreign_packets() -> None:
    meter = make_meter(4)
    meter.echo(meter.packet(1), 1.010)  # rtt 10 ms
    meter.echo(meter.packet(0), 0.030)  # rtt 30 ms, arrives late: out of order
    meter.echo(meter.packet(0), 0.040)  # duplicate
    meter.echo(EchoMeter("channel", 4, 64).packet(2), 2.0)  # another run's packet: ignored
    meter.echo(b"short", 2.0)  # not ours: ignored
    stats = meter.stats()
    assert (stats.sent, stats.received) == (4, 2)
    assert stats.loss_pct == 50.0
    assert stats.rtt_min == pytest.approx(0.010)
    assert stats.rtt_max == pytest.approx(0.030)
    assert stats.rtt_avg == pytest.approx(0.020)
    assert stats.out_of_order == 1
    assert stats.duplicates == 1
    # RFC 3550: J = J + (|D| - J) / 16 with D = 20 ms → 1.25 ms.
    assert stats.jitter == pytest.approx(0.020 / 16)
    assert not meter.all_back.is_set()


def test_all_back_event_and_json_shape() -> None:
    meter = make_meter(2)
    meter.echo(meter.packet(0), 0.001)
    meter.echo(meter.packet(1), 1.001)
    assert meter.all_back.is_set()
    doc = meter.stats().to_json()
    assert doc == {
        "path": "channel",
        "sent": 2,
        "received": 2,
        "loss_pct": 0.0,
        "rtt_ms": {"min": 1.0, "avg": 1.0, "max": 1.0},
        "jitter_ms": 0.0,
        "out_of_order": 0,
        "duplicates": 0,
    }


def test_notes_name_partial_loss_and_a_missing_path() -> None:
    lossy = PathStats("indication", 10, 7, 0.001, 0.002, 0.003, 0.0001, 0, 0)
    relay = RelayResult(
        "the second allocation 192.0.2.9:50000",
        lossy,
        {"indication": lossy, "channel": Explanation(403, "refused", "check")},
    )
    check = CheckResult(
        url="turn:192.0.2.1",
        transport="udp",
        kind="turn",
        server="192.0.2.1:3478",
        port=3478,
        ok=True,
        relay=relay,
    )
    notes = relay_notes([check])
    assert notes[0].startswith("relay loss 30 % (7 of 10 packets came back)")
    assert "relaying works over indication but not over channel: refused" in notes[1]
    assert relay.to_json()["paths"]["channel"]["error"]["code"] == 403
