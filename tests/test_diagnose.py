"""turncheck diagnose: dumps in both formats, bad input, --json, --probe, memory."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn

DATA = Path(__file__).parent / "data" / "dumps"
OLDER = DATA / "older-format-synthetic.json"


def current_dump(
    turn: str, *, error: tuple[int, str] | None = None, connected: bool = True
) -> dict:
    """A dump in the current format (JSON values), as Chromium 156 writes one."""
    log = [
        {"type": "createOffer", "value": "", "timestamp": 1000.0},
        {"type": "onicegatheringstatechange", "value": '"gathering"', "timestamp": 1001.0},
        {
            "type": "onicecandidate",
            "value": json.dumps(
                {
                    "sdpMid": "0",
                    "sdpMLineIndex": 0,
                    "candidate": "candidate:1 1 udp 2122260223 192.0.2.2 40000 typ host",
                }
            ),
            "timestamp": 1002.0,
        },
        {"type": "oniceconnectionstatechange", "value": '"checking"', "timestamp": 1010.0},
    ]
    if error:
        log.append(
            {
                "type": "icecandidateerror",
                "value": json.dumps(
                    {
                        "url": turn,
                        "address": "192.0.2.x",
                        "port": 40000,
                        "errorCode": error[0],
                        "errorText": error[1],
                    }
                ),
                "timestamp": 1020.0,
            }
        )
    log.append(
        {
            "type": "iceconnectionstatechange",
            "value": "connected" if connected else "failed",
            "timestamp": 1400.0,
        }
    )
    stats = (
        {
            "T01-selectedCandidatePairId": {"statsType": "transport", "values": '["CP1_2"]'},
            "CP1_2-localCandidateId": {"statsType": "candidate-pair", "values": '["I1"]'},
            "CP1_2-remoteCandidateId": {"statsType": "candidate-pair", "values": '["I2"]'},
            "CP1_2-currentRoundTripTime": {"statsType": "candidate-pair", "values": "[0.001]"},
            "I1-candidateType": {"statsType": "local-candidate", "values": '["host"]'},
            "I1-protocol": {"statsType": "local-candidate", "values": '["udp"]'},
            "I2-candidateType": {"statsType": "remote-candidate", "values": '["host"]'},
        }
        if connected
        else {}
    )
    config = {"iceServers": [{"urls": [turn]}], "iceTransportPolicy": "all"}
    return {
        "getUserMedia": [],
        "PeerConnections": {
            "7-1": {
                "url": "https://app.example.org/",
                "rtcConfiguration": json.dumps(config),
                "updateLog": log,
                "stats": stats,
            }
        },
        "UserAgent": "Chrome/156",
    }


def test_older_format_is_read_and_explained(cli) -> None:
    result = cli("diagnose", str(OLDER), "--json")
    assert result.code == 1
    (pc,) = result.json()["peer_connections"]
    assert pc["ice_servers"] == ["stun:stun.example.org:3478", "turn:turn.example.org:3478"]
    assert pc["ice_transport_policy"] == "all"
    assert {c["type"] for c in pc["candidates"]} == {"host", "srflx"}
    (error,) = pc["errors"]
    assert error["code"] == 701 and "UDP is blocked" in error["reason"]
    assert [s["state"] for s in pc["states"] if s["kind"] == "iceconnectionstatechange"] == [
        "checking",
        "failed",
    ]
    assert pc["connected"] is False and pc["selected_pair"] is None
    assert pc["verdict"].startswith("failed: no relay candidate; turn:turn.example.org:3478")


def test_current_format_connected_over_host_says_what_that_means(cli, tmp_path: Path) -> None:
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(current_dump("turn:turn.example.org:3478?transport=udp")))
    result = cli("diagnose", str(dump), "--json")
    assert result.code == 0
    (pc,) = result.json()["peer_connections"]
    assert pc["selected_pair"]["local_type"] == "host" and pc["selected_pair"]["rtt_ms"] == 1.0
    assert pc["verdict"] == (
        "connected over host candidates on the same LAN; the configured TURN server produced "
        "no relay candidate, so calls between different networks will fail"
    )


def test_401_verdict_names_the_credentials(cli, tmp_path: Path) -> None:
    dump = tmp_path / "dump.json"
    url = "turn:turn.example.org:3478?transport=udp"
    dump.write_text(json.dumps(current_dump(url, error=(401, "Unauthorized."), connected=False)))
    result = cli("diagnose", str(dump))
    assert result.code == 1
    text = " ".join(result.out.split())
    assert f"verdict: failed: no relay candidate; {url} answered 401: the app's TURN " in text
    assert "credentials are wrong or expired" in text


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"hello", "invalid JSON at line 1, column 1"),
        (b'{"PeerConnections": {"1-1": {"updateLog": [', "truncated JSON"),
        (gzip.compress(b"{}"), "a gzip file, not a webrtc-internals dump"),
        (b'{"iceServers": []}', 'not a webrtc-internals dump (no "PeerConnections"'),
        (b'{"PeerConnections": {}, "getUserMedia": []}', "with no peer connections"),
        (b"\xff\xfe\x00", "not text"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path: Path, content: bytes, line: str) -> None:
    path = tmp_path / "dump.bin"
    path.write_bytes(content)
    result = cli("diagnose", str(path))
    assert result.code == 2
    (only,) = result.err.strip().splitlines()
    assert only.startswith(f"turncheck: error: {path}: ") and line in only, only


def test_stdin(cli, monkeypatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(OLDER.read_bytes())))
    assert cli("diagnose", "-", "--json").code == 1


def test_probe_rechecks_the_dumps_servers_side_by_side(cli, coturn: Coturn, tmp_path: Path) -> None:
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(current_dump(url, error=(401, "Unauthorized."), connected=False)))
    refused = cli("diagnose", str(dump), "--probe")
    assert refused.code == 2 and "need credentials" in refused.err
    result = cli(
        "diagnose",
        str(dump),
        "--probe",
        "--json",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    )
    doc = result.json()
    assert doc["peer_connections"][0]["verdict"].startswith("failed: no relay candidate")
    assert doc["probe"]["browser"]["relay"] == ["udp"]  # from here, now, it works
    assert "s3cret" not in result.out
    table = cli(
        "diagnose",
        str(dump),
        "--probe",
        env={"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    )
    assert "from this machine now:" in table.out and "calls connect" in " ".join(table.out.split())


def test_a_50_mb_dump_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Figures: the peak RSS of `turncheck diagnose` on a 50 MB dump (stats time series)."""
    base = current_dump("turn:turn.example.org:3478")
    stats = base["PeerConnections"]["7-1"]["stats"]
    series = json.dumps([round(i * 0.37, 2) for i in range(1200)])
    for n in range(int(50e6 / (len(series) + 60))):
        stats[f"RTCInboundRTPAudioStream_{n % 900}-metric{n}"] = {
            "statsType": "inbound-rtp",
            "values": series,
        }
    path = tmp_path / "big.json"
    path.write_text(json.dumps(base))
    size = path.stat().st_size
    assert size > 45e6
    peak_mb = diagnose_peak_mb(path)
    print(f"\n50 MB dump ({size / 1e6:.1f} MB): peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 600, peak_mb


# The dumps recorded from a real headless Chromium 156 in the namespace lab
# (python -m tests.browser.record_dumps tests/data/dumps; re-recorded on every CI run by
# tests/browser/test_record_dumps.py). Two peer connections each: the caller first.
RECORDED = {
    "relay-udp": (
        "connected through TURN (relay over udp via turn:203.0.113.2:3478?transport=udp",
    ),
    "relay-tls": (
        "connected through TURN (relay over tls via turns:203.0.113.2:5349?transport=tcp",
    ),
    "srflx": ("connected directly through the NATs (srflx candidates)",),
    "host": ("connected over host candidates on the same LAN",),
    "turn-401": (
        "failed: no relay candidate (iceTransportPolicy relay); "
        "turn:203.0.113.2:3478?transport=udp answered 401: the app's TURN credentials are "
        "wrong or expired",
    ),
    "turn-unreachable": (
        "failed: no relay candidate (iceTransportPolicy relay); "
        "turn:203.0.113.6:3478?transport=tcp: could not connect to the TURN server over TCP/TLS",
    ),
    "relay-policy-dead-turn": (
        "failed: no relay candidate (iceTransportPolicy relay); ",
        "gave neither a candidate nor an error",
    ),
    "relay-blocked": ("failed: candidates were gathered (relay udp 1), but no pair connected",),
}


@pytest.mark.parametrize("case", list(RECORDED))
def test_recorded_chromium_dumps_get_the_right_verdict(cli, case: str) -> None:
    result = cli("diagnose", str(DATA / f"{case}.json"), "--json")
    caller = result.json()["peer_connections"][0]
    assert caller["format"] == "current"
    for fragment in RECORDED[case]:
        assert fragment in caller["verdict"], (case, caller["verdict"])
    assert result.code == (0 if case in ("relay-udp", "relay-tls", "srflx", "host") else 1)
    states = [s["state"] for s in caller["states"] if s["kind"] == "iceconnectionstatechange"]
    if result.code == 0:
        assert "connected" in states and caller["selected_pair"] is not None
    assert not any("s3cret" in json.dumps(pc) for pc in result.json()["peer_connections"])


@pytest.mark.parametrize(
    ("agent", "name", "engine"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/156.0.0.0 Safari/537.36",
            "Chrome 156",
            "chromium",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0",
            "Edge 156",
            "chromium",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/150.0.0.0 Safari/537.36 OPR/110.0.0.0",
            "Opera 110",
            "chromium",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0",
            "Firefox 153",
            "firefox",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/18.0 Safari/605.1.15",
            "Safari 18",
            None,
        ),
        ("curl/8.0", "an unknown browser", None),
    ],
)
def test_the_dumps_browser_is_named_from_its_user_agent(agent: str, name: str, engine) -> None:
    from turncheck.dumps.reader import browser_of

    found = browser_of(agent)
    assert (found.name, found.engine) == (name, engine)


def test_the_dumps_browser_picks_the_model_the_probe_answers_with(
    cli, coturn: Coturn, tmp_path: Path
) -> None:
    """A dump from Firefox (its UserAgent says so) is probed with Firefox's model only; from
    Chrome, with Chromium's; the header names the browser."""
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    env = {"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}
    for agent, engine, line in (
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0",
            "firefox",
            "browser       Firefox 153 (Firefox's rules)",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/156.0.0.0 Safari/537.36",
            "chromium",
            "browser       Chrome 156 (Chromium's rules)",
        ),
    ):
        document = current_dump(url, error=None, connected=True)
        document["UserAgent"] = agent
        dump = tmp_path / f"{engine}.json"
        dump.write_text(json.dumps(document))
        result = cli("diagnose", str(dump), "--probe", "--json", env=env)
        doc = result.json()
        assert doc["browser"]["engine"] == engine
        assert list(doc["probe"]["browsers"]) == [engine]
        table = cli("diagnose", str(dump), env=env)
        assert table.out.splitlines()[0] == line


def diagnose_peak_mb(path: Path) -> float:
    """`turncheck diagnose PATH --json` in a process of its own: exit 0, its peak RSS in MB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "turncheck", "diagnose", str(path), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024
