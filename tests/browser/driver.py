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

OUT.json::

    {"results": {id: {"error": null | {"name", "message"}, "candidates": [...],
                      "errors": [...], "complete": bool, "elapsed_ms": float, ...}},
     "chromium": "156.0.8078.79", "getusermedia": {...}, "timing": {...}}

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
        if not isinstance(job, dict) or job.get("kind") not in ("gather", "construct"):
            raise ValueError(f"IN.json: bad job {job!r} (kind must be gather or construct)")
        if not isinstance(job.get("id"), str) or job["id"] in seen:
            raise ValueError(f"IN.json: job ids must be unique strings: {job!r}")
        seen.add(job["id"])
    return jobs


def run(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    jobs = _check_jobs(spec.get("jobs", []))
    cap_ms = float(spec.get("cap_s") or DEFAULT_CAP_S) * 1000.0
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
            context = pw.chromium.launch_persistent_context(
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
            try:
                timing["launch_s"] = time.monotonic() - t
                version = context.browser.version if context.browser else ""
                page = context.pages[0] if context.pages else context.new_page()
                t = time.monotonic()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/", timeout=10_000)
                timing["page_s"] = time.monotonic() - t
                t = time.monotonic()
                out = page.evaluate(
                    "([jobs, capMs, gumMs]) => window.runJobs(jobs, capMs, gumMs)",
                    [jobs, cap_ms, GUM_TIMEOUT_MS],
                )
                timing["jobs_s"] = time.monotonic() - t
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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.browser.driver IN.json OUT.json", file=sys.stderr)
        return 2
    in_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(in_path.read_text())
    cap_s = float(spec.get("cap_s") or DEFAULT_CAP_S)
    timeout_s = float(spec.get("timeout_s") or cap_s + 45.0)

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
