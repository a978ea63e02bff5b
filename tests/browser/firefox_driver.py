"""Gather ICE candidates with a real headless Firefox (Debian's firefox-esr), over WebDriver BiDi.

Run it INSIDE a lab namespace, like tests/browser/driver.py for Chromium::

    ip netns exec <ns> python -m tests.browser.firefox_driver IN.json OUT.json

IN.json: {"ca_pem": path | null, "cap_s": 14.0, "timeout_s": 60.0,
          "jobs": [{"id", "kind": "gather" | "construct", "config": {RTCConfiguration}}]}
OUT.json: {"results": {id: {"error", "candidates", "errors", "relay_protocols", ...}},
           "firefox": "153.8.0esr", "timing": {...}}  (or {"results": {}, "fatal": "..."})

Firefox gets a fresh profile: the prefs below (camera and microphone granted, fake
devices, host addresses not obfuscated, and every background service off: telemetry,
updates, safebrowsing, captive portal, connectivity checks, remote settings, normandy,
push, extension and GMP updates, DNS over HTTPS), and the lab CA in its NSS store. It
listens for BiDi on 127.0.0.1 of the namespace only. The page is served by an
http.server on 127.0.0.1 (a secure context). The client is ~100 lines on `websockets`;
nothing is downloaded. Every process it starts is killed when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FIREFOX = os.environ.get("TURNCHECK_FIREFOX", "/usr/bin/firefox-esr")
FATAL_EXIT = 3

PREFS = {
    "permissions.default.microphone": 1,
    "permissions.default.camera": 1,
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "dom.push.enabled": False,
    "dom.push.connection.enabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-gmpopenh264.enabled": False,
    "network.trr.mode": 5,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.newtabpage.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.ping-centre.telemetry": False,
    "security.OCSP.enabled": 0,
    "browser.region.network.url": "",
    "geo.provider.network.url": "",
}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>turncheck gather (firefox)</title>
<link rel="icon" href="data:,"></head><body>
<script>
"use strict";
const sleep = ms => new Promise(r => setTimeout(r, ms));
const errorOf = e => ({name: String((e && e.name) || "Error"),
                       message: String((e && e.message) || e)});
const orNull = v => (v === undefined ? null : v);

async function job(j, capMs) {
  const t0 = performance.now();
  const ms = () => Math.round((performance.now() - t0) * 10) / 10;
  const out = {error: null, candidates: [], errors: [], relay_protocols: {},
               complete: false, elapsed_ms: 0, states: []};
  let pc;
  try {
    pc = new RTCPeerConnection(j.config);
  } catch (e) {
    out.error = errorOf(e);
    return out;
  }
  if (j.kind === "construct") { pc.close(); return out; }
  let finish;
  const done = new Promise(r => { finish = r; });
  pc.onicecandidate = ev => {
    const c = ev.candidate;
    if (!c || !c.candidate) return;
    out.candidates.push({candidate: c.candidate, type: orNull(c.type),
      protocol: orNull(c.protocol), address: orNull(c.address), port: orNull(c.port),
      priority: orNull(c.priority), url: orNull(c.url !== undefined ? c.url : ev.url),
      relayProtocol: orNull(c.relayProtocol), elapsed_ms: ms()});
  };
  pc.onicecandidateerror = ev => {
    out.errors.push({url: orNull(ev.url), errorCode: orNull(ev.errorCode),
                     errorText: orNull(ev.errorText), address: orNull(ev.address),
                     port: orNull(ev.port), elapsed_ms: ms()});
  };
  pc.onicegatheringstatechange = () => {
    out.states.push([pc.iceGatheringState, ms()]);
    if (pc.iceGatheringState === "complete") finish();
  };
  try {
    pc.createDataChannel("turncheck");
    await pc.setLocalDescription(await pc.createOffer());
    await Promise.race([done, sleep(capMs)]);
    out.complete = pc.iceGatheringState === "complete";
    // Firefox leaves candidate.relayProtocol undefined: getStats has it.
    const report = await pc.getStats();
    report.forEach(s => {
      if (s.type === "local-candidate" && s.candidateType === "relay")
        out.relay_protocols[s.address + ":" + s.port] = orNull(s.relayProtocol);
    });
  } catch (e) {
    out.error = errorOf(e);
  }
  out.elapsed_ms = ms();
  pc.close();
  return out;
}

window.runJobs = async (jobs, capMs) => {
  try {
    const s = await navigator.mediaDevices.getUserMedia({audio: true});
    s.getTracks().forEach(t => t.stop());
  } catch (e) {}
  const results = await Promise.all(jobs.map(j => job(j, capMs)));
  const out = {};
  jobs.forEach((j, i) => { out[j.id] = results[i]; });
  return JSON.stringify(out);
};
</script></body></html>
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _profile(directory: Path, ca_pem: str | None) -> None:
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in PREFS.items()]
    (directory / "user.js").write_text("\n".join(lines) + "\n")
    if ca_pem:
        db = f"sql:{directory}"
        subprocess.run(["certutil", "-N", "-d", db, "--empty-password"], check=True, timeout=20)
        subprocess.run(
            ["certutil", "-A", "-d", db, "-n", "turncheck-lab-ca", "-t", "C,,", "-i", ca_pem],
            check=True,
            timeout=20,
        )


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Bidi:
    """A minimal WebDriver BiDi client: commands and their results, events ignored."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        for _ in range(100_000):  # bounded: events in between are skipped
            message = json.loads(await self.ws.recv())
            if message.get("id") == self.next_id:
                if message.get("type") == "error":
                    raise RuntimeError(
                        f"{method}: {message.get('error')}: {message.get('message')}"
                    )
                return dict(message.get("result", {}))
        raise RuntimeError(f"{method}: no answer")


async def _drive(port: int, page: str, jobs: list[dict[str, Any]], cap_s: float) -> dict[str, Any]:
    import websockets

    url = f"ws://127.0.0.1:{port}/session"
    ws = None
    for _ in range(300):  # up to 30 s for Firefox to open its BiDi port
        try:
            ws = await websockets.connect(url, max_size=None, open_timeout=2)
            break
        except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
            await asyncio.sleep(0.1)
    if ws is None:
        raise RuntimeError("Firefox's WebDriver BiDi port never opened")
    async with ws:
        bidi = Bidi(ws)
        session = await bidi.call("session.new", {"capabilities": {}})
        tree = await bidi.call("browsingContext.getTree", {})
        context = tree["contexts"][0]["context"]
        await bidi.call(
            "browsingContext.navigate", {"context": context, "url": page, "wait": "complete"}
        )
        expression = f"window.runJobs({json.dumps(jobs)}, {int(cap_s * 1000)})"
        result = await bidi.call(
            "script.evaluate",
            {"expression": expression, "target": {"context": context}, "awaitPromise": True},
        )
        if result.get("type") == "exception":
            raise RuntimeError(f"the page threw: {result.get('exceptionDetails')}")
        value = result["result"]["value"]
        with contextlib.suppress(Exception):
            await bidi.call("session.end", {})
        return {"results": json.loads(value), "session": session.get("capabilities", {})}


def main(argv: list[str]) -> int:
    in_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(in_path.read_text())
    began = time.monotonic()
    timeout = float(spec.get("timeout_s", 60.0))
    cap_s = float(spec.get("cap_s", 14.0))
    out: dict[str, Any] = {"results": {}}
    home = Path(tempfile.mkdtemp(prefix="turncheck-firefox-"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        profile = home / "profile"
        profile.mkdir()
        _profile(profile, spec.get("ca_pem"))
        port = _free_port()
        env = {
            **os.environ,
            "HOME": str(home),
            "MOZ_HEADLESS": "1",
            "MOZ_CRASHREPORTER_DISABLE": "1",
        }
        proc = subprocess.Popen(
            [
                FIREFOX,
                "--headless",
                "--no-remote",
                "--remote-debugging-port",
                str(port),
                "--profile",
                str(profile),
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(home / "firefox.log").open("wb"),
            env=env,
            start_new_session=True,
        )
        page = f"http://127.0.0.1:{server.server_address[1]}/"
        driven = asyncio.run(
            asyncio.wait_for(_drive(port, page, spec["jobs"], cap_s), max(1.0, timeout - 3))
        )
        out["results"] = driven["results"]
        out["firefox"] = driven["session"].get("browserVersion")
        out["timing"] = {"driver_s": time.monotonic() - began}
        code = 0
    except Exception as exc:
        log = home / "firefox.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        out = {"results": {}, "fatal": f"{type(exc).__name__}: {exc}", "log": tail}
        code = FATAL_EXIT
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        server.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    out_path.write_text(json.dumps(out))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
