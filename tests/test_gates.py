"""CI gates and monitoring: requirements, --repeat statistics, -v trace, -q, --output, --version."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from turncheck.monitor import percentile

CREDS = ("-u", "alice", "-p", "s3cret")


def reqs(result) -> dict[str, dict]:
    return {r["name"]: r for r in result.json()["requirements"]}


def test_requirements_met_gate_the_exit_code_despite_other_failures(cli, coturn: Coturn) -> None:
    from tests.servers.ports import free_port_block

    closed = free_port_block(1)
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        f"stun:127.0.0.1:{closed}",
        *CREDS,
        "--timeout",
        "1",
        "--require",
        "relay",
        "--require",
        "srflx,udp",
        "--max-rtt",
        "1000",
        "--max-loss",
        "0",
        "--json",
    )
    doc = result.json()
    assert any(not c["ok"] for c in doc["checks"])  # the closed port failed...
    assert result.code == 0  # ...but every requirement holds
    r = reqs(result)
    assert set(r) == {"relay", "srflx", "udp", "max-rtt 1000 ms", "max-loss 0 %"}
    assert all(x["ok"] for x in r.values())
    assert r["relay"]["detail"].startswith("media relayed by turn:127.0.0.1:")


def test_require_tls_against_a_server_without_tls(cli, coturn_factory) -> None:
    server = coturn_factory(tls=False)
    result = cli(
        "probe",
        f"turn:127.0.0.1:{server.port}",
        *CREDS,
        "--transport",
        "udp,tcp,tls",
        "--timeout",
        "1",
        "--require",
        "tls",
        "--json",
    )
    assert result.code == 1
    tls = reqs(result)["tls"]
    assert tls["ok"] is False
    assert tls["detail"] == "all 2 TLS checks failed: the TLS handshake did not finish in time"


def test_max_rtt_tiny_bound_fails_with_the_worst_figure(cli, coturn: Coturn) -> None:
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        *CREDS,
        "--max-rtt",
        "0.001",
        "--json",
    )
    assert result.code == 1
    rtt = reqs(result)["max-rtt 0.001 ms"]
    assert rtt["ok"] is False
    assert "exceeds 0.001 ms" in rtt["detail"]
    table = cli(
        "probe", f"turn:127.0.0.1:{coturn.port}?transport=udp", *CREDS, "--max-rtt", "0.001"
    )
    assert "requirement max-rtt 0.001 ms: NOT MET" in table.out


def test_require_relay_without_turn_and_bad_requirement(cli, coturn: Coturn) -> None:
    result = cli("probe", f"stun:127.0.0.1:{coturn.port}", "--require", "relay", "--json")
    assert result.code == 1
    assert reqs(result)["relay"]["detail"] == "no TURN URL was probed"
    bad = cli("probe", f"stun:127.0.0.1:{coturn.port}", "--require", "quic")
    assert bad.code == 2 and "--require quic" in bad.err


def test_repeat_statistics_are_consistent_with_the_rounds(cli, coturn: Coturn) -> None:
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        *CREDS,
        "--repeat",
        "3",
        "--interval",
        "0",
        "--packet-interval",
        "1",
        "--json",
    )
    assert result.code == 0, result.out
    doc = result.json()
    assert [r["round"] for r in doc["rounds"]] == [1, 2, 3]
    assert doc["summary"]["rounds"] == 3 and doc["summary"]["passed"] == 3
    for stats in doc["summary"]["checks"]:
        samples = [
            c["rtt_ms"]
            for r in doc["rounds"]
            for c in r["checks"]
            if (c["url"], c["transport"], c["kind"])
            == (stats["url"], stats["transport"], stats["kind"])
        ]
        assert stats["rounds"] == 3 and stats["success_rate"] == 1.0
        assert stats["rtt_ms"]["min"] == pytest.approx(min(samples), abs=1e-3)
        assert stats["rtt_ms"]["max"] == pytest.approx(max(samples), abs=1e-3)
        assert stats["rtt_ms"]["avg"] == pytest.approx(sum(samples) / 3, abs=1e-3)
        assert stats["rtt_ms"]["p95"] == pytest.approx(max(samples), abs=1e-3)
        if stats["kind"] == "turn":
            assert stats["relay_loss_pct"] == 0.0


def test_repeat_table_prints_a_row_per_round_then_statistics(cli, coturn: Coturn) -> None:
    result = cli(
        "probe",
        f"stun:127.0.0.1:{coturn.port}",
        "--transport",
        "udp",
        "--repeat",
        "2",
        "--interval",
        "0",
    )
    assert result.code == 0
    assert "round 1/2" in result.out and "round 2/2" in result.out
    assert "2/2 (100 %)" in result.out
    assert "verdict: 2 of 2 rounds passed" in result.out


def test_percentile_is_nearest_rank() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0
    assert percentile([5.0], 50) == 5.0


def test_verbose_trace_shows_the_exchange_and_never_the_credential(cli, coturn: Coturn) -> None:
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        "-v",
        "--count",
        "2",
        "--json",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    )
    assert result.code == 0
    json.loads(result.out)  # stdout stays one JSON document
    trace = result.err
    for expected in (
        "Binding request",
        "Binding response",
        "Allocate request",
        "Allocate error",
        "ERROR-CODE=401",
        "Allocate response",
        "CreatePermission request",
        "ChannelBind request",
        "Send indication",
        "Data indication",
        "Refresh request",
        "LIFETIME=0",
        "USERNAME=alice",
        "MESSAGE-INTEGRITY=(hidden)",
        "XOR-RELAYED-ADDRESS=127.0.0.1:",
    ):
        assert expected in trace, expected
    assert "s3cret" not in trace + result.out
    first = trace.splitlines()[0]
    assert first.lstrip().startswith("+") and " ms :" in first


def test_quiet_prints_only_the_verdict(cli, coturn: Coturn) -> None:
    result = cli("probe", f"stun:127.0.0.1:{coturn.port}", "-q")
    assert result.code == 0
    (line,) = result.out.strip().splitlines()
    assert line.startswith("verdict: a browser with this configuration gets no srflx candidate")
    assert line.endswith("; all 2 checks passed")


def shape(text: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", re.sub(r"\d+(\.\d+)?", "N", line)).strip() for line in text.splitlines()
    ]


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_output_file_equals_stdout(cli, coturn: Coturn, tmp_path: Path, fmt: str) -> None:
    args = ("probe", f"stun:127.0.0.1:{coturn.port}", "--transport", "udp", "--format", fmt)
    target = tmp_path / f"out.{fmt}"
    to_file = cli(*args, "--output", str(target))
    to_stdout = cli(*args)
    assert to_file.out == "" and to_file.code == to_stdout.code == 0
    # Two runs differ only in measured numbers (ports, RTTs): compare everything else.
    assert shape(target.read_text()) == shape(to_stdout.out)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_format_clashes_and_bad_output_path(cli, coturn: Coturn) -> None:
    assert cli("probe", "stun:127.0.0.1:1", "--json", "--format", "junit").code == 2
    assert "--format xml" in cli("probe", "stun:127.0.0.1:1", "--format", "xml").err
    bad = cli(
        "probe", f"stun:127.0.0.1:{coturn.port}", "--json", "--output", "/nonexistent/dir/x.json"
    )
    assert bad.code == 2 and "--output /nonexistent/dir/x.json" in bad.err
    assert cli("probe", "stun:127.0.0.1:1", "--repeat", "2", "--format", "junit").code == 2


def test_version_and_completion() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "turncheck", "--version"], capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0 and version.stdout.startswith("turncheck 0.")
    completion = subprocess.run(
        [sys.executable, "-m", "turncheck", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
        },
    )
    assert completion.returncode == 0, completion.stderr
    assert "complete" in completion.stdout and "turncheck" in completion.stdout.lower()


def test_verdict_speaks_of_requirements(cli, coturn: Coturn) -> None:
    met = cli("probe", f"stun:127.0.0.1:{coturn.port}", "--require", "udp", "--json")
    assert met.json()["verdict"].startswith("all 1 requirements met (udp); ")
    unmet = cli("probe", f"stun:127.0.0.1:{coturn.port}", "--require", "relay", "--json")
    assert unmet.json()["verdict"] == "requirement relay not met: no TURN URL was probed"


def test_ctrl_c_in_repeat_mode_prints_the_summary_and_leaves_no_allocation(coturn_factory) -> None:
    import os
    import signal
    import time

    server = coturn_factory(tls=False)
    env = {**os.environ, "TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}
    url = f"turn:127.0.0.1:{server.port}?transport=udp"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turncheck",
            "probe",
            url,
            "--repeat",
            "100",
            "--interval",
            "0.4",
            "--packet-interval",
            "50",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(1.6)  # rounds of about 0.6 s start every 0.4 s: one is in flight
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    rounds = doc["summary"]["rounds"]
    assert 1 <= rounds < 100
    assert doc["verdict"].endswith(f"(interrupted after {rounds} of 100)")
    # coturn's log: every allocation made (the interrupted round's included) got Refresh(0).
    made, deleted = server.allocation_sessions()
    assert len(made) >= 2 * rounds
    assert made <= deleted, made - deleted
