"""Self-test of the test page (turncheck/serve/page/) in real browsers, against a stand-in.

The page runs in headless Chromium and in Firefox ESR in the client namespace of a
masquerading lab (tests/lab/netns.py); in the server namespace

    203.0.113.2:3478   coturn with TURN REST API credentials (use-auth-secret), UDP and TCP
    203.0.113.3:3478   the same coturn, where the config sends a wrong credential
    203.0.113.2:9731   the stand-in below: the three page files, a config, the results POST

The stand-in (this module run as ``python -m tests.browser.test_page_selftest --serve``)
only plays the server's side of the page's contract, under the server's CSP (plus a
report-uri, so a violation is seen): GET /test/x, /test/static/test.{js,css},
/test/x/config, POST /test/x/results answering ``{"id": "TST-001", ...}``; it records every
request. The real server side is turncheck/serve/.

The config names a TURN URL over UDP and one over TCP (one entry), a STUN URL, and a TURN
URL with a wrong credential: every path of the page (relayed data, srflx, a 401) in one run.

Traffic stays in the namespaces the test creates; every wait is bounded. Screenshots go to
$TURNCHECK_PAGE_SHOTS when set (kept), else to the test's tmp_path.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import secrets
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from tests.browser.chromium import netns_etc, open_test_page, require_chromium, require_firefox
from tests.lab.netns import Lab
from tests.servers.coturn import running_coturn
from tests.servers.fixtures import require_tool
from tests.servers.ports import terminate

pytestmark = pytest.mark.timeout(180)

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = REPO_ROOT / "turncheck" / "serve" / "page"
PROFILE = "x"
PORT = 9731
TURN_PORT = 3478  # coturn's port in a lab namespace (tests/servers/coturn.py)
SECRET = "page-selftest-secret"
WRONG_CREDENTIAL = "not-the-credential"
ANSWER = {"id": "TST-001", "summary": "stand-in", "ok": True}
EXPIRED = "expired"  # a profile whose results POST the stand-in refuses
EXPIRED_ERROR = "This test link has expired: please ask support for a new one."
LONG_NAME = "a-very-long-host-name-that-no-resolver-of-this-lab-knows.turncheck.test"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
CSP_REPORT = f"/test/{PROFILE}/csp-report"
MAX_BODY = 64 * 1024
RUN_LIMIT_S = 30.0  # the page's budget, POST included
READY_TIMEOUT = 10.0
WIDTHS = {"phone": 390, "desktop": 1280}
SCROLLBAR_PX = 20

GATHER_KEYS = {"url", "server", "ms", "complete", "exception", "candidates", "errors"}
CANDIDATE_KEYS = {
    "type",
    "protocol",
    "address",
    "port",
    "relatedAddress",
    "relatedPort",
    "relayProtocol",
    "url",
    "ms",
}
ERROR_KEYS = {"url", "code", "text", "ms"}
RELAY_KEYS = {
    "url",
    "server",
    "connected",
    "connect_ms",
    "state",
    "local",
    "sent",
    "received",
    "rtt_ms",
    "throughput_kbps",
    "error",
}


# -- the stand-in server (runs in the lab's server namespace) -----------------------------


def rest_credentials(secret: str, ttl: int = 600) -> dict[str, str]:
    """coturn use-auth-secret credentials: "<expiry>:<user>" and its HMAC-SHA1, base64."""
    username = f"{int(time.time()) + ttl}:page-selftest"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {"username": username, "credential": base64.b64encode(digest).decode()}


def stand_in_config(host: str, other: str, token: str) -> dict[str, Any]:
    """The config of profile "x": coturn's REST credentials for *host*; a wrong credential
    for the same coturn on its *other* address (Chromium 156 gathered neither a relay nor
    a 401 from two entries with one TURN address and different credentials in one
    RTCPeerConnection: its whole-configuration gathering never completed)."""
    creds = rest_credentials(SECRET)
    turn = f"turn:{host}:{TURN_PORT}"
    return {
        "profile": PROFILE,
        "title": "Stand-in lab",
        "token": token,
        "iceServers": [
            {"urls": [f"{turn}?transport=udp", f"{turn}?transport=tcp"], **creds},
            {"urls": f"stun:{host}:{TURN_PORT}"},
            {
                "urls": f"turn:{other}:{TURN_PORT}?transport=udp",
                "username": creds["username"],
                "credential": WRONG_CREDENTIAL,
            },
        ],
        "budget_s": 30,
        "gather_s": 10,
        "relay_s": 4,
    }


def expired_config(host: str, token: str) -> dict[str, Any]:
    """Profile "expired": STUN only (no relay test): one URL whose long name no resolver
    of the lab knows, and a stuns: URL (Firefox rejects it, and so the whole
    configuration); its POST answers 403."""
    return {
        "profile": EXPIRED,
        "title": None,
        "token": token,
        "iceServers": [
            {"urls": [f"stun:{host}:{TURN_PORT}", f"stun:{LONG_NAME}:{TURN_PORT}"]},
            {"urls": f"stuns:{host}:{TURN_PORT}"},
        ],
        "budget_s": 30,
        "gather_s": 3,
        "relay_s": 4,
    }


class _StandIn(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], out: Path, host: str, other: str) -> None:
        super().__init__(address, _StandInHandler)
        self.out = out
        self.host = host
        self.other = other
        self.token = secrets.token_urlsafe(16)
        self.lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock, self.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


class _StandInHandler(http.server.BaseHTTPRequestHandler):
    server: _StandIn
    FILES: ClassVar[dict[str, tuple[str, str]]] = {
        f"/test/{PROFILE}": ("test.html", "text/html; charset=utf-8"),
        f"/test/{EXPIRED}": ("test.html", "text/html; charset=utf-8"),
        "/test/static/test.js": ("test.js", "text/javascript; charset=utf-8"),
        "/test/static/test.css": ("test.css", "text/css; charset=utf-8"),
    }

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", f"{CSP}; report-uri {CSP_REPORT}")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, doc: dict[str, Any]) -> None:
        self._send(code, json.dumps(doc).encode(), "application/json")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        entry: dict[str, Any] = {"method": "GET", "path": path}
        if path in self.FILES:
            name, content_type = self.FILES[path]
            self._send(200, (PAGE_DIR / name).read_bytes(), content_type)
        elif path == f"/test/{PROFILE}/config":
            config = stand_in_config(self.server.host, self.server.other, self.server.token)
            entry["config"] = config
            self._json(200, config)
        elif path == f"/test/{EXPIRED}/config":
            config = expired_config(self.server.host, self.server.token)
            entry["config"] = config
            self._json(200, config)
        else:
            self._json(404, {"error": "no such page"})
        self.server.record(entry)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        entry: dict[str, Any] = {
            "method": "POST",
            "path": path,
            "content_type": self.headers.get("Content-Type"),
            "length": length,
        }
        if length > MAX_BODY:
            self._json(413, {"error": "the results are too large"})
        elif path == CSP_REPORT:
            entry["report"] = self.rfile.read(length).decode(errors="replace")
            self._send(204, b"", "text/plain")
        elif path == f"/test/{EXPIRED}/results":
            entry["body"] = json.loads(self.rfile.read(length))
            self._json(403, {"error": EXPIRED_ERROR})
        elif path == f"/test/{PROFILE}/results":
            raw = self.rfile.read(length)
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            entry["body"] = doc
            entry["raw"] = raw.decode(errors="replace")
            if not isinstance(doc, dict) or doc.get("token") != self.server.token:
                self._json(403, {"error": "this test link has expired"})
            else:
                self._json(201, ANSWER)
        else:
            self._json(404, {"error": "no such page"})
        self.server.record(entry)

    def log_message(self, format: str, *args: Any) -> None:  # no access log
        pass


def serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser.test_page_selftest")
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--other", required=True)
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    server = _StandIn((args.host, args.port), args.out, args.host, args.other)
    print("ready", flush=True)
    server.serve_forever(poll_interval=0.2)
    return 0


@contextmanager
def stand_in(lab: Lab, tmp: Path) -> Iterator[Path]:
    """The stand-in in *lab*'s server namespace on its first address, port PORT; yields
    its record file."""
    host, other = lab.server_ips
    out = tmp / "requests.jsonl"
    out.touch()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "tests.browser.test_page_selftest", "--serve"]
    argv += ["--host", host, "--other", other, "--port", str(PORT), "--out", str(out)]
    with (tmp / "stand-in.log").open("wb") as log:
        proc = lab.popen(
            lab.server_ns, argv, stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO_ROOT
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        assert line == b"ready\n", (tmp / "stand-in.log").read_text(errors="replace")
        yield out
    finally:
        terminate(proc, proc.send_signal, 5.0)


def requests_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line]


# -- the test ---------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def shots_dir(tmp: Path) -> Path:
    kept = os.environ.get("TURNCHECK_PAGE_SHOTS")
    return Path(kept) if kept else tmp / "shots"


def check_shape(doc: dict[str, Any]) -> None:
    """Field names and types of the results document, as the contract has them."""
    assert set(doc) == {
        "version",
        "token",
        "profile",
        "browser",
        "elapsed_ms",
        "gathers",
        "relays",
    }, doc.keys()
    assert doc["version"] == 1
    assert set(doc["browser"]) == {"userAgent", "brands"}
    assert isinstance(doc["browser"]["userAgent"], str) and doc["browser"]["userAgent"]
    assert doc["browser"]["brands"] is None or isinstance(doc["browser"]["brands"], list)
    assert isinstance(doc["elapsed_ms"], int | float)
    for g in doc["gathers"]:
        assert set(g) == GATHER_KEYS, g
        assert g["url"] is None or isinstance(g["url"], str)
        assert g["server"] is None or isinstance(g["server"], int)
        assert isinstance(g["ms"], int | float) and isinstance(g["complete"], bool)
        assert g["exception"] is None or set(g["exception"]) == {"name", "message"}
        assert len(g["candidates"]) <= 50 and len(g["errors"]) <= 50
        for c in g["candidates"]:
            assert set(c) == CANDIDATE_KEYS, c
            assert isinstance(c["type"], str) and isinstance(c["port"], int)
            assert isinstance(c["ms"], int | float)
        for e in g["errors"]:
            assert set(e) == ERROR_KEYS, e
            assert e["code"] is None or isinstance(e["code"], int)
    for r in doc["relays"]:
        assert set(r) == RELAY_KEYS, r
        assert isinstance(r["connected"], bool) and isinstance(r["server"], int)
        assert isinstance(r["sent"], int) and isinstance(r["received"], int)
        assert r["local"] is None or set(r["local"]) == {"type", "protocol", "relayProtocol"}
        assert r["rtt_ms"] is None or set(r["rtt_ms"]) == {"min", "p50", "p95", "max"}
        assert r["throughput_kbps"] is None or isinstance(r["throughput_kbps"], int | float)
        assert r["error"] is None or isinstance(r["error"], str)


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_page_runs_in_the_browser_and_posts_the_contract(
    browser: str, lab_factory: Any, tmp_path: Path
) -> None:
    require_tool("turnserver")
    if browser == "chromium":
        require_chromium()
    else:
        require_firefox()
    lab = lab_factory("masquerade")
    host = lab.server_ips[0]
    shots = shots_dir(tmp_path)
    with ExitStack() as stack:
        stack.enter_context(
            running_coturn(
                tmp_path / "coturn",
                hosts=lab.server_ips,
                relay_ips=(host,),
                tls=False,
                netns=lab.server_ns,
                extra=("use-auth-secret", f"static-auth-secret={SECRET}"),
            )
        )
        records = stack.enter_context(stand_in(lab, tmp_path))
        stack.enter_context(netns_etc(lab.client_ns, None))  # no resolver: no lookup leaves
        url = f"http://{host}:{PORT}/test/{PROFILE}"
        out = open_test_page(lab, url, browser=browser, screenshots_dir=shots)
        seen = requests_of(records)
    print(f"\n{browser} {out['browser_version']} page run: {json.dumps(out['timing'])}")
    (shots / f"{browser}-out.json").write_text(json.dumps(out, indent=1))

    state = out["state"]
    assert state["phase"] == "done", (state, out["console"])
    assert state["progress"] == 1 and state["error"] is None
    assert state["answer"] == ANSWER
    assert out["timing"]["run_s"] < RUN_LIMIT_S, out["timing"]

    # What the browser asked for: the page, its two files, the config, one POST; no CSP
    # violation reported, nothing on the console.
    asked = sorted((r["method"], r["path"]) for r in seen)
    assert asked == sorted(
        [
            ("GET", f"/test/{PROFILE}"),
            ("GET", "/test/static/test.css"),
            ("GET", "/test/static/test.js"),
            ("GET", f"/test/{PROFILE}/config"),
            ("POST", f"/test/{PROFILE}/results"),
        ]
    ), seen
    assert not [line for line in out["console"] if "error" in line.lower()], out["console"]
    (config,) = [r["config"] for r in seen if "config" in r]
    (post,) = [r for r in seen if r["method"] == "POST"]
    assert post["content_type"] == "application/json"
    assert post["length"] < MAX_BODY
    doc = post["body"]
    assert doc == state["results"]
    check_shape(doc)
    assert doc["token"] == config["token"] and doc["profile"] == PROFILE
    assert doc["elapsed_ms"] < RUN_LIMIT_S * 1000
    # The credentials went into RTCPeerConnection only.
    for entry in config["iceServers"]:
        if "credential" in entry:
            assert entry["credential"] not in post["raw"]
    # navigator.userAgentData is for secure contexts only: not on a plain-http address.
    assert doc["browser"]["brands"] is None
    assert ("Chrome/" if browser == "chromium" else "Firefox/") in doc["browser"]["userAgent"]

    # One gather per URL alone, in the config's order, then the whole configuration.
    turn = f"turn:{host}:{TURN_PORT}"
    udp, tcp, stun = f"{turn}?transport=udp", f"{turn}?transport=tcp", f"stun:{host}:{TURN_PORT}"
    wrong = f"turn:{lab.server_ips[1]}:{TURN_PORT}?transport=udp"
    gathers = doc["gathers"]
    assert [(g["server"], g["url"]) for g in gathers] == [
        (0, udp),
        (0, tcp),
        (1, stun),
        (2, wrong),
        (None, None),
    ]
    by_kind = [{c["type"] for c in g["candidates"]} for g in gathers]
    for g in gathers:
        assert g["exception"] is None, g
        assert g["complete"] is True, g
    for g, protocol in ((gathers[0], "udp"), (gathers[1], "tcp")):
        relays = [c for c in g["candidates"] if c["type"] == "relay"]
        assert [(c["address"], c["relayProtocol"]) for c in relays] == [(host, protocol)], g
        assert g["errors"] == [], g
    srflx = [c for c in gathers[2]["candidates"] if c["type"] == "srflx"]
    assert [c["address"] for c in srflx] == [lab.nat_outside_ip], gathers[2]
    assert "relay" not in by_kind[3] and 401 in {e["code"] for e in gathers[3]["errors"]}
    assert {"relay", "srflx"} <= by_kind[4], gathers[4]

    # A relay test per TURN URL: data through the two healthy ones, none through the 401.
    relays = doc["relays"]
    assert [(r["server"], r["url"]) for r in relays] == [(0, udp), (0, tcp), (2, wrong)]
    for r in relays[:2]:
        assert r["connected"] is True and r["state"] == "connected", r
        assert r["error"] is None and r["connect_ms"] < 10_000, r
        assert 0 < r["received"] <= r["sent"], r
        assert r["rtt_ms"]["p50"] > 0, r
        assert r["throughput_kbps"] > 0, r
        assert r["local"]["type"] == "relay", r
    assert relays[0]["local"]["relayProtocol"] == "udp"
    assert relays[1]["local"]["relayProtocol"] == "tcp"
    bad = relays[2]
    assert bad["connected"] is False and bad["received"] == 0, bad
    assert bad["error"] and "401" in bad["error"], bad

    # Mid-run and end, at phone and desktop width: no sideways scrolling at either (the
    # full-page shot is never wider than the viewport; Firefox's leaves out its 12 px
    # vertical scrollbar once the page is taller than the window).
    assert set(out["screenshots"]) == {"mid-phone", "mid-desktop", "end-phone", "end-desktop"}
    for name, path in out["screenshots"].items():
        width, height = png_size(Path(path))
        viewport = WIDTHS[name.split("-")[1]]
        assert viewport - SCROLLBAR_PX <= width <= viewport, (name, width)
        assert height >= 400, (name, height)


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_page_shows_the_servers_refusal(browser: str, lab_factory: Any, tmp_path: Path) -> None:
    """A results POST answered 403 {"error": ...}: the page ends in phase "error" and shows
    that line. A config without TURN URLs has no relay test; a URL the browser rejects
    (Firefox: stuns:) is an exception in its own gather and in the whole configuration's."""
    require_tool("turnserver")
    if browser == "chromium":
        require_chromium()
    else:
        require_firefox()
    lab = lab_factory("masquerade")
    host = lab.server_ips[0]
    shots = shots_dir(tmp_path) / EXPIRED
    with ExitStack() as stack:
        stack.enter_context(
            running_coturn(
                tmp_path / "coturn",
                hosts=(host,),
                relay_ips=(host,),
                tls=False,
                netns=lab.server_ns,
            )
        )
        records = stack.enter_context(stand_in(lab, tmp_path))
        stack.enter_context(netns_etc(lab.client_ns, None))
        url = f"http://{host}:{PORT}/test/{EXPIRED}"
        out = open_test_page(lab, url, browser=browser, screenshots_dir=shots, timeout=45)
        seen = requests_of(records)
    (shots / f"{browser}-out.json").write_text(json.dumps(out, indent=1))
    state = out["state"]
    assert state["phase"] == "error", state
    assert state["error"] == EXPIRED_ERROR
    assert state["answer"] == {"error": EXPIRED_ERROR}
    (post,) = [r for r in seen if r["method"] == "POST" and r["path"].endswith("/results")]
    assert post["body"] == state["results"]
    assert post["body"]["relays"] == []
    gathers = post["body"]["gathers"]
    assert [g["url"] for g in gathers] == [
        f"stun:{host}:{TURN_PORT}",
        f"stun:{LONG_NAME}:{TURN_PORT}",
        f"stuns:{host}:{TURN_PORT}",
        None,
    ]
    rejected = [g["url"] for g in gathers if g["exception"] is not None]
    if browser == "firefox":
        assert rejected == [f"stuns:{host}:{TURN_PORT}", None], gathers
        assert {g["exception"]["name"] for g in gathers if g["exception"]} == {"NotSupportedError"}
    else:
        assert rejected == [], gathers  # Chromium: stuns: is STUN over UDP
    assert not [r for r in seen if r["path"] == CSP_REPORT], seen
    assert {"end-phone", "end-desktop"} <= set(out["screenshots"])
    for name in ("end-phone", "end-desktop"):
        width, _ = png_size(Path(out["screenshots"][name]))
        viewport = WIDTHS[name.split("-")[1]]
        assert viewport - SCROLLBAR_PX <= width <= viewport, (name, width)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
