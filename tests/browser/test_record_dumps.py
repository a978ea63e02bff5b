"""Record real chrome://webrtc-internals dumps in the lab, every run (tests/browser/record_dumps.py).

One lab and one Chromium run for the module: every case of record_dumps.CASES is called
between two RTCPeerConnections of one page and its dump downloaded with webrtc-internals'
own button.  The dumps are checked as a reader of them sees them: valid JSON of the
current format, two peer connections each, no TURN credentials, and each case's outcome
read back from the dump itself (the selected pair from the stats, candidate errors and
states from the updateLog).  tests/data/dumps/ holds one such recorded set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import record_dumps
from tests.browser.chromium import require_chromium
from tests.lab.netns import require_lab
from tests.servers.fixtures import require_tool

pytestmark = pytest.mark.timeout(240)

RECORD_LIMIT_S = 120.0  # about 55 s measured: a loaded CI machine gets twice that
DATA = Path(__file__).resolve().parents[1] / "data" / "dumps"
TOP_LEVEL = {
    "cpuPerformance",
    "deviceMemory",
    "hardwareConcurrency",
    "timestamp",
    "getUserMedia",
    "PeerConnections",
    "UserAgent",
    "UserAgentData",
}


@pytest.fixture(scope="module")
def recorded(tls_ca, tmp_path_factory) -> Iterator[tuple[Path, dict[str, Any]]]:
    require_lab()
    require_tool("turnserver")
    require_chromium(ca=True)
    out = tmp_path_factory.mktemp("dumps")
    manifest = record_dumps.record(out, ca=tls_ca, workdir=tmp_path_factory.mktemp("dumps-lab"))
    print(f"\nrecorded {sorted(manifest['cases'])} in {json.dumps(manifest['timing'])}")
    yield out, manifest


def load(directory: Path, case: str) -> dict[str, Any]:
    return json.loads((directory / f"{case}.json").read_text(encoding="utf-8"))


def caller_and_callee(dump: dict[str, Any]) -> list[dict[str, Any]]:
    """The two peer connections, caller first ("<rid>-<lid>": lid 1 is created first)."""
    pcs = dump["PeerConnections"]
    return [pcs[k] for k in sorted(pcs, key=lambda k: int(k.rsplit("-", 1)[1]))]


def last(stats: dict[str, Any], key: str) -> Any:
    series = stats.get(key) or {}
    values = json.loads(series["values"]) if "values" in series else []
    return values[-1] if values else None


def selected_pair(pc: dict[str, Any]) -> dict[str, Any] | None:
    """The transport's selectedCandidatePairId, read back as webrtc-internals shows it."""
    stats = pc["stats"]
    transports = [
        k.removesuffix("-selectedCandidatePairId")
        for k, v in stats.items()
        if k.endswith("-selectedCandidatePairId") and v.get("statsType") == "transport"
    ]
    if not transports:
        return None
    pair = last(stats, f"{transports[0]}-selectedCandidatePairId")
    local = last(stats, f"{pair}-localCandidateId")
    remote = last(stats, f"{pair}-remoteCandidateId")
    return {
        "state": last(stats, f"{pair}-state"),
        "local": last(stats, f"{local}-candidateType"),
        "remote": last(stats, f"{remote}-candidateType"),
        "relayProtocol": last(stats, f"{local}-relayProtocol"),
        "url": last(stats, f"{local}-url"),
    }


def updates(pc: dict[str, Any], kind: str) -> list[Any]:
    """Values of updateLog entries of *kind*, JSON-decoded where they are JSON."""
    out = []
    for entry in pc["updateLog"]:
        if entry["type"] != kind:
            continue
        value = entry["value"]
        try:
            out.append(json.loads(value) if value else value)
        except ValueError:
            out.append(value)
    return out


def test_recording_is_quick_and_complete(recorded: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = recorded
    assert manifest["timing"]["total_s"] < RECORD_LIMIT_S, manifest["timing"]
    assert manifest["chromium"].split(".")[0].isdigit(), manifest["chromium"]
    names = [c.name for c in record_dumps.CASES]
    assert sorted(p.stem for p in out.glob("*.json")) == sorted([*names, "manifest"])


@pytest.mark.parametrize("case", [c.name for c in record_dumps.CASES])
def test_dump_is_the_current_format(recorded: tuple[Path, dict[str, Any]], case: str) -> None:
    out, manifest = recorded
    text = (out / f"{case}.json").read_text(encoding="utf-8")
    dump = json.loads(text)
    assert set(dump) == TOP_LEVEL
    assert "HeadlessChrome/" in dump["UserAgent"]
    assert isinstance(dump["timestamp"], int)
    # exactly this call's two connections: earlier calls' tabs are gone
    assert len(dump["PeerConnections"]) == 2, list(dump["PeerConnections"])
    assert sorted(dump["PeerConnections"]) == sorted(manifest["cases"][case]["peer_connections"])
    for key, pc in dump["PeerConnections"].items():
        assert set(pc) >= {"pid", "rtcConfiguration", "stats", "updateLog", "url"}, key
        assert pc["url"].startswith("http://127.0.0.1:")
        config = json.loads(pc["rtcConfiguration"])  # JSON text, not an object
        assert isinstance(config, dict)
        assert pc["updateLog"], key
        for entry in pc["updateLog"]:
            assert set(entry) == {"type", "value", "timestamp"}, entry
            assert isinstance(entry["value"], str)
            assert isinstance(entry["timestamp"], int | float)
        for name, series in pc["stats"].items():
            assert set(series) == {"startTime", "endTime", "statsType", "values"}, name
            assert isinstance(json.loads(series["values"]), list)
    # the configurations' TURN credentials never reach the dump
    for secret in record_dumps.CREDENTIALS:
        assert secret not in text, (case, secret)


@pytest.mark.parametrize(
    ("case", "local", "remote", "relay"),
    [
        ("relay-udp", "relay", "relay", "udp"),
        ("relay-tls", "relay", "relay", "tls"),
        ("srflx", "srflx", "srflx", None),
        ("host", "host", "host", None),
    ],
)
def test_connected_calls_show_their_selected_pair(
    recorded: tuple[Path, dict[str, Any]],
    case: str,
    local: str,
    remote: str,
    relay: str | None,
) -> None:
    out, manifest = recorded
    assert manifest["cases"][case]["connected"] is True, manifest["cases"][case]
    for pc in caller_and_callee(load(out, case)):
        assert updates(pc, "onconnectionstatechange")[-1] == "connected"
        pair = selected_pair(pc)
        assert pair is not None, case
        assert (pair["state"], pair["local"], pair["remote"]) == ("succeeded", local, remote)
        assert pair["relayProtocol"] == relay
        if relay:
            assert pair["url"] == json.loads(pc["rtcConfiguration"])["iceServers"][0]["urls"][0]


def _errors(pc: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [
        (e["url"], e["error_code"], e["error_text"]) for e in updates(pc, "onicecandidateerror")
    ]


@pytest.mark.parametrize(
    ("case", "url", "code", "text"),
    [
        (
            "turn-401",
            f"turn:{record_dumps.SERVER}:3478?transport=udp",
            401,
            "Unauthorized.",
        ),
        (
            "turn-unreachable",
            f"turn:{record_dumps.DEAD}:3478?transport=tcp",
            701,
            "Failed to establish connection",
        ),
    ],
)
def test_turn_errors_are_icecandidateerror_updates(
    recorded: tuple[Path, dict[str, Any]], case: str, url: str, code: int, text: str
) -> None:
    out, _ = recorded
    caller, callee = caller_and_callee(load(out, case))
    assert _errors(caller) == [(url, code, text)]
    assert updates(caller, "onicecandidate") == []  # relay policy: nothing else to gather
    assert json.loads(caller["rtcConfiguration"])["iceTransportPolicy"] == "relay"
    # the callee gathered its relay, got no candidate back: neither side left "new"
    assert [c["url"] for c in updates(callee, "onicecandidate")] == [record_dumps.TURN_UDP]
    for pc in (caller, callee):
        assert updates(pc, "oniceconnectionstatechange") == []
        assert selected_pair(pc) is None


def test_dead_turn_leaves_no_trace_but_the_missing_relay(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = recorded
    caller, _ = caller_and_callee(load(out, "relay-policy-dead-turn"))
    assert updates(caller, "onicecandidate") == []
    assert _errors(caller) == []  # Chromium's TURN/UDP timeout is longer than the cap
    assert updates(caller, "onicegatheringstatechange") == ["gathering"]
    assert manifest["cases"]["relay-policy-dead-turn"]["connected"] is False


def test_blocked_relay_fails_after_checking(recorded: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = recorded
    for pc in caller_and_callee(load(out, "relay-blocked")):
        assert [c["candidate"].split()[7] for c in updates(pc, "onicecandidate")] == ["relay"]
        states = updates(pc, "onconnectionstatechange")
        assert states[0] == "connecting" and states[-1] == "failed", states
        assert "checking" in updates(pc, "oniceconnectionstatechange")
        assert selected_pair(pc) is None
        # the stats show the pair that never got an answer
        stats = pc["stats"]
        pairs = [k[: -len("-responsesReceived")] for k in stats if k.endswith("-responsesReceived")]
        assert pairs and all(last(stats, f"{p}-responsesReceived") == 0 for p in pairs)
    assert manifest["cases"]["relay-blocked"]["ended_by"] == "failed"


@pytest.mark.parametrize("case", [c.name for c in record_dumps.CASES])
def test_stored_dumps_are_a_recorded_set(case: str) -> None:
    """tests/data/dumps/<case>.json came out of this recorder (no lab needed)."""
    path = DATA / f"{case}.json"
    if not path.exists():
        pytest.skip(f"{path} not stored")
    text = path.read_text(encoding="utf-8")
    dump = json.loads(text)
    assert set(dump) == TOP_LEVEL and len(dump["PeerConnections"]) == 2
    for secret in record_dumps.CREDENTIALS:
        assert secret not in text, (case, secret)
