"""Gather ICE candidates with a real headless Chromium, as the Trickle ICE page does.

Run it INSIDE a lab namespace (Chromium needs a non-loopback interface, and the
namespace keeps every packet in the lab)::

    ip netns exec <ns> python -m tests.browser.driver IN.json OUT.json

IN.json::

    {"ca_pem": "/path/ca.pem" | null,   # trusted through an NSS db under a fresh HOME
     "cap_s": 8.0,                      # per gather job: stop waiting for "complete" then
     "timeout_s": 60.0,                 # optional: the whole run, browser start included
     "args": ["--flag", ...],           # optional: more Chromium switches, after ours
     "jobs": [{"id": "a", "kind": "gather" | "construct", "config": {RTCConfiguration}}]}

"construct" only runs ``new RTCPeerConnection(config)`` and reports success or
the DOMException.  "gather" runs new RTCPeerConnection(config), a data channel,
createOffer/setLocalDescription, and records every ``icecandidate`` and
``icecandidateerror`` until iceGatheringState is "complete" or cap_s is over.
All gather jobs run concurrently in one page of one browser.

"call" jobs (``{"id", "kind": "call", "caller": {RTCConfiguration}, "callee":
{RTCConfiguration}, "forward": {"caller": [types], "callee": [types]} (optional:
the candidate types each side passes on; default all), "cap_s": N (optional),
"settle_ms": N (optional, default 2000)}``) record chrome://webrtc-internals dumps.
With any call job, chrome://webrtc-internals opens first, in its own tab; the
gather and construct jobs then run in a second tab, which is closed; then each call
runs, one after the other, in a fresh tab: two RTCPeerConnections of the page
exchange offer, answer and trickled candidates directly, the caller opens a data
channel, sends a message and waits for the reply.  A call ends when both sides are
connected and the reply came, when a side's connectionState is "failed", when both
sides have finished gathering and neither left ICE state "new" for settle_ms
("stalled"), or after cap_s.  Then the driver waits (bounded) for a webrtc-internals
stats poll after the end, clicks the page's "Download the webrtc-internals dump"
button (compression off) and returns the downloaded text as ``dump``; only then are
the two connections closed and the tab with them (webrtc-internals forgets a
connection when its page goes, not on close()), so each dump holds exactly its
call's two connections.  A call's result: ``connected``, ``failed``, ``ended_by``
(connected | failed | stalled | cap), ``caller``/``callee`` (candidates, errors,
states, the selected pair from the page's own getStats), ``dump``,
``dump_filename``, ``dump_peer_connections``, ``stats_after_end``, ``timing``.

OUT.json::

    {"results": {id: {"error": null | {"name", "message"}, "candidates": [...],
                      "errors": [...], "complete": bool, "elapsed_ms": float, ...}},
     "chromium": "156.0.8078.79", "getusermedia": {...}, "timing": {...}}

"page" mode (``{"mode": "page", "url": "http://203.0.113.2:9731/test/lab", "widths":
[390, 1280], "screenshots_dir": dir | null, "screenshot_prefix": "chromium", "wait_s": 45,
"ca_pem": ..., "timeout_s": ...}``, no jobs) opens turncheck serve's test page once, at the
first width, and polls its ``window.turncheckState``: once the page runs past progress 0.3
it takes a full-page screenshot at every width (resizing the same page, so the test runs
only once), again when the page is done (or failed); OUT.json is then ``{"state":
turncheckState, "browser_version", "screenshots": {"mid-phone": path, ...}, "timing":
{"launch_s", "load_s", "mid_at_s", "run_s", ...}, "console": [...]}``.  The page needs no
getUserMedia: on a plain-http address it is no secure context, and Chromium gathers without
host candidates, as a user's browser would.

If the run goes over timeout_s, OUT.json gets ``{"results": {}, "fatal": "..."}``,
every process this driver started is killed, and it exits with code 3.

The page is served by an http.server on 127.0.0.1 (a port the kernel picks) inside
the namespace: http://127.0.0.1 is a secure context (getUserMedia works there),
about:blank and data: URLs are not.  Nothing but the standard library and
Playwright (its pip wheel's node driver; never a downloaded browser) is imported.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_ENV = "TURNCHECK_CHROMIUM"  # another Chromium binary (default /usr/bin/chromium)
DEFAULT_CHROMIUM = "/usr/bin/chromium"
DEFAULT_CAP_S = 8.0
LAUNCH_TIMEOUT_MS = 30_000
GUM_TIMEOUT_MS = 10_000
CERTUTIL_TIMEOUT = 20.0
FATAL_EXIT = 3
JOB_KINDS = ("gather", "construct", "call")
INTERNALS_URL = "chrome://webrtc-internals"
STATS_WAIT_S = 4.0  # a call's dump waits this long at most for a stats poll after its end
NO_STATS_WAIT_S = 1.5  # ... or this long when no stats came for the call at all
DRAIN_WAIT_S = 5.0  # ... and for webrtc-internals to drop the previous call's connections
DUMP_TIMEOUT_MS = 10_000
CALL_SLACK_S = 15.0  # per call job, on top of its cap: page, dump, close

# Chromium keeps one value per switch (base::CommandLine: the last one wins), and
# our --disable-features comes after Playwright's: so ours repeats the Playwright
# defaults that keep a browser from calling home, next to the one WebRTC needs here.
DISABLED_FEATURES = (
    "WebRtcHideLocalIpsWithMdns",  # host candidates as IP addresses, not <uuid>.local
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "MediaRouter",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "PaintHolding",
)

# Even with the switches below, Chromium 156 (through Debian's wrapper or not) looks
# up accounts.google.com and update.googleapis.com at start-up, and
# optimizationguide-pa.googleapis.com later (seen in the lab dnsmasq's log; they
# get NXDOMAIN there, and the lab has no route out).  These rules answer them
# inside the browser.  They act on the browser's own network stack only: WebRTC's
# STUN/TURN name lookups do not go through them (checked: a MAP rule for a STUN
# host name changes nothing), so they never skew what is compared.
QUIET_HOSTS = ("google.com", "*.google.com", "*.googleapis.com", "*.gstatic.com", "*.gvt1.com")

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--disable-features={','.join(DISABLED_FEATURES)}",
    "--force-webrtc-ip-handling-policy=default",
    "--host-resolver-rules=" + ", ".join(f"MAP {h} ~NOTFOUND" for h in QUIET_HOSTS),
)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>turncheck gather</title>
<link rel="icon" href="data:,"></head><body>
<script>
"use strict";
const sleep = ms => new Promise(r => setTimeout(r, ms));
const errorOf = e => ({name: String((e && e.name) || "Error"),
                       message: String((e && e.message) || e)});
const orNull = v => (v === undefined ? null : v);

function construct(job) {
  const t0 = performance.now();
  let error = null;
  try {
    const pc = new RTCPeerConnection(job.config);
    pc.close();
  } catch (e) {
    error = errorOf(e);
  }
  return {error, candidates: [], errors: [], complete: false,
          elapsed_ms: performance.now() - t0};
}

async function gather(job, capMs) {
  const t0 = performance.now();
  const ms = () => Math.round((performance.now() - t0) * 10) / 10;
  const out = {error: null, candidates: [], errors: [], complete: false, elapsed_ms: 0,
               end_of_candidates_ms: null, states: []};
  let pc;
  try {
    pc = new RTCPeerConnection(job.config);
  } catch (e) {
    out.error = errorOf(e);
    out.elapsed_ms = ms();
    return out;
  }
  let finish;
  const done = new Promise(r => { finish = r; });
  pc.onicecandidate = ev => {
    const c = ev.candidate;
    if (!c || !c.candidate) {
      if (out.end_of_candidates_ms === null) out.end_of_candidates_ms = ms();
      return;
    }
    out.candidates.push({
      candidate: c.candidate, type: orNull(c.type), protocol: orNull(c.protocol),
      relayProtocol: orNull(c.relayProtocol), address: orNull(c.address),
      port: orNull(c.port), relatedAddress: orNull(c.relatedAddress),
      relatedPort: orNull(c.relatedPort), tcpType: orNull(c.tcpType),
      url: orNull(c.url !== undefined ? c.url : ev.url), priority: orNull(c.priority),
      foundation: orNull(c.foundation), component: orNull(c.component),
      elapsed_ms: ms()});
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
    await sleep(0);  // let a pending end-of-candidates event through
  } catch (e) {
    out.error = errorOf(e);
  }
  out.elapsed_ms = ms();
  pc.close();
  return out;
}

// -- "call" jobs: two RTCPeerConnections of this page talk to each other ----------

let callStream = null;  // getUserMedia held for the calls (host candidates need it)

window.holdMedia = async gumMs => {
  const t0 = performance.now();
  if (callStream) return {ok: true, held: true, elapsed_ms: 0};
  try {
    callStream = await Promise.race([
      navigator.mediaDevices.getUserMedia({audio: true}),
      sleep(gumMs).then(() => { throw new Error("getUserMedia timed out"); })]);
    return {ok: true, tracks: callStream.getTracks().length,
            elapsed_ms: performance.now() - t0};
  } catch (e) {
    return Object.assign({ok: false, elapsed_ms: performance.now() - t0}, errorOf(e));
  }
};

window.releaseMedia = () => {
  if (callStream) callStream.getTracks().forEach(t => t.stop());
  callStream = null;
};

const CALL_MESSAGE = "turncheck ping";
const CALL_REPLY = "turncheck pong";
let livePeers = [];  // the peer connections of the call in progress

async function selectedPair(pc) {
  // What this side's getStats says about the selected candidate pair.
  const report = await pc.getStats();
  let transport = null;
  report.forEach(s => { if (s.type === "transport" && !transport) transport = s; });
  if (!transport || !transport.selectedCandidatePairId) return null;
  const pair = report.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const cand = id => {
    const c = report.get(id);
    return c ? {id: c.id, candidateType: orNull(c.candidateType), protocol: orNull(c.protocol),
                relayProtocol: orNull(c.relayProtocol), address: orNull(c.address),
                port: orNull(c.port), url: orNull(c.url)} : null;
  };
  return {id: pair.id, state: pair.state, nominated: orNull(pair.nominated),
          local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId),
          transport_id: transport.id};
}

window.runCall = async (job, capMs) => {
  const t0 = performance.now();
  const ms = () => Math.round((performance.now() - t0) * 10) / 10;
  const side = () => ({candidates: [], errors: [], forwarded: [], add_errors: [], states: [],
                       connection_state: null, ice_connection_state: null,
                       ice_gathering_state: null, selected: null});
  const out = {error: null, connected: false, failed: false, message_received: null,
               reply_received: null, caller: side(), callee: side(), elapsed_ms: 0,
               ended_by: "cap", started_at: Date.now(), ended_at: null};
  const forward = job.forward || {};
  let caller, callee;
  try {
    caller = new RTCPeerConnection(job.caller || {});
    callee = new RTCPeerConnection(job.callee || {});
  } catch (e) {
    out.error = errorOf(e);
    if (caller) caller.close();
    out.elapsed_ms = ms();
    out.ended_at = Date.now();
    return out;
  }
  livePeers = [caller, callee];
  let finish;
  const done = new Promise(r => { finish = r; });
  const settleMs = job.settle_ms === undefined ? 2000 : Number(job.settle_ms);
  let stallTimer = null;
  const stalled = () => [caller, callee].every(
    pc => pc.iceGatheringState === "complete" && pc.iceConnectionState === "new");
  const check = () => {
    const states = [caller.connectionState, callee.connectionState];
    if (states.includes("failed")) { out.failed = true; out.ended_by = "failed"; finish(); }
    if (out.reply_received !== null && states.every(s => s === "connected")) {
      out.connected = true; out.ended_by = "connected"; finish();
    }
    // Both sides done gathering and neither has a pair to check (no local or no
    // remote candidates): nothing more will happen.  Stop after settle_ms.
    if (settleMs >= 0 && stallTimer === null && stalled()) {
      stallTimer = setTimeout(() => {
        if (stalled()) { out.ended_by = "stalled"; finish(); }
        stallTimer = null;
      }, settleMs);
    }
  };
  const wire = (pc, other, rec, otherRemoteSet, allowed) => {
    pc.onicecandidate = ev => {
      const c = ev.candidate;
      if (!c || !c.candidate) {
        rec.states.push(["end-of-candidates", ms()]);
        return;
      }
      rec.candidates.push({candidate: c.candidate, type: orNull(c.type),
                           protocol: orNull(c.protocol), address: orNull(c.address),
                           port: orNull(c.port), relayProtocol: orNull(c.relayProtocol),
                           url: orNull(c.url), elapsed_ms: ms()});
      if (Array.isArray(allowed) && !allowed.includes(c.type)) return;
      rec.forwarded.push(c.candidate);
      const init = c.toJSON();
      otherRemoteSet.then(() => other.addIceCandidate(init)).catch(e => {
        rec.add_errors.push(errorOf(e));
      });
    };
    pc.onicecandidateerror = ev => {
      rec.errors.push({url: orNull(ev.url), errorCode: orNull(ev.errorCode),
                       errorText: orNull(ev.errorText), address: orNull(ev.address),
                       port: orNull(ev.port), elapsed_ms: ms()});
    };
    pc.onicegatheringstatechange = () => {
      rec.states.push(["gathering:" + pc.iceGatheringState, ms()]);
      check();
    };
    pc.oniceconnectionstatechange = () => {
      rec.states.push(["ice:" + pc.iceConnectionState, ms()]);
      check();
    };
    pc.onconnectionstatechange = () => {
      rec.states.push(["connection:" + pc.connectionState, ms()]);
      check();
    };
  };
  let calleeRemoteSet, callerRemoteSet;
  const calleeRemote = new Promise(r => { calleeRemoteSet = r; });
  const callerRemote = new Promise(r => { callerRemoteSet = r; });
  wire(caller, callee, out.caller, calleeRemote, forward.caller);
  wire(callee, caller, out.callee, callerRemote, forward.callee);
  // The offer and answer go over without candidate lines: candidates trickle (and
  // are filtered by job.forward).
  const bare = sdp => sdp.split("\\r\\n").filter(
    l => !l.startsWith("a=candidate:") && l !== "a=end-of-candidates").join("\\r\\n");
  callee.ondatachannel = ev => {
    const ch = ev.channel;
    ch.onmessage = m => {
      out.message_received = String(m.data);
      out.callee.states.push(["message", ms()]);
      ch.send(CALL_REPLY);
    };
  };
  try {
    const dc = caller.createDataChannel("turncheck");
    dc.onopen = () => { out.caller.states.push(["datachannel:open", ms()]); dc.send(CALL_MESSAGE); };
    dc.onmessage = m => {
      out.reply_received = String(m.data);
      out.caller.states.push(["reply", ms()]);
      check();
    };
    const offer = await caller.createOffer();
    await caller.setLocalDescription(offer);
    await callee.setRemoteDescription({type: "offer", sdp: bare(offer.sdp)});
    calleeRemoteSet();
    const answer = await callee.createAnswer();
    await callee.setLocalDescription(answer);
    await caller.setRemoteDescription({type: "answer", sdp: bare(answer.sdp)});
    callerRemoteSet();
    await Promise.race([done, sleep(capMs)]);
    if (stallTimer !== null) clearTimeout(stallTimer);
    if (out.failed) await Promise.race([sleep(500), new Promise(r => {
      // give the other side a moment to fail too
      const poll = setInterval(() => {
        if (caller.connectionState === "failed" && callee.connectionState === "failed") {
          clearInterval(poll); r();
        }
      }, 50);
      setTimeout(() => clearInterval(poll), 600);
    })]);
  } catch (e) {
    out.error = errorOf(e);
  }
  for (const [pc, rec] of [[caller, out.caller], [callee, out.callee]]) {
    rec.connection_state = pc.connectionState;
    rec.ice_connection_state = pc.iceConnectionState;
    rec.ice_gathering_state = pc.iceGatheringState;
    try { rec.selected = await selectedPair(pc); } catch (e) { rec.selected = errorOf(e); }
  }
  out.elapsed_ms = ms();
  out.ended_at = Date.now();
  return out;  // the peer connections stay open until closeCall(): the dump needs them
};

window.closeCall = () => {
  livePeers.forEach(pc => pc.close());
  const n = livePeers.length;
  livePeers = [];
  return n;
};

window.runJobs = async (jobs, capMs, gumMs) => {
  const t0 = performance.now();
  let stream = null, gum;
  try {
    // Host interfaces are enumerated only once media permission is granted.
    stream = await Promise.race([
      navigator.mediaDevices.getUserMedia({audio: true}),
      sleep(gumMs).then(() => { throw new Error("getUserMedia timed out"); })]);
    gum = {ok: true, tracks: stream.getTracks().length};
  } catch (e) {
    gum = Object.assign({ok: false}, errorOf(e));
  }
  gum.elapsed_ms = performance.now() - t0;
  const results = {};
  for (const job of jobs) {
    if (job.kind === "construct") results[job.id] = construct(job);
  }
  const gathers = jobs.filter(j => j.kind === "gather");
  const t1 = performance.now();
  const outs = await Promise.all(gathers.map(j => gather(j, capMs)));
  gathers.forEach((j, i) => { results[j.id] = outs[i]; });
  if (stream) stream.getTracks().forEach(t => t.stop());
  return {results, getusermedia: gum, secure_context: window.isSecureContext,
          user_agent: navigator.userAgent, gather_ms: performance.now() - t1};
};
</script></body></html>
"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode() if self.path in ("/", "/index.html") else b"not found\n"
        self.send_response(200 if self.path in ("/", "/index.html") else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # no access log
        pass


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid → (parent pid, command line) of every process (read from /proc)."""
    found: dict[int, tuple[int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            found[int(entry)] = (int(fields[1]), cmdline)
    return found


def _ours(root: int, workdir: Path) -> list[int]:
    """Pids of the processes this driver started: every process below *root*,
    and Chromium's crashpad handlers, which daemonize (so they are nobody's
    child) but name our unique *workdir* in their command line."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = [root]
    while todo and len(found) < 10_000:  # bounded by the process table anyway
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    marker = os.fsencode(str(workdir))
    found += [pid for pid, (_, cmd) in procs.items() if marker in cmd and pid not in found]
    return [pid for pid in found if pid != root]


def _kill_ours(workdir: Path) -> None:
    for _ in range(3):  # a second pass catches what forked while we looked
        pids = _ours(os.getpid(), workdir)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _trust_ca(home: Path, ca_pem: str) -> None:
    """An NSS db under *home* with the test CA trusted for TLS servers."""
    certutil = shutil.which("certutil")
    if certutil is None:
        raise RuntimeError("certutil not found (apt-get install libnss3-tools)")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    for argv in (
        [certutil, "-N", "-d", f"sql:{db}", "--empty-password"],
        [certutil, "-A", "-d", f"sql:{db}", "-n", "turncheck-test-ca", "-t", "C,,", "-i", ca_pem],
    ):
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CERTUTIL_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")


def _check_jobs(jobs: Any) -> list[dict[str, Any]]:
    if not isinstance(jobs, list):
        raise ValueError("IN.json: 'jobs' must be a list")
    seen: set[str] = set()
    for job in jobs:
        if not isinstance(job, dict) or job.get("kind") not in JOB_KINDS:
            raise ValueError(f"IN.json: bad job {job!r} (kind must be one of {JOB_KINDS})")
        if not isinstance(job.get("id"), str) or job["id"] in seen:
            raise ValueError(f"IN.json: job ids must be unique strings: {job!r}")
        seen.add(job["id"])
    return jobs


# -- "call" jobs and chrome://webrtc-internals dumps ---------------------------------

# The webrtc-internals page (Chromium 156: chrome://webrtc-internals/webrtc_internals.js
# and dump_creator.js, ES modules) keeps one PeerConnectionRecord per connection in
# dump_creator.js's ``peerConnectionDataStore``, also on ``window`` "since tests
# access these from C++".  Its "Download the webrtc-internals dump" button
# (#dump-click-target) runs DumpCreator.onDownloadInternals_, which serialises
# {cpuPerformance, deviceMemory, hardwareConcurrency, timestamp, getUserMedia,
# PeerConnections, UserAgent, UserAgentData} with JSON.stringify(dump, null, 1) and
# downloads it, gzipped when #dump-checkbox is checked (the default).  We untick the
# box and click the button: the dump is the page's own file, byte for byte.

_LAST_STATS_JS = """() => Object.entries(window.peerConnectionDataStore || {}).map(([id, r]) => {
  let last = 0;
  for (const series of Object.values((r.record_ && r.record_.stats) || {})) {
    const points = series.dataPoints_ || [];
    if (points.length) last = Math.max(last, +points[points.length - 1].time);
  }
  return [id, last];
})"""

_CLICK_DUMP_JS = """() => {
  const box = document.getElementById("dump-checkbox");
  if (box) box.checked = false;  // a .txt, not a .gz
  document.getElementById("dump-click-target").click();
}"""


def _open_internals(internals: Any, errors: list[str]) -> None:
    internals.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    internals.on(
        "console",
        lambda msg: (
            errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    internals.goto(INTERNALS_URL, timeout=10_000)
    internals.wait_for_function(
        "() => window.peerConnectionDataStore !== undefined"
        " && document.getElementById('dump-click-target') !== null",
        timeout=10_000,
    )


def _store_ids(internals: Any) -> list[str]:
    return list(internals.evaluate("() => Object.keys(window.peerConnectionDataStore)"))


def _wait_for(check: Any, seconds: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / step_s) + 2):  # bounded by count and time
        if check():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(step_s)
    return bool(check())


def download_dump(internals: Any) -> tuple[str, str]:
    """Click the webrtc-internals download button; (file name, dump text)."""
    with internals.expect_download(timeout=DUMP_TIMEOUT_MS) as info:
        internals.evaluate(_CLICK_DUMP_JS)
    download = info.value
    path = download.path()
    return download.suggested_filename, Path(path).read_text(encoding="utf-8")


def _run_call(
    context: Any, internals: Any, url: str, job: dict[str, Any], cap_ms: float
) -> dict[str, Any]:
    """One "call" job in a fresh tab; the dump is taken while its two peer
    connections are still open, then the tab is closed (which removes them from
    webrtc-internals: closing a connection alone does not)."""
    timing: dict[str, float] = {}
    t = time.monotonic()
    drained = _wait_for(lambda: not _store_ids(internals), DRAIN_WAIT_S)
    timing["drain_s"] = time.monotonic() - t
    page = context.new_page()
    try:
        page.goto(url, timeout=10_000)
        gum = page.evaluate("(gumMs) => window.holdMedia(gumMs)", GUM_TIMEOUT_MS)
        t = time.monotonic()
        result = page.evaluate("([job, capMs]) => window.runCall(job, capMs)", [job, cap_ms])
        timing["call_s"] = time.monotonic() - t
        t = time.monotonic()
        ended = float(result.get("ended_at") or 0)
        ids: list[str] = []
        waiting_since = time.monotonic()
        newest_before = max((ts for _, ts in internals.evaluate(_LAST_STATS_JS)), default=0)

        def stats_after_end() -> bool:
            nonlocal ids
            last = internals.evaluate(_LAST_STATS_JS)
            ids = [i for i, _ in last]
            if bool(last) and all(ts >= ended for _, ts in last):
                return True
            # Chromium 156 feeds webrtc-internals getStats (about once a second) only
            # while a connection of the page is checking or connected: a call that
            # never left "new", or has failed, may get no more.
            newest = max((ts for _, ts in last), default=0)
            return newest == newest_before and time.monotonic() - waiting_since > NO_STATS_WAIT_S

        _wait_for(stats_after_end, STATS_WAIT_S)
        last = internals.evaluate(_LAST_STATS_JS)
        result["stats_after_end"] = bool(last) and all(ts >= ended for _, ts in last)
        timing["stats_wait_s"] = time.monotonic() - t
        t = time.monotonic()
        result["dump_filename"], result["dump"] = download_dump(internals)
        timing["dump_s"] = time.monotonic() - t
        try:
            result["dump_peer_connections"] = list(json.loads(result["dump"])["PeerConnections"])
        except (ValueError, KeyError, TypeError):
            result["dump_peer_connections"] = None  # not a dump: the caller will see
        result["store_peer_connections"] = ids
        page.evaluate("() => window.closeCall()")
        page.evaluate("() => window.releaseMedia()")
    finally:
        page.close()
    result["getusermedia"] = gum
    result["internals_drained_before"] = drained
    result["timing"] = timing
    return result


def _launch(pw: Any, spec: dict[str, Any], workdir: Path) -> Any:
    """Chromium with a fresh profile and HOME under *workdir* (the test CA trusted when
    the spec names one), our flags, and the spec's extra switches: a persistent context."""
    executable = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    home = workdir / "home"
    profile = workdir / "profile"
    home.mkdir()
    profile.mkdir()
    if spec.get("ca_pem"):
        _trust_ca(home, str(spec["ca_pem"]))
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    return pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=executable,
        headless=True,
        args=[*CHROMIUM_FLAGS, *(str(a) for a in spec.get("args") or ())],
        env=env,
        timeout=LAUNCH_TIMEOUT_MS,
        handle_sigint=False,
        handle_sigterm=False,
        handle_sighup=False,
    )


def run(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if spec.get("mode") == "page":
        return run_page(spec, workdir)
    started = time.monotonic()
    jobs = _check_jobs(spec.get("jobs", []))
    calls = [j for j in jobs if j["kind"] == "call"]
    cap_ms = float(spec.get("cap_s") or DEFAULT_CAP_S) * 1000.0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    timing: dict[str, float] = {}
    try:
        with sync_playwright() as pw:
            timing["playwright_s"] = time.monotonic() - started
            t = time.monotonic()
            context = _launch(pw, spec, workdir)
            try:
                timing["launch_s"] = time.monotonic() - t
                version = context.browser.version if context.browser else ""
                page = context.pages[0] if context.pages else context.new_page()
                internals = None
                internals_errors: list[str] = []
                if calls:
                    # chrome://webrtc-internals first, in its own tab, so that it
                    # records every peer connection from its start.
                    internals, page = page, context.new_page()
                    t = time.monotonic()
                    _open_internals(internals, internals_errors)
                    timing["internals_s"] = time.monotonic() - t
                t = time.monotonic()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/", timeout=10_000)
                timing["page_s"] = time.monotonic() - t
                t = time.monotonic()
                out = page.evaluate(
                    "([jobs, capMs, gumMs]) => window.runJobs(jobs, capMs, gumMs)",
                    [[j for j in jobs if j["kind"] != "call"], cap_ms, GUM_TIMEOUT_MS],
                )
                timing["jobs_s"] = time.monotonic() - t
                if calls:
                    page.close()  # its peer connections leave webrtc-internals with it
                    url = f"http://127.0.0.1:{server.server_address[1]}/"
                    t = time.monotonic()
                    for job in calls:
                        job_cap_ms = float(job.get("cap_s") or cap_ms / 1000.0) * 1000.0
                        seen = len(internals_errors)
                        out["results"][job["id"]] = result = _run_call(
                            context, internals, url, job, job_cap_ms
                        )
                        result["internals_errors"] = internals_errors[seen:]
                    timing["calls_s"] = time.monotonic() - t
            finally:
                t = time.monotonic()
                context.close()
                timing["close_s"] = time.monotonic() - t
    finally:
        server.shutdown()
        server.server_close()
    timing["total_s"] = time.monotonic() - started
    out["chromium"] = version
    out["timing"] = timing
    return out


# -- "page" mode: open turncheck serve's test page and watch it run ---------------------

# Shared with tests/browser/firefox_driver.py: when to take which screenshot, and how.
PAGE_MID_PROGRESS = 0.3  # the mid-run screenshots: phase "running" and progress at least this
PAGE_HEIGHTS = {"phone": 844, "desktop": 800}  # viewport heights by width class
PAGE_POLL_S = 0.1
PAGE_WAIT_S = 45.0  # default bound for the page to reach "done" or "error"
PAGE_STATE_JS = "JSON.stringify(window.turncheckState === undefined ? null : window.turncheckState)"


def page_width_names(widths: list[int]) -> dict[int, str]:
    """390 → "phone", 1280 → "desktop" (below 768 px is a phone); the width itself when
    two widths fall in one class."""
    names = {w: "phone" if w < 768 else "desktop" for w in widths}
    if len(set(names.values())) < len(names):
        names = {w: f"w{w}" for w in widths}
    return names


def page_viewport(width: int) -> dict[str, int]:
    return {"width": width, "height": PAGE_HEIGHTS["phone" if width < 768 else "desktop"]}


def page_moment(state: Any) -> str | None:
    """The moment for screenshots: "end" once the page is done (or failed), "mid" while
    it runs past PAGE_MID_PROGRESS, else None."""
    if not isinstance(state, dict):
        return None
    if state.get("phase") in ("done", "error"):
        return "end"
    if state.get("phase") == "running" and float(state.get("progress") or 0) >= PAGE_MID_PROGRESS:
        return "mid"
    return None


def page_spec(spec: dict[str, Any]) -> tuple[str, list[int], Path | None, str, float]:
    """(url, widths, screenshots dir or None, file name prefix, wait bound) of a page spec."""
    url = spec.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"IN.json: page mode needs an http(s) 'url', not {url!r}")
    widths = [int(w) for w in spec.get("widths") or (390, 1280)]
    shots = Path(spec["screenshots_dir"]) if spec.get("screenshots_dir") else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    prefix = str(spec.get("screenshot_prefix") or "page")
    return url, widths, shots, prefix, float(spec.get("wait_s") or PAGE_WAIT_S)


def run_page(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Open the test page once at the first width, screenshot it mid-run and at the end
    at every width (resizing the one page: the test runs once), and return its
    ``window.turncheckState``."""
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    url, widths, shots, prefix, wait_s = page_spec(spec)
    names = page_width_names(widths)
    timing: dict[str, float] = {}
    console: list[str] = []
    screenshots: dict[str, str] = {}
    with sync_playwright() as pw:
        t = time.monotonic()
        context = _launch(pw, spec, workdir)
        try:
            timing["launch_s"] = time.monotonic() - t
            version = context.browser.version if context.browser else ""
            page = context.pages[0] if context.pages else context.new_page()
            page.on("console", lambda msg: console.append(f"console.{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            page.set_viewport_size(page_viewport(widths[0]))

            def state() -> Any:
                return json.loads(page.evaluate(f"() => {PAGE_STATE_JS}"))

            def shoot(moment: str) -> None:
                t = time.monotonic()
                for width in widths:
                    page.set_viewport_size(page_viewport(width))
                    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
                    if shots is not None:
                        path = shots / f"{prefix}-{moment}-{names[width]}.png"
                        page.screenshot(path=str(path), full_page=True, timeout=10_000)
                        screenshots[f"{moment}-{names[width]}"] = str(path)
                page.set_viewport_size(page_viewport(widths[0]))
                timing[f"{moment}_screenshots_s"] = time.monotonic() - t

            opened = time.monotonic()
            page.goto(url, wait_until="domcontentloaded", timeout=15_000)
            timing["load_s"] = time.monotonic() - opened
            deadline = opened + wait_s
            current: Any = None
            moment = None
            while time.monotonic() < deadline:  # bounded by wait_s
                current = state()
                moment = page_moment(current)
                if moment is not None:
                    break
                time.sleep(PAGE_POLL_S)
            if moment == "mid":
                timing["mid_at_s"] = time.monotonic() - opened
                shoot("mid")
                while time.monotonic() < deadline:
                    current = state()
                    moment = page_moment(current)
                    if moment == "end":
                        break
                    time.sleep(PAGE_POLL_S)
            if moment == "end":
                timing["run_s"] = time.monotonic() - opened
                shoot("end")
                current = state()
        finally:
            t = time.monotonic()
            context.close()
            timing["close_s"] = time.monotonic() - t
    timing["total_s"] = time.monotonic() - started
    return {
        "state": current,
        "browser_version": version,
        "screenshots": screenshots,
        "timing": timing,
        "console": console,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.browser.driver IN.json OUT.json", file=sys.stderr)
        return 2
    in_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(in_path.read_text())
    cap_s = float(spec.get("cap_s") or DEFAULT_CAP_S)
    call_s = sum(
        float(j.get("cap_s") or cap_s) + CALL_SLACK_S
        for j in spec.get("jobs") or ()
        if isinstance(j, dict) and j.get("kind") == "call"
    )
    if spec.get("mode") == "page":
        call_s = float(spec.get("wait_s") or PAGE_WAIT_S)
    timeout_s = float(spec.get("timeout_s") or cap_s + 45.0 + call_s)

    workdir = Path(tempfile.mkdtemp(prefix="turncheck-chromium-"))

    def give_up() -> None:
        # Runs in a timer thread: the Playwright call in the main thread may be
        # stuck, so kill what we started (node driver, Chromium) and leave at once.
        with contextlib.suppress(Exception):
            _write_json(
                out_path, {"results": {}, "fatal": f"driver timed out after {timeout_s:.0f} s"}
            )
        _kill_ours(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(FATAL_EXIT)

    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        out = run(spec, workdir)
    except Exception as exc:
        _write_json(out_path, {"results": {}, "fatal": f"{type(exc).__name__}: {exc}"})
        print(f"driver: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        watchdog.cancel()
        _kill_ours(workdir)  # nothing should be left; make sure
        shutil.rmtree(workdir, ignore_errors=True)
    _write_json(out_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
