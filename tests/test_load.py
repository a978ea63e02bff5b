"""turncheck load against a real coturn: figures, quota failures, Ctrl-C, limits, bad input."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from tests.servers.coturn import Coturn

ENV = {**os.environ, "TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}


@pytest.fixture
def big(coturn_factory) -> Coturn:
    return coturn_factory(tls=False, relay_range=120)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_small_run_figures_are_consistent(cli, big: Coturn, loop: str) -> None:
    result = cli(
        "load",
        f"turn:127.0.0.1:{big.port}?transport=udp",
        "--clients",
        "5",
        "--duration",
        "2",
        "--loop",
        loop,
        "--json",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    )
    assert result.code == 0, result.out + result.err
    doc = result.json()
    assert doc["event_loop"] == loop
    alloc, relay = doc["allocations"], doc["relay"]
    assert alloc["pairs_attempted"] == alloc["pairs_succeeded"] == 5
    assert alloc["pairs_failed"] == 0 and alloc["failures"] == {}
    assert alloc["deleted"] == 10 and alloc["delete_failed"] == 0
    assert relay["received"] <= relay["sent"]
    assert relay["sent"] == 5 * 50 * 2  # clients × rate × duration
    assert relay["loss_pct"] == pytest.approx(
        100 * (relay["sent"] - relay["received"]) / relay["sent"], abs=1e-3
    )
    lat = alloc["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    # Set-up by phase: the Allocate's and each ChannelBind's (UDP: no connect, no TLS).
    setup = alloc["setup_ms"]
    assert setup["allocate"] == lat and setup["connect"] is None and setup["tls_handshake"] is None
    bind = setup["channel_bind"]
    assert 0 < bind["p50"] <= bind["p95"] <= bind["p99"] <= bind["max"]
    # Every packet decided: echoed or lost, exactly.
    assert relay["sent"] == relay["received"] + relay["lost"] and relay["late"] == 0
    rtt = relay["rtt_ms"]
    assert 0 < rtt["p50"] <= rtt["p95"] <= rtt["p99"] <= rtt["max"]
    assert relay["pps_requested"] == 250.0
    assert relay["pps_achieved"] == pytest.approx(
        relay["received"] / doc["sending_time_s"], rel=0.01
    )
    assert relay["bps_requested"] == 250.0 * 160 * 8
    made, deleted = big.allocation_sessions()
    assert len(made) == 10 and made <= deleted


def test_user_quota_failures_are_counted_and_explained(cli, coturn_factory) -> None:
    server = coturn_factory(tls=False, extra=["user-quota=4"], relay_range=60)
    result = cli(
        "load",
        f"turn:127.0.0.1:{server.port}",
        "--clients",
        "5",
        "--duration",
        "1",
        "--concurrency",
        "1",
        "--json",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    )
    assert result.code == 1
    doc = result.json()
    alloc = doc["allocations"]
    assert alloc["pairs_succeeded"] == 2
    # probe's words for the same answer (one engine: checks.failed / explain), with its hint
    reason = "Allocate: this user has too many allocations (486 Allocation Quota Reached)"
    assert alloc["failures"] == {reason: 3}
    assert "user-quota" in alloc["hints"][reason]  # coturn's own option: its SOFTWARE says so
    assert doc["verdict"].startswith(f"3 of 5 pairs failed to set up (most: 3× {reason}")
    table = cli(
        "load",
        f"turn:127.0.0.1:{server.port}",
        "--clients",
        "1",
        "--duration",
        "0.2",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    )
    assert "verdict:" in table.out


def test_tcp_control_transport_and_periodic_plain_lines(big: Coturn) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "turncheck",
            "load",
            f"turn:127.0.0.1:{big.port}",
            "--transport",
            "tcp",
            "--clients",
            "4",
            "--duration",
            "5.2",
            "--rate",
            "20",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["relay"]["sent"] == 4 * 104  # ceil(20 pps × 5.2 s) per pair
    assert doc["relay"]["received"] == doc["relay"]["sent"]
    setup = doc["allocations"]["setup_ms"]  # over TCP: the connect too, as its own phase
    assert all(setup[k]["p50"] > 0 for k in ("connect", "allocate", "channel_bind"))
    # Not a terminal: progress comes as plain lines on stderr, every 5 s.
    lines = [x for x in done.stderr.splitlines() if x.startswith("turncheck load: pairs up 4/4")]
    assert lines, done.stderr


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_signal_leaves_no_allocation(big: Coturn, sig: int, code: int) -> None:
    """Ctrl-C, SIGTERM (timeout -s TERM, a CI job's end) and SIGHUP: every allocation goes."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turncheck",
            "load",
            f"turn:127.0.0.1:{big.port}",
            "--clients",
            "10",
            "--duration",
            "20",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    time.sleep(1.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    assert doc["allocations"]["deleted"] == 20
    made, deleted = big.allocation_sessions()
    assert len(made) == 20 and made <= deleted


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--clients", "0"], "--clients 0"),
        (["--duration", "0"], "--duration 0"),
        (["--rate", "0"], "--rate 0"),
        (["--size", "8"], "--size 8"),
        (["--ramp", "-1"], "--ramp -1"),
        (["--max-loss", "101"], "--max-loss 101"),
        (["--loop", "trio"], "--loop trio"),
        (["--transport", "udp,tcp"], "one control transport"),
    ],
)
def test_bad_parameters_exit_2(cli, args: list[str], culprit: str) -> None:
    result = cli(
        "load",
        "turn:127.0.0.1:3478",
        *args,
        env={"TURNCHECK_USERNAME": "a", "TURNCHECK_CREDENTIAL": "b"},
    )
    assert result.code == 2
    assert culprit in result.err and len(result.err.strip().splitlines()) == 1


def test_stun_url_and_missing_credentials_exit_2(cli) -> None:
    assert "needs a turn: or turns: URL" in cli("load", "stun:127.0.0.1:3478").err
    assert "InvalidAccessError" in cli("load", "turn:127.0.0.1:3478").err


def test_more_sockets_than_the_descriptor_limit_is_refused_up_front() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    done = subprocess.run(
        [sys.executable, "-m", "turncheck", "load", "turn:127.0.0.1:3478", "--clients", "200"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=30,
        preexec_fn=low_limit,
    )
    assert done.returncode == 2
    assert "needs 464 file descriptors" in done.stderr and "ulimit -n" in done.stderr


def test_ramp_paces_the_setup(cli, big: Coturn) -> None:
    # --ramp 10: pair i may start at i/10 s, so 4 pairs take at least 0.3 s to set up.
    result = cli(
        "load",
        f"turn:127.0.0.1:{big.port}",
        "--clients",
        "4",
        "--ramp",
        "10",
        "--duration",
        "0.2",
        "--json",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    )
    assert result.code == 0, result.out
    doc = result.json()
    assert doc["requested"]["ramp"] == 10
    assert doc["allocations"]["pairs_succeeded"] == 4
    assert doc["wall_time_s"] - doc["sending_time_s"] >= 0.3
