"""Record real chrome://webrtc-internals dumps of calls made in the netns lab.

::

    sudo .venv/bin/python -m tests.browser.record_dumps OUTDIR

builds a lab (tests/lab/netns.py, a masquerading NAT), runs coturn in its server
namespace, and has one headless Chromium (tests/browser/driver.py, "call" jobs) make
one call per case between two RTCPeerConnections of a page in the client namespace,
with chrome://webrtc-internals open in another tab.  After each call the dump is
downloaded with that page's own "Download the webrtc-internals dump" button and
written, byte for byte, to OUTDIR/<case>.json; OUTDIR/manifest.json says what the
page itself saw of each call (states, selected pair, candidate errors).

The lab::

    client ns  192.0.2.2  ── NAT 192.0.2.1 / 203.0.113.1 (masquerade, hairpins UDP) ──
    server ns  203.0.113.2   coturn: 3478 udp/tcp, TLS 5349, relays 49152-49201
               203.0.113.5   coturn whose relay ports drop every packet (INPUT DROP)
               203.0.113.6   nothing listens

Every packet stays in the lab namespaces; every wait is bounded (a cap per call).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.browser.chromium import netns_etc, run_chromium
from tests.lab.netns import Lab, nat_lab
from tests.servers.coturn import Coturn, running_coturn

__all__ = ["CASES", "Case", "SecretInDump", "calls", "dump_lab", "main", "record"]

SERVER = "203.0.113.2"  # healthy coturn
BLOCKED_RELAY = "203.0.113.5"  # coturn that allocates, but its relayed packets are dropped
DEAD = "203.0.113.6"  # an address of the server namespace where nothing listens
PORT, TLS_PORT = 3478, 5349
USERNAME, PASSWORD = "alice", "s3cret"
WRONG_PASSWORD = "not-the-password-7"
CAP_S = 10.0
CALL_SLACK_S = 10.0  # per call in the driver run's timeout: tab, dump, close
START_SLACK_S = 40.0


@dataclass(frozen=True)
class Case:
    name: str
    expect: str  # what the case is meant to show
    caller: dict[str, Any]
    callee: dict[str, Any]
    forward: dict[str, list[str]] | None = None  # candidate types each side signals
    cap_s: float = CAP_S


def _turn(url: str, password: str = PASSWORD) -> dict[str, Any]:
    return {"urls": url, "username": USERNAME, "credential": password}


def _relay(*servers: dict[str, Any]) -> dict[str, Any]:
    return {"iceServers": list(servers), "iceTransportPolicy": "relay"}


TURN_UDP = f"turn:{SERVER}:{PORT}?transport=udp"
TURNS_TLS = f"turns:{SERVER}:{TLS_PORT}?transport=tcp"
STUN = f"stun:{SERVER}:{PORT}"

CASES: tuple[Case, ...] = (
    Case(
        "relay-udp",
        "both sides relay-only over TURN/UDP: connected, relay <-> relay (udp)",
        _relay(_turn(TURN_UDP)),
        _relay(_turn(TURN_UDP)),
    ),
    Case(
        "relay-tls",
        "both sides relay-only over TURN/TLS (the test CA trusted): connected, relay (tls)",
        _relay(_turn(TURNS_TLS)),
        _relay(_turn(TURNS_TLS)),
    ),
    Case(
        "srflx",
        "both behind the lab NAT with STUN, only srflx candidates signalled, the NAT "
        "hairpins: connected, srflx <-> srflx",
        {"iceServers": [{"urls": STUN}]},
        {"iceServers": [{"urls": STUN}]},
        forward={"caller": ["srflx"], "callee": ["srflx"]},
    ),
    Case("host", "no ICE servers: connected over host candidates", {}, {}),
    Case(
        "turn-401",
        "caller relay-only with a wrong TURN password (icecandidateerror 401, no "
        "candidate); callee healthy relay-only: never leaves ICE state new",
        _relay(_turn(TURN_UDP, WRONG_PASSWORD)),
        _relay(_turn(TURN_UDP)),
    ),
    Case(
        "turn-unreachable",
        "caller relay-only with TURN over TCP to an address where nothing listens "
        "(icecandidateerror 701 at once); callee healthy relay-only: ICE state new",
        _relay(_turn(f"turn:{DEAD}:{PORT}?transport=tcp")),
        _relay(_turn(TURN_UDP)),
    ),
    Case(
        "relay-policy-dead-turn",
        "caller relay-only with TURN over UDP to a server that never answers (no "
        "candidate and, within the cap, no error: Chromium's UDP timeout is longer); "
        "callee healthy relay-only: ICE state new",
        _relay(_turn(f"turn:{DEAD}:{PORT}?transport=udp")),
        _relay(_turn(TURN_UDP)),
    ),
    Case(
        "relay-blocked",
        "both sides relay-only on a TURN server that allocates but whose relayed "
        "packets are dropped: relay candidates, checking, then failed (~15 s)",
        _relay(_turn(f"turn:{BLOCKED_RELAY}:{PORT}?transport=udp")),
        _relay(_turn(f"turn:{BLOCKED_RELAY}:{PORT}?transport=udp")),
        cap_s=20.0,
    ),
)

# Strings that must never appear in a dump: the TURN credentials the cases use.
CREDENTIALS = (PASSWORD, WRONG_PASSWORD, f'"{USERNAME}"', '"username"', '"credential"')


class SecretInDump(RuntimeError):
    """A dump holds a credential given in an RTCConfiguration."""


@dataclass
class DumpLab:
    lab: Lab
    coturn: Coturn
    blocked: Coturn
    ca_file: Path


def _hairpin(lab: Lab) -> None:
    """Let the NAT hairpin UDP: a client packet to the NAT's outside address goes
    back in to the client (same port), from the NAT's outside address.  Two peers
    behind it then reach each other's srflx candidates, as behind a NAT with
    hairpinning (RFC 4787 REQ-9).  Only packets to 203.0.113.1 match."""
    inside = "192.0.2.0/24"
    nat = ["-t", "nat", "-I"]
    lab.iptables(
        lab.nat_ns,
        *nat,
        "PREROUTING",
        "-i",
        lab.nat_inside_if,
        "-s",
        inside,
        "-d",
        lab.nat_outside_ip,
        "-p",
        "udp",
        "-j",
        "DNAT",
        "--to-destination",
        lab.client_ip,
    )
    lab.iptables(
        lab.nat_ns,
        *nat,
        "POSTROUTING",
        "-o",
        lab.nat_inside_if,
        "-s",
        inside,
        "-d",
        inside,
        "-p",
        "udp",
        "-j",
        "SNAT",
        "--to-source",
        lab.nat_outside_ip,
    )
    for conf in ("all", lab.nat_inside_if):  # no ICMP redirects for the hairpinned packets
        lab.run(lab.nat_ns, ["sysctl", "-qw", f"net.ipv4.conf.{conf}.send_redirects=0"], check=True)


@contextmanager
def dump_lab(workdir: Path, ca: Any) -> Iterator[DumpLab]:
    """The lab of this module's docstring; *ca* is a trustme.CA.  Torn down on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with ExitStack() as stack:
        lab = stack.enter_context(nat_lab("masquerade"))
        for ip in (BLOCKED_RELAY, DEAD):
            lab.run(lab.server_ns, ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], check=True)
        _hairpin(lab)
        coturn = stack.enter_context(
            running_coturn(
                workdir / "coturn",
                ca=ca,
                hosts=(SERVER,),
                relay_ips=(SERVER,),
                cert_hostnames=(SERVER,),
                users={USERNAME: PASSWORD},
                netns=lab.server_ns,
                netns_ports=(PORT, TLS_PORT, 49152),
            )
        )
        blocked = stack.enter_context(
            running_coturn(
                workdir / "coturn-blocked",
                ca=ca,
                hosts=(BLOCKED_RELAY,),
                relay_ips=(BLOCKED_RELAY,),
                cert_hostnames=(BLOCKED_RELAY,),
                users={USERNAME: PASSWORD},
                netns=lab.server_ns,
                netns_ports=(PORT, TLS_PORT, 49260),
            )
        )
        lab.iptables(
            lab.server_ns,
            "-A",
            "INPUT",
            "-d",
            BLOCKED_RELAY,
            "-p",
            "udp",
            "--dport",
            f"{blocked.min_port}:{blocked.max_port}",
            "-j",
            "DROP",
        )
        # no nameserver: nothing the browser looks up can leave the lab
        stack.enter_context(netns_etc(lab.client_ns, None))
        yield DumpLab(lab, coturn, blocked, ca_file)


def calls(cases: tuple[Case, ...] = CASES) -> list[dict[str, Any]]:
    """The driver's "call" jobs for *cases*."""
    jobs = []
    for case in cases:
        job: dict[str, Any] = {
            "id": case.name,
            "kind": "call",
            "caller": case.caller,
            "callee": case.callee,
            "cap_s": case.cap_s,
        }
        if case.forward is not None:
            job["forward"] = case.forward
        jobs.append(job)
    return jobs


def _side(result: Mapping[str, Any]) -> dict[str, Any]:
    selected = result.get("selected") or None
    if selected and "local" not in selected:  # getStats failed: an error object
        selected = None

    def cand(c: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not c:
            return None
        return {k: c.get(k) for k in ("candidateType", "protocol", "relayProtocol", "url")}

    return {
        "connection_state": result.get("connection_state"),
        "ice_connection_state": result.get("ice_connection_state"),
        "ice_gathering_state": result.get("ice_gathering_state"),
        "gathered": sorted({str(c.get("type")) for c in result.get("candidates", [])}),
        "signalled": len(result.get("forwarded", [])),
        "errors": [
            {k: e.get(k) for k in ("url", "errorCode", "errorText")}
            for e in result.get("errors", [])
        ],
        "selected": None
        if not selected
        else {"local": cand(selected.get("local")), "remote": cand(selected.get("remote"))},
    }


def check_secrets(name: str, text: str) -> None:
    for secret in CREDENTIALS:
        if secret in text:
            raise SecretInDump(f"{name}: the dump contains {secret!r}")


def record(
    outdir: Path,
    *,
    ca: Any = None,
    workdir: Path | None = None,
    cases: tuple[Case, ...] = CASES,
) -> dict[str, Any]:
    """Record every case's dump to *outdir*/<case>.json and a manifest.json; return
    the manifest.  *ca*: a trustme.CA (a new one by default).  Needs root."""
    if ca is None:
        import trustme

        ca = trustme.CA()
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dumps-lab-")))
        lab = stack.enter_context(dump_lab(workdir, ca))
        setup_s = time.monotonic() - started
        jobs = calls(cases)
        timeout = START_SLACK_S + sum(c.cap_s + CALL_SLACK_S for c in cases)
        out = run_chromium(lab.lab, jobs, ca_pem=lab.ca_file, cap_s=CAP_S, timeout=timeout)
    manifest: dict[str, Any] = {
        "chromium": out.get("chromium"),
        "lab": {"server": SERVER, "blocked_relay": BLOCKED_RELAY, "dead": DEAD},
        "cases": {},
    }
    texts: dict[str, str] = {}
    for case in cases:
        result = out["results"][case.name]
        if result.get("error"):
            raise RuntimeError(f"{case.name}: the call did not run: {result['error']}")
        text = result.get("dump") or ""
        json.loads(text)  # a dump is JSON, or the recording is broken
        check_secrets(case.name, text)
        texts[case.name] = text
        manifest["cases"][case.name] = {
            "file": f"{case.name}.json",
            "expect": case.expect,
            "connected": bool(result.get("connected")),
            "ended_by": result.get("ended_by"),
            "elapsed_ms": result.get("elapsed_ms"),
            "stats_after_end": result.get("stats_after_end"),
            "peer_connections": result.get("dump_peer_connections"),
            "caller": _side(result["caller"]),
            "callee": _side(result["callee"]),
        }
    for name, text in texts.items():
        (outdir / f"{name}.json").write_text(text, encoding="utf-8")
    manifest["timing"] = {
        "setup_s": round(setup_s, 1),
        "chromium_s": round(out["timing"].get("wall_s", 0.0), 1),
        "total_s": round(time.monotonic() - started, 1),
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m tests.browser.record_dumps OUTDIR   (as root)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("record_dumps: the netns lab needs root", file=sys.stderr)
        return 2
    manifest = record(Path(argv[0]))
    for name, case in manifest["cases"].items():
        sides = []
        for role in ("caller", "callee"):
            side = case[role]
            sel = side["selected"]
            pair = (
                f"{sel['local']['candidateType']}->{sel['remote']['candidateType']}" if sel else "-"
            )
            errors = ",".join(str(e["errorCode"]) for e in side["errors"]) or "-"
            sides.append(
                f"{role} {side['connection_state']}/{side['ice_connection_state']} {pair} err {errors}"
            )
        print(f"{name:24} {case['ended_by']:9} " + "; ".join(sides))
    print(f"timing: {json.dumps(manifest['timing'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
