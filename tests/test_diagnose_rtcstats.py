"""turncheck diagnose on rtcstats dumps (rtcstats-server's line-oriented files, Jitsi's).

The recorded dumps in tests/data/rtcstats/ are the calls of tests/data/dumps/ (same lab,
same cases) recorded with Jitsi's rtcstats client instead of webrtc-internals: the same
call reads the same way from both, except what Jitsi's client does not trace
(icecandidateerror). Two real meet.jit.si dumps from jitsi/rtcstats-server's own tests
come along. Malformed input is one line naming the file and the line, exit 2.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data" / "rtcstats"
INTERNALS = Path(__file__).parent / "data" / "dumps"
CASES = (
    "relay-udp",
    "relay-tls",
    "srflx",
    "host",
    "turn-401",
    "turn-unreachable",
    "relay-policy-dead-turn",
    "relay-blocked",
)
# Jitsi's rtcstats client (jitsi/rtcstats 9.7.1) does not trace icecandidateerror: the
# TURN server's 401, or the refused TCP connection, is not in its dumps.
NO_ERROR_TRACE = ("turn-401", "turn-unreachable")
CHROME_156 = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36"
)
FIREFOX_153 = "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0"
TURN_TCP = "turn:turn.example.org:3478?transport=tcp"


def line(*entry: Any) -> str:
    return json.dumps(list(entry), separators=(",", ":")) + "\n"


def header(user_agent: str = CHROME_156, **more: Any) -> str:
    """rtcstats-server's first line (src/demux.js, since 2023: an object)."""
    details = {
        "path": "/tenant/room?statsSessionId=1f0e&isReconnect=false",
        "origin": "https://meet.example.org",
        "url": "https://meet.example.org/tenant/room?statsSessionId=1f0e&isReconnect=false",
        "userAgent": user_agent,
        "clientProtocol": "3.1_STANDARD",
        "statsFormat": "chrome_standard",
        "clientType": "RTCSTATS_CLIENT",
        **more,
    }
    return line("connectionInfo", None, details, 1_700_000_000_000)


def call(
    *, first: str | None = None, getstats: Sequence[dict[str, Any]] = (), extra: str = ""
) -> str:
    """A short rtcstats session: one peer connection over TURN/TCP, its entries as
    jitsi/rtcstats 9.x traces them ([method, pc, value, ms, seq])."""
    t = 1_700_000_000_100
    text = header() if first is None else first
    text += line("navigator.mediaDevices.getUserMedia", None, {"audio": True}, t, 1)
    config = {
        "iceServers": [{"urls": TURN_TCP, "username": "1700086400"}],
        "iceTransportPolicy": "all",
        "browserType": "webkit",
    }
    text += line("create", "PC_0", config, t + 1, 2)
    text += line("constraints", "PC_0", {}, t + 1, 3)
    text += line("onicegatheringstatechange", "PC_0", "gathering", t + 5, 4)
    relay = "candidate:1 1 UDP 25042943 198.51.100.7 50000 typ relay raddr x.x.x.x rport 0"
    text += line("onicecandidate", "PC_0", {"candidate": relay, "sdpMid": "0"}, t + 40, 5)
    text += line("oniceconnectionstatechange", "PC_0", "checking", t + 50, 6)
    text += extra
    text += line("oniceconnectionstatechange", "PC_0", "connected", t + 90, 7)
    for n, stats in enumerate(getstats):
        text += line("getstats", "PC_0", stats, t + 1000 * (n + 1), 10 + n)
    return text


def diagnose(cli, path: Path) -> tuple[int, dict[str, Any]]:
    result = cli("diagnose", str(path), "--json")
    assert "Traceback" not in result.err
    return result.code, result.json()


# -- the recorded calls: the same verdict as webrtc-internals' dump of the same call ----


def without_rtt(verdict: str) -> str:
    """A verdict less the pair's RTT (a millisecond or two in the lab, either way)."""
    return re.sub(r", RTT [\d.]+ ms", "", verdict)


def _candidates(pc: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return sorted((c["type"], c["protocol"], c["relay_protocol"]) for c in pc["candidates"])


def _pair(pc: dict[str, Any]) -> tuple[Any, ...] | None:
    sel = pc["selected_pair"]
    if sel is None:
        return None
    return (sel["local_type"], sel["remote_type"], sel["relay_protocol"], sel["url"])


def _states(pc: dict[str, Any], kind: str) -> list[str]:
    return [s["state"] for s in pc["states"] if s["kind"] == kind]


@pytest.mark.parametrize("case", CASES)
def test_a_recorded_rtcstats_dump_reads_as_the_webrtc_internals_dump_of_the_same_call(
    cli, case: str
) -> None:
    code, doc = diagnose(cli, DATA / f"{case}.rtcstats")
    internals_code, internals = diagnose(cli, INTERNALS / f"{case}.json")
    assert code == internals_code
    assert doc["browser"]["name"] == "Chrome 156" and doc["browser"]["engine"] == "chromium"
    assert [pc["id"] for pc in doc["peer_connections"]] == ["PC_0", "PC_1"]  # caller first
    for pc, twin in zip(doc["peer_connections"], internals["peer_connections"], strict=True):
        assert pc["format"] == "rtcstats"
        assert pc["url"].startswith("http://127.0.0.1:") and "statsSessionId" not in pc["url"]
        assert pc["ice_servers"] == twin["ice_servers"]
        assert pc["ice_transport_policy"] == twin["ice_transport_policy"]
        assert _candidates(pc) == _candidates(twin)
        assert _pair(pc) == _pair(twin)
        assert pc["connected"] == twin["connected"]
        for kind in ("iceconnectionstatechange", "connectionstatechange"):
            assert _states(pc, kind) == _states(twin, kind), kind
        if case in NO_ERROR_TRACE:
            assert pc["errors"] == []
        elif "rtcstats dumps do not record icecandidateerror" in pc["verdict"]:
            assert not twin["errors"] and not pc["errors"]  # neither knows why; it says so
        else:
            assert without_rtt(pc["verdict"]) == without_rtt(twin["verdict"])
    caller, twin = doc["peer_connections"][0], internals["peer_connections"][0]
    if case in NO_ERROR_TRACE:  # the same failure, without the server's answer
        assert twin["errors"] and caller["verdict"].startswith(
            "failed: no relay candidate (iceTransportPolicy relay); "
        )
        assert "rtcstats dumps do not record icecandidateerror" in caller["verdict"]


def test_a_recorded_relay_call_reads_in_words(cli) -> None:
    result = cli("diagnose", str(DATA / "relay-tls.rtcstats"))
    assert result.code == 0
    assert result.out.splitlines()[0] == "browser       Chrome 156 (Chromium's rules)"
    text = " ".join(result.out.split())
    assert re.search(
        r"verdict: connected through TURN \(relay over tls via "
        r"turns:203\.0\.113\.2:5349\?transport=tcp, RTT \d+ ms\)",
        text,
    ), text


@pytest.mark.parametrize(
    ("name", "browser", "engine", "verdict"),
    [
        (
            "jitsi-meet-chrome117-relay",
            "Chrome 117",
            "chromium",
            "connected through TURN (relay over tls via "
            "turns:meet-jit-si-turnrelay.jitsi.net:443?transport=tcp, RTT 26 ms)",
        ),
        # Firefox's stats name no url and no RTT for the pair: the verdict says less.
        (
            "jitsi-meet-firefox118-relay",
            "Firefox 118",
            "firefox",
            "connected through TURN (relay over tls)",
        ),
    ],
)
def test_real_meet_jit_si_dumps(cli, name: str, browser: str, engine: str, verdict: str) -> None:
    code, doc = diagnose(cli, DATA / f"{name}.rtcstats")
    assert code == 0
    assert (doc["browser"]["name"], doc["browser"]["engine"]) == (browser, engine)
    (pc,) = doc["peer_connections"]
    assert pc["url"] == "https://meet.jit.si//absentbreakdownspicturesame"
    assert pc["ice_servers"] == ["turns:meet-jit-si-turnrelay.jitsi.net:443?transport=tcp"]
    assert pc["verdict"] == verdict
    assert {c["type"] for c in pc["candidates"]} == {"host", "relay"}


# -- the browser, from the metadata's userAgent ----------------------------------------


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (header(FIREFOX_153), "browser       Firefox 153 (Firefox's rules)"),
        # rtcstats-server 2021-2023: the details as JSON text
        (
            line("connectionInfo", None, json.dumps({"userAgent": CHROME_156}), 1),
            "browser       Chrome 156 (Chromium's rules)",
        ),
        # rtcstats-server before 2021: a bare metadata object first
        (
            json.dumps(
                {"path": "/r", "origin": "https://x", "userAgent": FIREFOX_153, "fileFormat": 2}
            )
            + "\n",
            "browser       Firefox 153 (Firefox's rules)",
        ),
        ("", "browser       not named in the dump (no UserAgent)"),
    ],
)
def test_the_browser_comes_from_the_metadatas_user_agent(
    cli, tmp_path: Path, first: str, expected: str
) -> None:
    dump = tmp_path / "dump"
    dump.write_text(call(first=first, extra=""))
    result = cli("diagnose", str(dump))
    assert result.out.splitlines()[0] == expected, result.out


# -- getstats: delta compression, legacy stats ----------------------------------------


def test_delta_compressed_getstats_are_folded_into_the_last_values(cli, tmp_path: Path) -> None:
    """rtcstats.js deltaCompression: a report seen before carries only what changed, the
    newest timestamp goes to the top; the selected pair is read from what they add up to."""
    full = {
        "T01": {"timestamp": 0, "type": "transport", "selectedCandidatePairId": "CP1"},
        "CP1": {
            "timestamp": 0,
            "type": "candidate-pair",
            "localCandidateId": "I1",
            "remoteCandidateId": "I2",
            "state": "succeeded",
            "currentRoundTripTime": 0.05,
        },
        "I1": {
            "timestamp": 0,
            "type": "local-candidate",
            "candidateType": "relay",
            "protocol": "udp",
            "relayProtocol": "tcp",
            "url": TURN_TCP,
            "address": "198.51.100.7",
            "port": 50000,
        },
        "I2": {"timestamp": 0, "type": "remote-candidate", "candidateType": "srflx"},
        "IT01A1": {"timestamp": 0, "type": "inbound-rtp", "packetsReceived": 10},
        "timestamp": 1_700_000_001_100,
    }
    delta = {
        "T01": {"timestamp": 0},
        "CP1": {"timestamp": 0, "currentRoundTripTime": 0.07},
        "I1": {"timestamp": 0},
        "I2": {"timestamp": 0},
        "IT01A1": {"timestamp": 0, "packetsReceived": 60},
        "timestamp": 1_700_000_002_100,
    }
    dump = tmp_path / "dump"
    dump.write_text(call(getstats=[full, delta]))
    code, doc = diagnose(cli, dump)
    assert code == 0
    (pc,) = doc["peer_connections"]
    assert pc["selected_pair"] == {
        "local_type": "relay",
        "remote_type": "srflx",
        "relay_protocol": "tcp",
        "url": TURN_TCP,
        "rtt_ms": 70.0,
    }
    assert pc["verdict"] == f"connected through TURN (relay over tcp via {TURN_TCP}, RTT 70 ms)"


def test_chromes_legacy_stats_are_read_as_the_standard_ones(cli, tmp_path: Path) -> None:
    """rtcstats.js before Chrome's standard getStats (mangleChromeStats): googComponent,
    googCandidatePair, localcandidate with "relayed", ipAddress, portNumber, strings."""
    legacy = {
        "Channel-audio-1": {
            "timestamp": 0,
            "type": "googComponent",
            "selectedCandidatePairId": "Conn-audio-1-0",
        },
        "Conn-audio-1-0": {
            "timestamp": 0,
            "type": "googCandidatePair",
            "localCandidateId": "Cand-a",
            "remoteCandidateId": "Cand-b",
            "googActiveConnection": "true",
            "googRtt": "31",
        },
        "Cand-a": {
            "timestamp": 0,
            "type": "localcandidate",
            "candidateType": "relayed",
            "ipAddress": "198.51.100.7",
            "portNumber": "58507",
            "transport": "udp",
            "priority": "41885439",  # 0x027F1FFF: type preference 2, TURN over UDP
        },
        "Cand-b": {"timestamp": 0, "type": "remotecandidate", "candidateType": "serverreflexive"},
        "timestamp": 1_605_199_265_057,
    }
    dump = tmp_path / "dump"
    dump.write_text(call(getstats=[legacy]))
    code, doc = diagnose(cli, dump)
    (pc,) = doc["peer_connections"]
    assert code == 0
    assert pc["selected_pair"] == {
        "local_type": "relay",
        "remote_type": "srflx",
        "relay_protocol": "udp",
        "url": None,
        "rtt_ms": 31.0,
    }


def test_an_icecandidateerror_entry_is_read_when_a_client_traces_it(cli, tmp_path: Path) -> None:
    error = line(
        "onicecandidateerror",
        "PC_0",
        {
            "url": TURN_TCP,
            "address": "192.0.2.x",
            "port": 40000,
            "errorCode": 401,
            "errorText": "Unauthorized.",
        },
        1_700_000_000_160,
        8,
    )
    dump = tmp_path / "dump"
    dump.write_text(call(extra=error))
    code, doc = diagnose(cli, dump)
    assert code == 0  # connected all the same
    (pc,) = doc["peer_connections"]
    assert [(e["url"], e["code"]) for e in pc["errors"]] == [(TURN_TCP, 401)]
    assert "credentials are wrong or expired" in pc["errors"][0]["reason"]


def test_entries_out_of_order_are_put_back_in_time_order(cli, tmp_path: Path) -> None:
    """A client that reconnected replays its buffer: a state can come before create."""
    text = call()
    lines = text.splitlines(keepends=True)
    late = next(i for i, raw in enumerate(lines) if '"connected"' in raw)
    lines.insert(1, lines.pop(late))
    dump = tmp_path / "dump"
    dump.write_text("".join(lines))
    code, doc = diagnose(cli, dump)
    assert code == 0
    (pc,) = doc["peer_connections"]
    states = [
        (s["state"], s["at_ms"]) for s in pc["states"] if s["kind"] == "iceconnectionstatechange"
    ]
    assert [s for s, _ in states] == ["checking", "connected"]
    assert all(at >= 0 for _, at in states)


def test_stdin(cli, monkeypatch) -> None:
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO((DATA / "relay-udp.rtcstats").read_bytes()))
    )
    assert cli("diagnose", "-", "--json").code == 0


# -- bad input: one line naming the file and the line, exit 2 --------------------------

GOOD = header() + line("create", "PC_0", {"iceServers": []}, 2, 1)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (GOOD + "not json\n", "line 3: invalid JSON (column 1): an rtcstats dump has one JSON"),
        (GOOD + '["getstats","PC_0",{"T01":', "line 3: truncated (the file stops mid-line)"),
        (GOOD + '{"a": 1}\n', "line 3: a JSON object where an rtcstats dump has an entry"),
        (GOOD + "42\n", "line 3: not an rtcstats entry [method, connection, value, time] (int)"),
        (GOOD + '["close"]\n', "line 3: not an rtcstats entry [method, connection, value, time]"),
        ("[39,null,{},1]\n" + GOOD, "line 1: not an rtcstats entry"),
        (GOOD + "[" * 100_000 + "\n", "line 3: unusable JSON in an rtcstats dump"),
        (GOOD + '["getstats","PC_0",' + "x" * 5_000_000 + "\n", "line 3: invalid JSON"),
        (
            header() + line("navigator.mediaDevices.getUserMedia", None, {"audio": True}, 2),
            "an rtcstats dump with no peer connections",
        ),
        (
            line("connectionInfo", None, json.dumps({"clientType": "JVB_CLIENT"}), 1)
            + '{"statsSessionId":"x","type":"stats-entry","data":"{}"}\n',
            "an rtcstats dump of JVB_CLIENT (a Jitsi server component), not of a browser",
        ),
        (
            '{"statsSessionId":"x","type":"identity","data":{"applicationName":"JVB"}}\n'
            '{"statsSessionId":"x","type":"stats-entry","data":"{}"}\n',
            "the rtcstats dump of a Jitsi server component",
        ),
        (
            'RTCStatsDump\n{"userAgent":"Chrome/140","fileFormat":3}\n[39,"1",{},0]\n',
            "an RTCStatsDump (rtcstats.com's newer format): not read yet",
        ),
    ],
)
def test_bad_rtcstats_input_is_one_line_and_exit_2(
    cli, tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "dump.rtcstats"
    path.write_text(content)
    result = cli("diagnose", str(path))
    assert result.code == 2
    (only,) = result.err.strip().splitlines()
    assert only.startswith(f"turncheck: error: {path}: ") and fragment in only, only


def test_a_big_rtcstats_dump_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Figures: the peak RSS of `turncheck diagnose` on a 50 MB rtcstats dump (an hour of
    getstats entries of a call with many streams)."""
    stats = {
        f"IT01V{n}": {"timestamp": 0, "type": "inbound-rtp", "packetsReceived": n, "jitter": 0.01}
        for n in range(300)
    }
    entry = line("getstats", "PC_0", stats, 1_700_000_005_000, 99)
    text = call() + entry * int(50e6 / len(entry))
    path = tmp_path / "big.rtcstats"
    path.write_text(text)
    size = path.stat().st_size
    assert size > 45e6
    from tests.test_diagnose import diagnose_peak_mb

    peak_mb = diagnose_peak_mb(path)
    print(f"\n50 MB rtcstats dump ({size / 1e6:.1f} MB): peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 600, peak_mb
