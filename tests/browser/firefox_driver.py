"""Gather ICE candidates with a real headless Firefox (Debian's firefox-esr), over WebDriver BiDi.

Run it INSIDE a lab namespace, like tests/browser/driver.py for Chromium::

    ip netns exec <ns> python -m tests.browser.firefox_driver IN.json OUT.json

IN.json: {"ca_pem": path | null, "cap_s": 14.0, "timeout_s": 60.0,
          "jobs": [{"id", "kind": "gather" | "construct", "config": {RTCConfiguration}}]}
OUT.json: {"results": {id: {"error", "candidates", "errors", "relay_protocols", ...}},
           "firefox": "153.8.0esr", "timing": {...}}  (or {"results": {}, "fatal": "..."})

"page" mode: ``{"mode": "page", "url", "widths", "screenshots_dir", "screenshot_prefix",
"wait_s", "ca_pem", "timeout_s"}`` opens turncheck serve's test page and returns what
tests/browser/driver.py's page mode returns (``state``, ``browser_version``,
``screenshots``, ``timing``, ``console``: the page's log.entryAdded events).

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
import base64
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
    """A minimal WebDriver BiDi client: commands and their results; of the events, only
    log.entryAdded is kept (the page's console and errors, when subscribed to)."""

    MAX_LOG = 200

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.log: list[str] = []

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        for _ in range(100_000):  # bounded: events in between are skipped
            message = json.loads(await self.ws.recv())
            if message.get("method") == "log.entryAdded" and len(self.log) < self.MAX_LOG:
                entry = message.get("params") or {}
                self.log.append(f"{entry.get('type')}.{entry.get('level')}: {entry.get('text')}")
            if message.get("id") == self.next_id:
                if message.get("type") == "error":
                    raise RuntimeError(
                        f"{method}: {message.get('error')}: {message.get('message')}"
                    )
                return dict(message.get("result", {}))
        raise RuntimeError(f"{method}: no answer")


async def _connect(port: int) -> Any:
    """The BiDi websocket of the Firefox on *port* (it takes 1-3 s to open)."""
    import websockets

    url = f"ws://127.0.0.1:{port}/session"
    for _ in range(300):  # up to 30 s for Firefox to open its BiDi port
        try:
            return await websockets.connect(url, max_size=None, open_timeout=2)
        except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
            await asyncio.sleep(0.1)
    raise RuntimeError("Firefox's WebDriver BiDi port never opened")


async def _drive(port: int, page: str, jobs: list[dict[str, Any]], cap_s: float) -> dict[str, Any]:
    ws = await _connect(port)
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


async def _drive_page(port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """The "page" mode (as in tests/browser/driver.py): open the test page once, screenshot it
    mid-run and at the end at every width, return its window.turncheckState."""
    from tests.browser.driver import (
        PAGE_POLL_S,
        PAGE_STATE_JS,
        page_moment,
        page_spec,
        page_viewport,
        page_width_names,
    )

    url, widths, shots, prefix, wait_s = page_spec(spec)
    names = page_width_names(widths)
    timing: dict[str, float] = {}
    screenshots: dict[str, str] = {}
    started = time.monotonic()
    ws = await _connect(port)
    async with ws:
        bidi = Bidi(ws)
        session = await bidi.call("session.new", {"capabilities": {}})
        timing["launch_s"] = time.monotonic() - started  # Firefox started, BiDi session open
        await bidi.call("session.subscribe", {"events": ["log.entryAdded"]})
        tree = await bidi.call("browsingContext.getTree", {})
        context = tree["contexts"][0]["context"]

        async def evaluate(expression: str) -> Any:
            result = await bidi.call(
                "script.evaluate",
                {"expression": expression, "target": {"context": context}, "awaitPromise": True},
            )
            if result.get("type") == "exception":
                raise RuntimeError(f"the page threw: {result.get('exceptionDetails')}")
            return result["result"].get("value")

        async def resize(width: int) -> None:
            await bidi.call(
                "browsingContext.setViewport",
                {"context": context, "viewport": page_viewport(width)},
            )

        async def state() -> Any:
            return json.loads(await evaluate(PAGE_STATE_JS))

        async def shoot(moment: str) -> None:
            t = time.monotonic()
            for width in widths:
                await resize(width)
                await evaluate("new Promise(r => requestAnimationFrame(() => r()))")
                if shots is not None:
                    shot = await bidi.call(
                        "browsingContext.captureScreenshot",
                        {"context": context, "origin": "document"},
                    )
                    path = shots / f"{prefix}-{moment}-{names[width]}.png"
                    path.write_bytes(base64.b64decode(shot["data"]))
                    screenshots[f"{moment}-{names[width]}"] = str(path)
            await resize(widths[0])
            timing[f"{moment}_screenshots_s"] = time.monotonic() - t

        await resize(widths[0])
        opened = time.monotonic()
        await bidi.call(
            "browsingContext.navigate", {"context": context, "url": url, "wait": "interactive"}
        )
        timing["load_s"] = time.monotonic() - opened
        deadline = opened + wait_s
        current: Any = None
        moment = None
        while time.monotonic() < deadline:  # bounded by wait_s
            current = await state()
            moment = page_moment(current)
            if moment is not None:
                break
            await asyncio.sleep(PAGE_POLL_S)
        if moment == "mid":
            timing["mid_at_s"] = time.monotonic() - opened
            await shoot("mid")
            while time.monotonic() < deadline:
                current = await state()
                moment = page_moment(current)
                if moment == "end":
                    break
                await asyncio.sleep(PAGE_POLL_S)
        if moment == "end":
            timing["run_s"] = time.monotonic() - opened
            await shoot("end")
            current = await state()
        with contextlib.suppress(Exception):
            await bidi.call("session.end", {})
    return {
        "state": current,
        "browser_version": session.get("capabilities", {}).get("browserVersion"),
        "screenshots": screenshots,
        "timing": timing,
        "console": bidi.log,
    }


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
        if spec.get("mode") == "page":
            out = asyncio.run(asyncio.wait_for(_drive_page(port, spec), max(1.0, timeout - 3)))
            out["timing"]["total_s"] = time.monotonic() - began
        else:
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
