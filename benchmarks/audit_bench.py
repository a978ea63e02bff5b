"""turncheck audit beside the turnutils_uclient runs that cover the same capabilities, same coturn.

Issue 22, "Side by side".  One coturn on loopback: 127.0.0.1 and ::1 (so IPv6 relays exist), TLS
with a trustme CA, alice:s3cret, allow-loopback-peers, mobility; and coturn's UDP echo
``turnutils_peer -p PORT -L 127.0.0.1 -L ::1`` as the relay target uclient needs.  Each round:

* ``turncheck audit turn:127.0.0.1:P turns:localhost:TP?transport=tcp --ca-file CA --json``,
  credentials from TURNCHECK_USERNAME / TURNCHECK_CREDENTIAL: every check at once;
* then one turnutils_uclient invocation per capability (CAPABILITIES below: the flags, and why
  they cover it), one after the other as a user of the turnutils runs them, each bounded by
  --timeout.  Common to all: ``-v`` (its success and error lines are what this bench reads),
  ``-n 1 -m 1`` (one message per client), ``-u alice -w s3cret`` (uclient reads no credentials
  from the environment), ``-L 127.0.0.X``: a local address of its own per run, so the probe
  allocation uclient never deletes (it lives 777 s) keeps its 5-tuple away from later runs and
  from the audit's sockets (a reused 5-tuple is a 437).

uclient's fixed waits (coturn 4.6.1 src/apps/uclient/uclient.c and startuclient.c):

* its first packet is due 1 s + random() % 5000 ms after connecting (srandom from the clock):
  1 to 6 s per run, 3.5 s on average, whatever the server does;
* 100 ms of idle event loop per client while connecting (run_events(1) in start_mclient), and
  usleep(234 us) per client, usleep(500 us) per socket;
* -M: usleep(10 ms) before it resends its Refresh from the new socket; here it then drops one
  answer ("Received wrong response method") and waits 500 ms (wait_fd's first cycle) to send the
  Refresh again: +0.5 s per allocation, its probe's included;
* a lost packet: STOPPING_TIME (10 s) before it stops; a 437: sleep(1), then a new socket;
* -T: up to STARTING_TCP_RELAY_TIME (30 s) for the data connections, in turns of 1 s;
* an unanswered UDP request is resent after 0.5, 1, 2 ... 32 s (7 sends, about 63 s in all); a
  DTLS handshake waits up to 30 s.

So its seconds below are mostly waiting: "to connected" is the part before its "Total connect
time" line (every Allocate, Refresh, ChannelBind, CreatePermission, CONNECT done), the rest is
the send wait and the one message.  The audit has no waits of its own: each check has a deadline.

Run: ``python benchmarks/audit_bench.py [--rounds N] [--json]`` from the repo root.  Loopback
only: every address used is in 127.0.0.0/8 or ::1.  Exit 0: every run as expected; 1: some
uclient run or audit finding was not; 2: the bench could not run (a tool missing, no server).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

USER, PASSWORD = "alice", "s3cret"
ORIGIN = "https://turncheck.invalid"
DEFAULT_ROUNDS, MAX_ROUNDS = 3, 10
UCLIENT_TIMEOUT = 30.0  # per uclient run (--timeout); its own UDP retries alone take ~63 s
AUDIT_TIMEOUT = 120.0
# Relay ports per relay address: the audit's quota probe holds 20 at once, and every uclient run
# leaves its probe allocation behind (and, coturn < 4.17, EVEN-PORT R=0 leaks the odd port).
RELAY_RANGE = 1000
LOCAL_BASE = 20  # uclient run k binds 127.0.0.(20 + k % 200)
UCLIENT = ["turnutils_uclient", "-v", "-n", "1", "-m", "1", "-u", USER, "-w", PASSWORD]
FIRST_SEND_S = 1.0  # uclient.c: first packet due 1 s + random() % 5000 ms after connecting
CONNECT_IDLE_S = 0.1  # uclient.c start_mclient: run_events(1), 100 ms per client
TOOLS = {
    "turnserver": "coturn's server (apt-get install coturn)",
    "turnutils_uclient": "coturn's test client (apt-get install coturn)",
    "turnutils_peer": "coturn's UDP echo peer (apt-get install coturn)",
}
# tls_connect() picks one of these SSL_CTXs at random per handshake (mainuclient.c order, with
# TLSv1_1 and TLSv1_2 supported); it prints only the index.
TLS_CONTEXTS = {"0": "any version", "1": "TLSv1", "2": "TLSv1.1", "3": "TLSv1.2"}

TOTALS_RE = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
CONNECTED_RE = re.compile(r"Total connect time is \d+")
RELAY_RE = re.compile(r"(IPv4|IPv6)\. Received relay addr: (\S+)")
TICKET_RE = re.compile(r"read_mobility_ticket: smid=")
TOKEN_RE = re.compile(r"clnet_allocate: rtv=(\d+)")
TLS_RE = re.compile(r"client session connected with cipher (\S+), method=(\S+)")
TLS_REFUSED_RE = re.compile(r"tls_connect: cannot connect: rc=-?\d+, ctx=(\d+)")
TCP_DONE_RE = re.compile(r"(\d+) connections are completed")
TCP_SHORT_RE = re.compile(r"WARNING: (\d+) connections are completed, not enough")
RETRY_437_RE = re.compile(r"trying allocate again 437")
ERROR_RE = re.compile(
    r"(?:channel bind: |create permission |connection bind )?error \d{3} \([^)\n]*\)"
    r"|Cannot complete (?:Allocation|Refresh)|cannot (?:SSL )?connect to remote addr"
)
ERRNO_RE = re.compile(r"errno=(\d+), err=\d+, (\S.*?) \(\d+\)$", re.M)


@dataclass(frozen=True, slots=True)
class Capability:
    """One uclient invocation and the audit finding(s) about the same capability."""

    key: str
    name: str
    flags: tuple[str, ...]  # beside UCLIENT; "-r PEER" is added when peer is true
    audit_ids: tuple[str, ...]
    why: str
    clients: int = 1  # uclient sessions it connects (its 100 ms idle per client)
    peer: bool = True  # relays to turnutils_peer (-e, -r); else to its own allocations (-y)
    tls_port: bool = False
    expect_ok: bool = True
    audit_note: str = ""


# In the order a user of the turnutils would try them: relays first, then attributes, then
# transports.  Every capability is covered by one invocation.
CAPABILITIES: tuple[Capability, ...] = (
    Capability(
        "ipv4-relay",
        "IPv4 relay, loopback peer",
        ("-c", "-X", "-e", "127.0.0.1"),
        ("peer-acl-loopback",),
        "REQUESTED-ADDRESS-FAMILY=IPv4 (an IPv4 -e sets it anyway), data to turnutils_peer on "
        "127.0.0.1: a loopback peer, which uclient takes as a plain success",
    ),
    Capability(
        "ipv6-relay",
        "IPv6 relay",
        ("-c", "-x", "-e", "::1"),
        ("ipv6-relay",),
        "REQUESTED-ADDRESS-FAMILY=IPv6, data to turnutils_peer on ::1 (an IPv4 -e would turn -x "
        "back into an IPv4 request: the peer's family wins, mainuclient.c)",
    ),
    Capability(
        "dual-allocation",
        "dual allocation",
        ("-Z", "-e", "127.0.0.1"),
        ("dual-allocation",),
        "both families in the Allocate (-Z implies -c); it then uses, prints and relays through "
        "the one relay address of its peer's family",
    ),
    Capability(
        "tcp-relay",
        "TCP relay (RFC 6062)",
        ("-T",),
        ("tcp-relay",),
        "REQUESTED-TRANSPORT=TCP over TCP (-T implies -t -y -c): two allocations, CONNECT from one "
        "to the other's relay address, CONNECTION-BIND on new connections, data both ways",
        clients=2,
        peer=False,
    ),
    Capability(
        "mobility",
        "mobility (RFC 8016)",
        ("-c", "-M", "-e", "127.0.0.1"),
        ("mobility",),
        "MOBILITY-TICKET in the Allocate; it then reconnects from a new port and refreshes with "
        "the ticket: a real move",
    ),
    Capability(
        "dont-fragment",
        "DONT-FRAGMENT",
        ("-c", "-g", "-e", "127.0.0.1"),
        ("dont-fragment",),
        "DONT-FRAGMENT in the Allocate",
    ),
    Capability(
        "origin",
        "ORIGIN",
        ("-c", "-o", ORIGIN, "-e", "127.0.0.1"),
        ("origin",),
        "ORIGIN in every request (uclient puts two origins of its own around the one given)",
    ),
    Capability(
        "oauth",
        "OAuth (RFC 7635)",
        ("-c", "-J", "-e", "127.0.0.1"),
        ("third-party-authorization",),
        "an OAuth token from its built-in test keys, sent only if the 401 offers "
        "THIRD-PARTY-AUTHORIZATION; otherwise -u/-w, and no line says which",
    ),
    Capability(
        "even-port",
        "EVEN-PORT, RESERVATION-TOKEN",
        ("-y",),
        ("even-port",),
        "without -c every client is an RTP/RTCP pair: EVEN-PORT with R=1, then the RTCP "
        "allocation by RESERVATION-TOKEN; -y relays among its 4 clients",
        clients=4,
        peer=False,
    ),
    Capability(
        "client-to-client",
        "relay to its own relays",
        ("-y", "-c"),
        ("peer-acl-self",),
        "two allocations, each the other's peer: the server's own relay addresses as peers",
        clients=2,
        peer=False,
    ),
    Capability(
        "tcp",
        "TURN over TCP",
        ("-c", "-t", "-e", "127.0.0.1"),
        (),
        "Allocate, ChannelBind and data over TCP to the plain port",
        audit_note="no finding of its own: the audited URLs are udp and tls; its tcp-relay "
        "check runs over a TCP control connection",
    ),
    Capability(
        "tls",
        "TURN over TLS",
        ("-c", "-t", "-S", "-e", "127.0.0.1"),
        ("tls-versions", "tls-certificate"),
        "TLS to the TLS port; each handshake uses one of its 4 contexts at random (any version, "
        "TLSv1, TLSv1.1, TLSv1.2), retried on failure; it verifies no certificate",
        tls_port=True,
    ),
    Capability(
        "dtls",
        "TURN over DTLS",
        ("-c", "-S", "-e", "127.0.0.1"),
        ("dtls",),
        "DTLS to the TLS port over UDP; this coturn runs with no-dtls, so a refusal is the "
        "right answer",
        tls_port=True,
        expect_ok=False,
    ),
)
MAPPED = {i for cap in CAPABILITIES for i in cap.audit_ids}
# The audit's findings that no uclient flag covers, by id prefix (first match wins).
AUDIT_ONLY_GROUPS = (
    ("peer ACL", ("peer-acl-",)),
    ("TLS", ("tls-",)),
    ("advisories", ("advisory-", "software-version")),
    ("management surfaces", ("http-on-turn-port", "coturn-cli", "web-admin", "metrics-")),
    ("quota", ("quota",)),
    ("reflection", ("amplification", "rfc3489-")),
    ("access", ("open-relay", "binding-needs-auth")),
    ("protocol", ("",)),
)
UCLIENT_CANNOT = (
    "-S verifies no certificate: -E takes effect only with a client certificate (-i/-k)",
    "-J falls back to the password when the 401 offers no THIRD-PARTY-AUTHORIZATION, silently",
    "-Z shows and relays through one relay address only: the second family goes unseen",
    "it has no flag for the peer ACL beyond the one -e, nor for TLS versions, ciphers, "
    "advisories, management surfaces, quotas, amplification, password algorithms or LIFETIME",
    "with -c it puts EVEN-PORT (R=0) in about half its Allocates at random (clnet_allocate), the "
    "pattern the audit will not send to coturn < 4.17; each run leaves its probe allocation",
    "it takes credentials on the command line only (-u/-w, or -W with the REST secret)",
)
SEVERITY_ORDER = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO", "OK")


@dataclass(slots=True)
class Child:
    """One finished subprocess: exit code (None: killed at its timeout) and its output."""

    rc: int | None
    wall: float
    lines: list[tuple[float, str]]  # stdout lines, each with its arrival (s after the spawn)
    err: str

    @property
    def text(self) -> str:
        return "".join(line for _, line in self.lines)


def run_child(cmd: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> Child:
    """Run *cmd*, stamping its stdout lines as they arrive; kill it (by PID) at *timeout*."""
    start = time.monotonic()
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
    )
    out: list[tuple[float, str]] = []
    err: list[tuple[float, str]] = []

    def pump(stream: Any, into: list[tuple[float, str]]) -> None:
        for line in stream:
            into.append((time.monotonic() - start, line))

    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err), daemon=True),
    ]
    for t in pumps:
        t.start()
    rc: int | None
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        if proc.poll() is None:  # the timeout, or Ctrl-C here
            proc.kill()
            proc.wait()
    wall = time.monotonic() - start
    for t in pumps:
        t.join(timeout=5)
    proc.stdout.close()
    proc.stderr.close()
    return Child(rc, wall, out, "".join(line for _, line in err))


@dataclass(slots=True)
class UclientRun:
    wall: float
    connected: float | None  # seconds to its "Total connect time" line
    rc: int | None
    ok: bool
    said: str


@dataclass(slots=True)
class AuditRun:
    wall: float
    duration: float | None  # the audit's own duration_s
    exit_code: int | None
    doc: dict[str, Any] | None
    problem: str = ""


@dataclass(slots=True)
class Bench:
    software: str | None = None
    uclient: dict[str, list[UclientRun]] = field(default_factory=dict)
    audits: list[AuditRun] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _addr(text: str) -> str:
    """uclient prints IPv6 relay addresses as ::1:31732; write them as [::1]:31732."""
    host, _, port = text.rpartition(":")
    return f"[{host}]:{port}" if ":" in host else text


def why_failed(text: str, err: str) -> str:
    """The reason in uclient's own words: its last error line, or the last thing it said."""
    errors = [m.group(0) for m in ERROR_RE.finditer(text)]
    if errors:
        return errors[-1]
    errnos = [(int(n), why) for n, why in ERRNO_RE.findall(text)]
    if errnos:
        n, why = errnos[-1]
        said = os.strerror(n) if n else why
        return f"{said} ({len(errnos)} handshake(s) tried)" if "SSL_connect" in text else said
    tail = [line.strip() for line in (text + err).splitlines() if line.strip()]
    return tail[-1][:80] if tail else "no output"


def read_uclient(cap: Capability, child: Child, timeout: float) -> tuple[bool, str]:
    """(the run proves the capability, what uclient said about it in a few words)."""
    text = child.text
    if child.rc is None:
        return False, f"timeout: killed after {timeout:g} s"
    if child.rc != 0:
        return False, f"failed (exit {child.rc}): {why_failed(text, child.err)}"
    totals = TOTALS_RE.findall(text)
    if not totals:
        return False, "no tot_send_msgs line in its output"
    sent, received = map(int, totals[-1])
    ok = sent > 0 and received == sent
    said = [f"{received}/{sent} messages back"]
    relays = RELAY_RE.findall(text)
    if cap.key in ("ipv4-relay", "ipv6-relay", "dual-allocation") and relays:
        family, addr = relays[-1]  # the probe allocation's comes first
        said.insert(0, f"{family} relay {_addr(addr)}")
        want = {"ipv4-relay": "IPv4", "ipv6-relay": "IPv6"}.get(cap.key, family)
        ok = ok and family == want
        if cap.key == "dual-allocation":
            said.insert(1, "no second relay shown")
    if cap.key == "tcp-relay":
        done, short = TCP_DONE_RE.findall(text), TCP_SHORT_RE.findall(text)
        said.insert(0, f"{(done or short or ['0'])[-1]} TCP data connections")
        ok = ok and bool(done) and not short
    if cap.key == "mobility":
        tickets = len(TICKET_RE.findall(text))
        moved = f"{tickets} MOBILITY-TICKETs, Refresh from a new port"
        said.insert(0, moved if tickets else "no MOBILITY-TICKET")
        ok = ok and tickets > 0
    if cap.key == "even-port":
        tokens = sum(1 for t in TOKEN_RE.findall(text) if int(t))
        said.insert(0, f"RESERVATION-TOKEN in {tokens} Allocate responses")
        ok = ok and tokens > 0
    if cap.key == "oauth":
        said.append("no line says if a token was sent")
    if cap.key == "tls":
        tls = TLS_RE.findall(text)
        refused = [TLS_CONTEXTS.get(c, f"ctx {c}") for c in TLS_REFUSED_RE.findall(text)]
        if tls:
            cipher, method = tls[-1]
            said.insert(0, f"{method} {cipher}")
        if refused:
            names = sorted(set(refused))
            said.insert(1, f"{len(refused)} handshakes refused ({', '.join(names)})")
        ok = ok and bool(tls)
    retries = len(RETRY_437_RE.findall(text))
    if retries:
        said.append(f"{retries} x 437 (1 s sleep each)")
    return ok, ", ".join(s for s in said if s)


def read_audit(child: Child) -> AuditRun:
    """The audit's JSON document, or why this run does not count."""
    run = AuditRun(child.wall, None, child.rc, None)
    if child.rc is None:
        run.problem = f"audit: timeout after {AUDIT_TIMEOUT:g} s"
        return run
    try:
        doc = json.loads(child.text)
        run.duration = float(doc["duration_s"])
        findings = doc["findings"]
        assert isinstance(findings, list)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        tail = " | ".join(child.err.strip().splitlines()[-2:])
        run.problem = f"audit exit {child.rc}: no JSON report ({exc!r}); stderr: {tail}"
        return run
    run.doc = doc
    if not doc.get("ran") or child.rc not in (0, 1):
        run.problem = f"audit exit {child.rc}: did not run: {doc.get('why')}"
    return run


def uclient_cmd(cap: Capability, port: int, tls_port: int, peer_port: int, local: str) -> list[str]:
    cmd = [*UCLIENT, *cap.flags]
    if cap.peer:
        cmd += ["-r", str(peer_port)]
    return [*cmd, "-L", local, "-p", str(tls_port if cap.tls_port else port), "127.0.0.1"]


def udp_echo_ok(host: str, port: int, timeout: float = 0.2) -> bool:
    """One datagram to turnutils_peer on loopback; True if it comes back."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    payload = b"audit_bench: are you there?"
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))
            s.send(payload)
            ready, _, _ = select.select([s], [], [], timeout)
            return bool(ready) and s.recv(2048) == payload
        except OSError:  # ICMP port unreachable: not bound yet
            return False


@contextmanager
def running_peer(ready_timeout: float = 5.0) -> Iterator[int]:
    """turnutils_peer on 127.0.0.1 and ::1, one free port; yields the port, stops it by PID."""
    from tests.servers.ports import free_port_block, release_ports, terminate

    port = free_port_block(1, host="127.0.0.1", extra_hosts=("::1",))
    proc: subprocess.Popen[bytes] | None = None
    try:
        cmd = ["turnutils_peer", "-p", str(port), "-L", "127.0.0.1", "-L", "::1"]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + ready_timeout
        waiting = ["127.0.0.1", "::1"]
        for _ in range(1000):  # bounded count as well as time
            if proc.poll() is not None:
                raise RuntimeError(f"turnutils_peer exited early with code {proc.returncode}")
            waiting = [h for h in waiting if not udp_echo_ok(h, port)]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if waiting:
            raise RuntimeError(f"turnutils_peer does not echo on {', '.join(waiting)} port {port}")
        yield port
    finally:
        if proc is not None:
            terminate(proc, proc.send_signal)
        release_ports(port, 1)


def bench(
    port: int, tls_port: int, peer_port: int, ca_file: Path, rounds: int, timeout: float
) -> Bench:
    """Every round: the audit, then the uclient invocations one after the other."""
    exe = Path(sys.executable).parent / "turncheck"
    audit_cmd = [str(exe) if exe.exists() else "turncheck", "audit", f"turn:127.0.0.1:{port}"]
    audit_cmd += [f"turns:localhost:{tls_port}?transport=tcp", "--ca-file", str(ca_file), "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNCHECK_")}
    env |= {"TURNCHECK_USERNAME": USER, "TURNCHECK_CREDENTIAL": PASSWORD}
    result = Bench(commands={"audit": audit_cmd})
    runs = 0
    for rnd in range(1, rounds + 1):
        run = read_audit(run_child(audit_cmd, AUDIT_TIMEOUT, env))
        result.audits.append(run)
        n = len(run.doc["findings"]) if run.doc else 0
        progress(f"round {rnd}/{rounds}  turncheck audit  {run.wall:6.2f} s  {n} findings")
        if run.problem:
            result.problems.append(f"round {rnd}: {run.problem}")
        if run.doc and run.doc.get("software"):
            result.software = str(run.doc["software"])
        for cap in CAPABILITIES:
            local = f"127.0.0.{LOCAL_BASE + runs % 200}"
            runs += 1
            cmd = uclient_cmd(cap, port, tls_port, peer_port, local)
            result.commands.setdefault(cap.key, cmd)
            child = run_child(cmd, timeout)
            ok, said = read_uclient(cap, child, timeout)
            connected = next((t for t, s in child.lines if CONNECTED_RE.search(s)), None)
            result.uclient.setdefault(cap.key, []).append(
                UclientRun(child.wall, connected, child.rc, ok, said)
            )
            mark = "ok" if ok else "failed"
            if not ok or ok != cap.expect_ok:
                mark += ", as expected" if ok == cap.expect_ok else ", UNEXPECTED"
            progress(f"round {rnd}/{rounds}  uclient {cap.key:<17} {child.wall:6.2f} s  {mark}")
            if ok != cap.expect_ok:
                want = "success" if cap.expect_ok else "a failure"
                result.problems.append(f"round {rnd}: uclient {cap.key}: want {want}, got: {said}")
    return result


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.median(got), 4) if got else None


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def findings_by_id(doc: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in (doc or {}).get("findings", []):
        out.setdefault(str(f.get("id")), []).append(f)
    return out


def group_of(finding_id: str) -> str:
    return next(g for g, prefixes in AUDIT_ONLY_GROUPS if finding_id.startswith(prefixes))


def summarize(
    result: Bench, rounds: int, peer_port: int, port: int, tls_port: int
) -> dict[str, Any]:
    """The bench's result as one JSON-able document (the text output is rendered from it)."""
    last = next((a.doc for a in reversed(result.audits) if a.doc), None)
    by_id = findings_by_id(last)
    per_round = [
        sorted({(f["id"], f["severity"]) for f in a.doc["findings"]})
        for a in result.audits
        if a.doc
    ]
    problems = list(result.problems)
    if len({json.dumps(r) for r in per_round}) > 1:
        problems.append("note: the audit's findings (id, severity) differ between rounds")
    caps = []
    for cap in CAPABILITIES:
        runs = result.uclient.get(cap.key, [])
        found = [f for i in cap.audit_ids for f in by_id.get(i, [])]
        missing = [i for i in cap.audit_ids if i not in by_id]
        if last is not None and missing:
            problems.append(f"audit: no finding {', '.join(missing)} (for {cap.key})")
        caps.append(
            {
                "key": cap.key,
                "capability": cap.name,
                "why": cap.why,
                "expect_ok": cap.expect_ok,
                "uclient": {
                    "cmd": result.commands.get(cap.key, []),
                    "wall_s": median([r.wall for r in runs]),
                    "connected_s": median([r.connected for r in runs]),
                    "clients": cap.clients,
                    "runs": [
                        {
                            "wall_s": round(r.wall, 4),
                            "connected_s": None if r.connected is None else round(r.connected, 4),
                            "exit_code": r.rc,
                            "ok": r.ok,
                            "said": r.said,
                        }
                        for r in runs
                    ],
                },
                "audit": {
                    "ids": list(cap.audit_ids),
                    "note": cap.audit_note,
                    "findings": [
                        {k: f.get(k) for k in ("id", "severity", "finding", "skipped")}
                        for f in found
                    ],
                },
            }
        )
    totals = [
        sum(result.uclient[c.key][i].wall for c in CAPABILITIES)
        for i in range(rounds)
        if all(len(result.uclient.get(c.key, [])) > i for c in CAPABILITIES)
    ]
    connected = [
        sum(result.uclient[c.key][i].connected or 0.0 for c in CAPABILITIES)
        for i in range(rounds)
        if all(len(result.uclient.get(c.key, [])) > i for c in CAPABILITIES)
    ]
    # uclient's floor: 1 s to its first packet and 100 ms per client, in every run that got
    # that far; its random 0-5 s on top of the first is not in it.
    floor = sum(
        FIRST_SEND_S + CONNECT_IDLE_S * c.clients
        for c in CAPABILITIES
        if any(r.connected is not None for r in result.uclient.get(c.key, []))
    )
    audit_wall = median([a.wall for a in result.audits if a.doc])
    uclient_total = median(totals)
    groups = [g for g, _ in AUDIT_ONLY_GROUPS]
    audit_only: list[dict[str, Any]] = sorted(
        (
            {
                "group": group_of(i),
                "id": i,
                "severity": f.get("severity"),
                "finding": f.get("finding"),
                "skipped": f.get("skipped"),
            }
            for i, fs in by_id.items()
            if i not in MAPPED
            for f in fs
        ),
        key=lambda f: (
            groups.index(str(f["group"])),
            SEVERITY_ORDER.index(str(f["severity"])) if f["severity"] in SEVERITY_ORDER else 9,
            str(f["id"]),
        ),
    )
    return {
        "schema": 1,
        "server": {
            "software": result.software,
            "hosts": ["127.0.0.1", "::1"],
            "port": port,
            "tls_port": tls_port,
            "peer_port": peer_port,
        },
        "rounds": rounds,
        "audit": {
            "cmd": result.commands.get("audit", []),
            "wall_s": audit_wall,
            "duration_s": median([a.duration for a in result.audits]),
            "runs": [
                {"wall_s": round(a.wall, 4), "duration_s": a.duration, "exit_code": a.exit_code}
                for a in result.audits
            ],
            "verdict": (last or {}).get("verdict"),
        },
        "capabilities": caps,
        "uclient_total_s": uclient_total,
        "uclient_connected_total_s": median(connected),
        "uclient_fixed_wait_floor_s": round(floor, 3),
        "ratio_uclient_to_audit": (
            round(uclient_total / audit_wall, 2) if uclient_total and audit_wall else None
        ),
        "audit_only": audit_only,
        "uclient_cannot": list(UCLIENT_CANNOT),
        "problems": problems,
        "ok": not [p for p in problems if not p.startswith("note:")],
    }


def print_table(rows: list[tuple[str, ...]], right: set[int]) -> None:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if k in right else c.ljust(w)
            for k, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def shown_flags(key: str) -> str:
    """A capability's uclient flags for the table, the -o value shortened."""
    flags = next(c.flags for c in CAPABILITIES if c.key == key)
    return shlex.join(flags).replace(ORIGIN, "URL")


def cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def render(doc: dict[str, Any]) -> None:
    srv, audit = doc["server"], doc["audit"]
    print(
        f"coturn {srv['software'] or '(no SOFTWARE)'} on 127.0.0.1 and ::1, port {srv['port']}, "
        f"TLS {srv['tls_port']}; turnutils_peer port {srv['peer_port']}; {doc['rounds']} round(s)"
    )
    print(f"audit: {shlex.join(audit['cmd'])}")
    print(f"uclient: {shlex.join(UCLIENT)} FLAGS [-r PEER] -L 127.0.0.X -p PORT 127.0.0.1\n")
    head = ("capability", "uclient flags", "uclient said", "s", "connect s", "audit finding", "s")
    rows: list[tuple[str, ...]] = [head]
    good = 0
    for cap in doc["capabilities"]:
        uc = cap["uclient"]
        runs = uc["runs"]
        ok = sum(r["ok"] for r in runs)
        good += sum(r["ok"] == cap["expect_ok"] for r in runs)
        result = "ok" if ok == len(runs) else f"FAIL {len(runs) - ok}/{len(runs)}"
        if not cap["expect_ok"]:
            result = "refused (right)" if ok == 0 else f"ok {ok}/{len(runs)} (want refused)"
        found = cap["audit"]["findings"]
        words = ", ".join(
            f"{f['id']} {'skipped' if f['skipped'] else f['severity']}" for f in found
        )
        row = (cap["capability"], shown_flags(cap["key"]), result, seconds(uc["wall_s"]))
        rows.append((*row, seconds(uc["connected_s"]), words or "-", ""))
    n_runs = sum(len(c["uclient"]["runs"]) for c in doc["capabilities"])
    n_found = len(doc["audit_only"]) + sum(len(c["audit"]["findings"]) for c in doc["capabilities"])
    label = (f"all {len(doc['capabilities'])}", "in sequence", f"{good}/{n_runs} as expected")
    uclient_s = (seconds(doc["uclient_total_s"]), seconds(doc["uclient_connected_total_s"]))
    rows.append((*label, *uclient_s, f"all at once: {n_found} findings", seconds(audit["wall_s"])))
    print_table(rows, right={3, 4, 6})
    print(
        "\ns: wall seconds, median over rounds; uclient per invocation, the audit for its whole run"
        f" (process start to exit; in-process duration_s {seconds(audit['duration_s'])} s)."
        "\nconnect s: uclient's spawn to its 'Total connect time' line (every request done, its"
        " 100 ms idle per client included);\nthe rest of its s is the wait for its first packet"
        " (1 s + random 0-5 s) and the message."
    )
    total, wall = doc["uclient_total_s"], audit["wall_s"]
    if total and wall:
        n = len(doc["capabilities"])
        print(
            f"\nuclient, {n} invocations in sequence: {total:.2f} s; turncheck audit, one run:"
            f" {wall:.2f} s; uclient / audit = {total / wall:.1f}x"
        )
        if doc["uclient_connected_total_s"]:
            c = doc["uclient_connected_total_s"]
            print(
                f"uclient up to connected only (no send wait): {c:.2f} s; / audit = {c / wall:.1f}x"
            )
        print(
            f"uclient's fixed waits: at least {doc['uclient_fixed_wait_floor_s']:.1f} s of its"
            " total (1 s to the first packet + 100 ms per client, per run that connected), plus"
            " random 0-5 s per run."
        )
    print("\nWhat each said (last round):")
    for cap in doc["capabilities"]:
        runs = cap["uclient"]["runs"]
        print(f"  {cap['capability']}")
        print(
            f"    uclient {shlex.join(next(c.flags for c in CAPABILITIES if c.key == cap['key']))}"
        )
        print(f"      why: {cap['why']}")
        print(f"      said: {runs[-1]['said'] if runs else '-'}")
        for f in cap["audit"]["findings"]:
            sev = "skipped" if f["skipped"] else f["severity"]
            print(f"    audit {f['id']} {sev}: {f['finding']}")
        if cap["audit"]["note"]:
            print(f"    audit: {cap['audit']['note']}")
    print("\nWhat the audit found that uclient has no flag for (last round):")
    group = None
    for f in doc["audit_only"]:
        if f["group"] != group:
            group = f["group"]
            print(f"  {group}")
        sev = "skipped" if f["skipped"] else f["severity"]
        print(f"    {f['id']} {sev}: {cut(str(f['finding']), 110)}")
    print("\nWhat uclient cannot do here:")
    for line in doc["uclient_cannot"]:
        print(f"  - {line}")
    if doc["problems"]:
        print("\nProblems:")
        for p in doc["problems"]:
            print(f"  {p}")


def missing_tool() -> str | None:
    """One line naming the first missing tool, or None."""
    for tool, what in TOOLS.items():
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH: {what}"
    exe = Path(sys.executable).parent / "turncheck"
    if not exe.exists() and shutil.which("turncheck") is None:
        return "turncheck not found: pip install -e . in this venv"
    try:
        import trustme  # noqa: F401
    except ImportError:
        return "trustme not importable: pip install -e '.[test]'"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=UCLIENT_TIMEOUT,
        help=f"seconds per uclient run (default {UCLIENT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds: give 1 to {MAX_ROUNDS}")
    if not 1 <= args.timeout <= 300:
        parser.error("--timeout: give 1 to 300 seconds")
    why = missing_tool()
    if why:
        print(f"audit_bench: {why}", file=sys.stderr)
        return 2

    import trustme

    from tests.servers.coturn import running_coturn

    ca = trustme.CA()
    try:
        with tempfile.TemporaryDirectory(prefix="audit_bench_") as tmp:
            ca_file = Path(tmp) / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            # The fixture's config already has allow-loopback-peers, lt-cred-mech and no-dtls.
            with (
                running_coturn(
                    Path(tmp) / "coturn",
                    ca=ca,
                    hosts=("127.0.0.1", "::1"),
                    users={USER: PASSWORD},
                    extra=["mobility"],
                    relay_range=RELAY_RANGE,
                ) as srv,
                running_peer() as peer_port,
            ):
                result = bench(
                    srv.port, srv.tls_port, peer_port, ca_file, args.rounds, args.timeout
                )
                doc = summarize(result, args.rounds, peer_port, srv.port, srv.tls_port)
    except RuntimeError as exc:  # a server or the peer did not start
        print(f"audit_bench: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        render(doc)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
