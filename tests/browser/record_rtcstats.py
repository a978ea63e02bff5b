"""Record real rtcstats dumps of calls made in the netns lab: Jitsi's rtcstats client in
headless Chromium, written line by line as jitsi/rtcstats-server writes its dump files.

::

    sudo .venv/bin/python -m tests.browser.record_rtcstats OUTDIR [--bundle FILE]

The client is the real one: ``@jitsi/rtcstats`` 9.7.1 from the npm registry (MIT; the
same code as github.com/jitsi/rtcstats at 9bf0318, ``rtcstats.js`` and ``trace-ws.js``),
bundled with esbuild into one script (``npm`` and ``node`` are needed for that, once;
``--bundle`` takes a bundle built before).  It wraps RTCPeerConnection and
getUserMedia, polls getStats every second (delta-compressed), obfuscates host and srflx
addresses, and sends every entry over a WebSocket as rtcstats-server's protocol
"3.1_STANDARD" wants it.

The server side is rtcstats-server's (github.com/jitsi/rtcstats-server at 7d87ae2,
src/RTCStatsServer.js and src/demux.js) redone here in a few lines: a WebSocket server
on 127.0.0.1 of the client namespace answers ``{"type": "sn", "body": {"value": 0,
"state": "initial"}}``, opens one dump per statsSessionId whose first line is
``["connectionInfo", null, {path, origin, url, userAgent, clientProtocol, statsFormat,
clientType}, ms]`` (the User-Agent from the upgrade request's header), then writes each
"identity" request as JSON text of its data and each "stats-entry" request's data as
it came (JSON text of ``[method, pcId, value, ms, seq]``), one per line.

Each case of tests/browser/record_dumps.py (same lab: NAT, coturn in the server
namespace) runs in a fresh tab of the driver's page (tests/browser/driver.py's
``runCall``: two RTCPeerConnections of the page call each other), so each case is one
rtcstats session and one dump, OUTDIR/<case>.rtcstats.  After the call the page waits
for one more stats poll, closes both connections (rtcstats traces ``close``) and
leaves (trace.close(): WebSocket close 3001).  OUTDIR/manifest.json says what
the page saw of each call.

rtcstats keeps the iceServers' ``username`` (it deletes only ``credential``): the
dumps hold the lab's test user name, never a password (checked).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed

from tests.browser import driver, record_dumps
from tests.browser.record_dumps import SecretInDump

__all__ = [
    "NPM_PACKAGES",
    "SECRETS",
    "SecretInDump",
    "build_bundle",
    "check_secrets",
    "main",
    "record",
]

# Exact versions: what the recorded dumps came from (npm resolves @jitsi/rtcstats'
# "^2.2.0" of js-utils to this one).
NPM_PACKAGES = {"@jitsi/rtcstats": "9.7.1", "esbuild": "0.28.2"}
NPM_OVERRIDES = {"@jitsi/js-utils": "2.8.2", "sdp": "3.2.2", "uuid": "8.3.2"}
PROTOCOL = "3.1_STANDARD"  # trace-ws.js: `${PROTOCOL_ITERATION}_STANDARD`
CONFERENCE_LEAVE_CODE = 3001  # constants.js: the close code of trace.close()
POLL_INTERVAL_MS = 1000
AFTER_CALL_S = 1.6  # one more getStats poll after the call ended
NPM_TIMEOUT_S = 300.0
DUMP_SUFFIX = ".rtcstats"

# The entry of the bundle: rtcstats-server's endpoint comes from the page.
ENTRY_JS = """\
import rtcstatsInit from '@jitsi/rtcstats/rtcstats';
import traceInit from '@jitsi/rtcstats/trace-ws';

const cfg = window.TURNCHECK_RTCSTATS;
const trace = traceInit({
  endpoint: cfg.endpoint,
  meetingFqn: cfg.meetingFqn,
  onCloseCallback: e => { cfg.closed = e; },
  useLegacy: false,
  obfuscate: true,
});
rtcstatsInit(trace, {pollInterval: cfg.pollInterval, useLegacy: false, prefixesToWrap: ['']});
trace.connect(false);
trace.identity('identity', null, cfg.identity);
window.rtcstatsTrace = trace;
"""

# Strings that must never be in a dump: the lab's TURN passwords, and the key rtcstats
# deletes (a "credential" key would mean it did not).
SECRETS = (record_dumps.PASSWORD, record_dumps.WRONG_PASSWORD, '"credential"')


def check_secrets(name: str, text: str) -> None:
    """SecretInDump when *text* holds a TURN password of the lab."""
    for secret in SECRETS:
        if secret in text:
            raise SecretInDump(f"{name}: the dump contains {secret!r}")


# -- the bundle ---------------------------------------------------------------------


def build_bundle(workdir: Path) -> Path:
    """npm-install the pinned client and esbuild into *workdir*, bundle; the bundle's path.
    RuntimeError when npm or node is missing or a step fails."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("npm and node are needed to build the rtcstats bundle")
    workdir.mkdir(parents=True, exist_ok=True)
    package = {
        "name": "turncheck-rtcstats-recorder",
        "private": True,
        "dependencies": dict(NPM_PACKAGES),
        "overrides": dict(NPM_OVERRIDES),
    }
    (workdir / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    (workdir / "entry.js").write_text(ENTRY_JS)
    _run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts"], workdir)
    bundle = workdir / "rtcstats-bundle.js"
    esbuild = workdir / "node_modules" / ".bin" / "esbuild"
    detection = workdir / "node_modules/@jitsi/js-utils/dist/browser-detection/index.js"
    _run(
        [
            str(esbuild),
            "entry.js",
            "--bundle",
            "--format=iife",
            # js-utils 2.8's "exports" map forbids the directory import rtcstats.js makes
            # (jitsi-meet's webpack resolves it); name the file it means.
            f"--alias:@jitsi/js-utils/browser-detection={detection}",
            f"--outfile={bundle}",
        ],
        workdir,
    )
    return bundle


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout)[-2000:]}")


# -- rtcstats-server's dump writer, in the namespace ----------------------------------


@dataclass
class Session:
    """One statsSessionId: the lines of its dump file."""

    lines: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    close_code: int | None = None


class DumpServer:
    """rtcstats-server's WebSocket side and dump writer (src/RTCStatsServer.js
    wsConnectionHandler, src/demux.js DemuxSink) on 127.0.0.1, port picked by the kernel."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.sessions: dict[str, Session] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0, subprotocols=[PROTOCOL])  # type: ignore[list-item]
        self.port = int(self._server.socket.getsockname()[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    def _handle(self, connection: Any) -> None:
        request = connection.request
        headers = request.headers
        user_agent = headers.get("User-Agent", "")
        origin = headers.get("Origin", "")
        path = request.path
        details = {
            "path": path,
            "origin": origin,
            "url": origin + path,
            "userAgent": user_agent,
            "clientProtocol": connection.subprotocol or "",
            "statsFormat": _stats_format(user_agent),
            "clientType": "RTCSTATS_CLIENT"
            if PROTOCOL in (connection.subprotocol or "")
            else "UNSUPPORTED_CLIENT",
        }
        # Let the client send (trace-ws.js waits for this before it flushes its buffer).
        connection.send(json.dumps({"type": "sn", "body": {"value": 0, "state": "initial"}}))
        mine: set[str] = set()
        try:
            for message in connection:
                request_obj = json.loads(message)
                session_id = request_obj.get("statsSessionId")
                kind = request_obj.get("type")
                if not isinstance(session_id, str) or not kind:
                    self.errors.append(f"bad request: {str(message)[:200]}")
                    continue
                with self._lock:
                    session = self.sessions.get(session_id)
                    if session is None:  # demux.js _sinkCreate: the header line first
                        session = self.sessions[session_id] = Session()
                        session.lines.append(
                            _js_json(["connectionInfo", None, details, int(time.time() * 1000)])
                        )
                mine.add(session_id)
                if kind == "identity":  # sent as an object: written as JSON text
                    session.lines.append(_js_json(request_obj.get("data")))
                elif kind == "stats-entry":  # sent as JSON text already: written as it came
                    session.lines.append(str(request_obj.get("data")))
                elif kind == "close":
                    break
                # keepalive: nothing to write
        except ConnectionClosed as exc:
            # trace.close() closes with 3001 (CONFERENCE_LEAVE_CODE): the session's end.
            if exc.rcvd is None or exc.rcvd.code != CONFERENCE_LEAVE_CODE:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # the dump ends there
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            code = getattr(connection, "close_code", None)
            for session_id in mine:
                self.sessions[session_id].close_code = code
                self.sessions[session_id].closed.set()


def _js_json(value: Any) -> str:
    """JSON text as JavaScript's JSON.stringify writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _stats_format(user_agent: str) -> str:
    """rtcstats-server's getStatsFormat (src/utils/stats-detection.js), for the browsers
    this recorder runs."""
    if "Firefox/" in user_agent:
        return "firefox"
    if "Chrome/" in user_agent:
        return "chrome_standard"
    if "Safari/" in user_agent:
        return "safari"
    return "unsupported"


# -- the in-namespace driver ----------------------------------------------------------


def _page(bundle_url: str, endpoint: str, case: str) -> str:
    from tests.browser.driver import PAGE

    config = {
        "endpoint": endpoint,
        "meetingFqn": f"turncheck-lab/{case}",
        "pollInterval": POLL_INTERVAL_MS,
        "identity": {
            "applicationName": "turncheck record_rtcstats",
            "confName": case,
            "displayName": "lab",
        },
    }
    head = (
        f"<script>window.TURNCHECK_RTCSTATS = {json.dumps(config)};</script>\n"
        f'<script src="{bundle_url}"></script>\n<script>'
    )
    return PAGE.replace("<script>", head, 1)


def drive(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run every call of *spec* in Chromium with the rtcstats client; each call's dump."""
    from playwright.sync_api import sync_playwright

    bundle = Path(spec["bundle"]).read_bytes()
    calls = list(spec["calls"])
    dumps = DumpServer()
    endpoint = f"ws://127.0.0.1:{dumps.port}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/rtcstats-bundle.js":
                body, kind = bundle, "text/javascript"
            elif parts.path == "/":
                case = parse_qs(parts.query).get("case", ["call"])[0]
                body = _page("/rtcstats-bundle.js", endpoint, case).encode()
                kind = "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    home, profile = workdir / "home", workdir / "profile"
    home.mkdir()
    profile.mkdir()
    if spec.get("ca_pem"):
        driver._trust_ca(home, str(spec["ca_pem"]))
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    results: dict[str, Any] = {}
    version = ""
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=os.environ.get(driver.CHROMIUM_ENV) or driver.DEFAULT_CHROMIUM,
                headless=True,
                args=list(driver.CHROMIUM_FLAGS),
                env=env,
                timeout=driver.LAUNCH_TIMEOUT_MS,
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
            )
            try:
                version = context.browser.version if context.browser else ""
                for job in calls:
                    results[job["id"]] = _call(context, server, dumps, job)
            finally:
                context.close()
    finally:
        server.shutdown()
        server.server_close()
        dumps.close()
    return {"results": results, "chromium": version, "server_errors": dumps.errors}


def _call(context: Any, server: Any, dumps: DumpServer, job: dict[str, Any]) -> dict[str, Any]:
    before = set(dumps.sessions)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/?case={job['id']}", timeout=10_000)
        page.wait_for_function("() => window.rtcstatsTrace !== undefined", timeout=10_000)
        gum = page.evaluate("(ms) => window.holdMedia(ms)", 10_000)
        result = page.evaluate(
            "([job, capMs]) => window.runCall(job, capMs)", [job, float(job["cap_s"]) * 1000]
        )
        time.sleep(AFTER_CALL_S)  # rtcstats polls getStats every second
        page.evaluate("() => window.closeCall()")
        page.evaluate("() => window.releaseMedia()")
        time.sleep(0.3)  # the close and state-change entries go out
        page.evaluate("() => window.rtcstatsTrace.close()")
    finally:
        page.close()
    new = [sid for sid in dumps.sessions if sid not in before]
    if len(new) != 1:
        raise RuntimeError(f"{job['id']}: expected one rtcstats session, got {new}")
    session = dumps.sessions[new[0]]
    session.closed.wait(5.0)
    result["getusermedia"] = gum
    result["page_errors"] = errors
    result["stats_session_id"] = new[0]
    result["close_code"] = session.close_code
    result["dump"] = "".join(line + "\n" for line in session.lines)
    return result


def _driver_main(in_path: Path, out_path: Path) -> int:
    spec = json.loads(in_path.read_text())
    workdir = Path(tempfile.mkdtemp(prefix="turncheck-rtcstats-"))
    timeout_s = float(spec.get("timeout_s") or 120.0)

    def give_up() -> None:
        with contextlib.suppress(Exception):
            out_path.write_text(
                json.dumps({"results": {}, "fatal": f"timed out after {timeout_s:.0f} s"})
            )
        driver._kill_ours(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(3)

    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        out = drive(spec, workdir)
    except Exception as exc:
        out_path.write_text(json.dumps({"results": {}, "fatal": f"{type(exc).__name__}: {exc}"}))
        return 1
    finally:
        watchdog.cancel()
        driver._kill_ours(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    out_path.write_text(json.dumps(out))
    return 0


# -- the recorder, as root outside the lab --------------------------------------------


@contextlib.contextmanager
def _bundle_of(bundle: Path | None, workdir: Path) -> Iterator[Path]:
    yield bundle if bundle is not None else build_bundle(workdir / "npm")


def record(
    outdir: Path,
    *,
    ca: Any = None,
    workdir: Path | None = None,
    bundle: Path | None = None,
    cases: tuple[Any, ...] | None = None,
) -> dict[str, Any]:
    """Record each case's rtcstats dump to *outdir*/<case>.rtcstats and a
    manifest.json; return the manifest.  Needs root (and npm, without *bundle*)."""
    from tests.browser.chromium import _run_driver

    if ca is None:
        import trustme

        ca = trustme.CA()
    if cases is None:
        cases = record_dumps.CASES
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rtcstats-lab-")))
        built = stack.enter_context(_bundle_of(bundle, workdir))
        shutil.copy(built, workdir / "rtcstats-bundle.js")
        bundle_sha256 = hashlib.sha256(built.read_bytes()).hexdigest()
        lab = stack.enter_context(record_dumps.dump_lab(workdir / "lab", ca))
        calls = record_dumps.calls(cases)
        timeout = 40.0 + sum(c.cap_s + 10.0 for c in cases)
        spec = {
            "bundle": str(workdir / "rtcstats-bundle.js"),
            "ca_pem": str(lab.ca_file),
            "calls": calls,
            "timeout_s": timeout - 5.0,
        }
        out, _ = _run_driver(
            lab.lab, "tests.browser.record_rtcstats", "rtcstats", spec, timeout, None
        )
    manifest: dict[str, Any] = {
        "chromium": out.get("chromium"),
        "client": {
            "npm": NPM_PACKAGES,
            "overrides": NPM_OVERRIDES,
            "protocol": PROTOCOL,
            "bundle_sha256": bundle_sha256,
        },
        "lab": {
            "server": record_dumps.SERVER,
            "blocked_relay": record_dumps.BLOCKED_RELAY,
            "dead": record_dumps.DEAD,
        },
        "server_errors": out.get("server_errors"),
        "cases": {},
    }
    texts: dict[str, str] = {}
    for case in cases:
        result = out["results"][case.name]
        if result.get("error"):
            raise RuntimeError(f"{case.name}: the call did not run: {result['error']}")
        text = result.get("dump") or ""
        for number, line in enumerate(text.splitlines(), 1):
            json.loads(line)  # one JSON value a line, or the recording is broken
            if number > 1 and not line.startswith("["):
                raise RuntimeError(f"{case.name}:{number}: not a JSON array")
        check_secrets(case.name, text)
        texts[case.name] = text
        manifest["cases"][case.name] = {
            "file": f"{case.name}{DUMP_SUFFIX}",
            "expect": case.expect,
            "connected": bool(result.get("connected")),
            "ended_by": result.get("ended_by"),
            "close_code": result.get("close_code"),
            "page_errors": result.get("page_errors"),
            "caller": record_dumps._side(result["caller"]),
            "callee": record_dumps._side(result["callee"]),
        }
    for name, text in texts.items():
        (outdir / f"{name}{DUMP_SUFFIX}").write_text(text, encoding="utf-8")
    manifest["timing"] = {"total_s": round(time.monotonic() - started, 1)}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0].endswith(".json") and argv[1].endswith(".json"):
        return _driver_main(Path(argv[0]), Path(argv[1]))  # inside the lab namespace
    bundle = None
    if len(argv) == 3 and argv[1] == "--bundle":
        bundle = Path(argv[2])
        argv = argv[:1]
    if len(argv) != 1 or argv[0].startswith("-"):
        print(
            "usage: python -m tests.browser.record_rtcstats OUTDIR [--bundle FILE]   (as root)",
            file=sys.stderr,
        )
        return 2
    if os.geteuid() != 0:
        print("record_rtcstats: the netns lab needs root", file=sys.stderr)
        return 2
    manifest = record(Path(argv[0]), bundle=bundle)
    for name, case in manifest["cases"].items():
        sides = []
        for role in ("caller", "callee"):
            side = case[role]
            sel = side["selected"]
            pair = (
                f"{sel['local']['candidateType']}->{sel['remote']['candidateType']}" if sel else "-"
            )
            sides.append(f"{role} {side['connection_state']}/{side['ice_connection_state']} {pair}")
        print(f"{name:24} {case['ended_by']:9} " + "; ".join(sides))
    print(f"timing: {json.dumps(manifest['timing'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
