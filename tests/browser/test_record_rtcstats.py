"""The rtcstats dumps of tests/data/rtcstats/ are what tests/browser/record_rtcstats.py
writes. Recording them again (python -m tests.browser.record_rtcstats, by hand: it needs
npm and the npm registry for the client) is not part of the suite.

The stored set is checked without the lab: rtcstats-server's header line first, one JSON
array a line after it with jitsi/rtcstats 9.x's sequence numbers, the configuration less
its credential, no password of the lab.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser import record_dumps, record_rtcstats

DATA = Path(__file__).resolve().parents[1] / "data" / "rtcstats"
CASES = [c.name for c in record_dumps.CASES]


def without_rtt(verdict: str) -> str:
    return re.sub(r", RTT [\d.]+ ms", "", verdict)


def entries(path: Path) -> list[Any]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("case", CASES)
def test_stored_rtcstats_dumps_are_a_recorded_set(case: str) -> None:
    path = DATA / f"{case}{record_rtcstats.DUMP_SUFFIX}"
    text = path.read_text(encoding="utf-8")
    first, *rest = entries(path)
    method, connection, details, _ = first
    assert (method, connection) == ("connectionInfo", None)
    assert "HeadlessChrome/" in details["userAgent"]
    assert details["clientProtocol"] == record_rtcstats.PROTOCOL
    assert details["clientType"] == "RTCSTATS_CLIENT"
    assert details["path"].startswith(f"/turncheck-lab/{case}?statsSessionId=")
    assert all(isinstance(e, list) and isinstance(e[0], str) for e in rest)
    # jitsi/rtcstats 9.x: [method, pc, value, ms, seq], seq counting up from 1
    assert [e[4] for e in rest] == list(range(1, len(rest) + 1))
    assert rest[0][:3] == ["identity", None, {**rest[0][2], "confName": case}]
    creates = [e for e in rest if e[0] == "create"]
    assert [e[1] for e in creates] == ["PC_0", "PC_1"]
    for _, _, config, *_ in creates:
        for server in config.get("iceServers", []):
            assert "credential" not in server  # rtcstats deletes it, keeps the username
    assert any(e[0] == "getstats" for e in rest)
    assert [e[1] for e in rest if e[0] == "close"] == ["PC_0", "PC_1"]
    for secret in record_rtcstats.SECRETS:
        assert secret not in text, (case, secret)


def test_the_manifest_names_every_stored_dump() -> None:
    manifest = json.loads((DATA / "manifest.json").read_text())
    assert sorted(manifest["cases"]) == sorted(CASES)
    assert manifest["client"]["npm"]["@jitsi/rtcstats"] == "9.7.1"
    assert manifest["server_errors"] == []
    for name, case in manifest["cases"].items():
        assert (DATA / case["file"]).is_file(), name
        assert case["close_code"] == record_rtcstats.CONFERENCE_LEAVE_CODE, name
