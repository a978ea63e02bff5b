"""The browser-equivalence suite: turncheck's `browser` answer against a real Chromium.

One lab for the module (tests/lab/netns.py): the client namespace behind a masquerading
NAT (so a srflx differs from the host address), and in the server namespace

    203.0.113.2 (+ .3)  coturn A: the healthy server (3478 udp/tcp, TLS 5349; RFC 5780)
    203.0.113.3:53      dnsmasq: the lab's names, the client namespace's only resolver
    203.0.113.4         coturn B on 3479: where SRV records point (browsers never go there)
    203.0.113.5         coturn C behind a NAT rule that drops UDP to it
    203.0.113.6         nothing: a server that is down
    203.0.113.7         coturn D with a self-signed certificate
    203.0.113.8         coturn E with TURN REST API credentials (use-auth-secret)
    203.0.113.9         coturn F on port 1000 only (a port Chromium skips for TURN)
    203.0.113.10        coturn G with no-auth (it grants an Allocate without a challenge)
    203.0.113.11        a recording front for coturn A (tests/servers/recorder.py): what
                        Chromium and turncheck put on the wire, attribute by attribute

Every scenario's RTCConfiguration is gathered by headless Chromium (all at once, one
launch, capped) and probed by turncheck from the same namespace; then for each scenario
turncheck's `browser` object must say what Chromium gathered: relay candidates by protocol,
srflx, and the icecandidateerror events. Chromium's UDP timeouts take about 40 s: within the
cap it has raised none, so turncheck's predicted timeouts are checked as "not contradicted"
(Chromium gathered nothing from that server). The URL-validation cases construct
RTCPeerConnection in Chromium and run turncheck's constructor model on the same input.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import (
    construct,
    gather,
    netns_etc,
    relay_protocol,
    require_chromium,
    run_chromium,
    run_firefox,
)
from tests.lab.netns import Lab, nat_lab, require_lab
from tests.servers.coturn import running_coturn
from tests.servers.dnsmasq import running_dnsmasq
from tests.servers.fixtures import require_tool
from tests.servers.ports import terminate
from tests.test_tls_diagnostics import self_signed_pem
from turncheck.browser import IceServerInput, check_constructor
from turncheck.errors import ConfigRejected

pytestmark = pytest.mark.timeout(240)

CAP_S = 6.0  # Chromium's gathering cap: healthy gathers complete in ~0.2 s
TURNCHECK_TIMEOUT = "2"
CAPTURE = "203.0.113.11"
HEALTHY, DNS_IP, SRV_ALT, BLOCKED, DOWN, SELF_SIGNED, REST, LOW_PORT, NO_AUTH = (
    "203.0.113.2",
    "203.0.113.3",
    "203.0.113.4",
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.7",
    "203.0.113.8",
    "203.0.113.9",
    "203.0.113.10",
)
SECRET = "lab-shared-secret-7"
ALICE = {"username": "alice", "credential": "s3cret"}
TIMEOUT_TEXTS = {"STUN binding request timed out.", "TURN allocate request timed out."}

NAMES = {
    "turn.lab.test": HEALTHY,
    "wronghost.lab.test": HEALTHY,  # not in coturn A's certificate
    "srv.lab.test": HEALTHY,
    "alt.lab.test": SRV_ALT,
    "blocked.lab.test": BLOCKED,
    "down.lab.test": DOWN,
    "selfsigned.lab.test": SELF_SIGNED,
    "rest.lab.test": REST,
    "lowport.lab.test": LOW_PORT,
    "noauth.lab.test": NO_AUTH,
    "capture.lab.test": CAPTURE,
    "srvdot.lab.test": HEALTHY,
}
SRV = [
    ("_turn._udp.srv.lab.test", "alt.lab.test", 3479, 0, 0),
    ("_turn._udp.srvonly.lab.test", "alt.lab.test", 3479, 0, 0),  # SRV but no A record
    ("_turn._udp.srvdot.lab.test", ".", 3478, 0, 0),  # "not offered" (RFC 2782), A record kept
    ("_turn._tcp.srv.lab.test", "alt.lab.test", 3479, 0, 0),
]
HOSTS_ONLY = "hostsonly.lab.test"  # in the client namespace's /etc/hosts only


def _rest_credentials(ttl: int) -> dict[str, str]:
    username = f"{int(time.time()) + ttl}:alice"
    digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    return {"username": username, "credential": base64.b64encode(digest).decode()}


def _servers(*entries: dict[str, Any], policy: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"iceServers": list(entries)}
    if policy is not None:
        config["iceTransportPolicy"] = policy
    return config


def _turn(url: str, **creds: str) -> dict[str, Any]:
    return {"urls": url, **(creds or ALICE)}


SCENARIOS: dict[str, dict[str, Any]] = {
    # healthy servers, each transport
    "healthy-udp": _servers(_turn("turn:turn.lab.test?transport=udp")),
    "healthy-tcp": _servers(_turn("turn:turn.lab.test?transport=tcp")),
    "healthy-tls": _servers(_turn("turns:turn.lab.test")),
    "stun": _servers({"urls": "stun:turn.lab.test"}),
    # 1. a bare turn: URL is UDP only (no TCP, no TLS), also with UDP blocked
    "bare-turn": _servers(_turn("turn:turn.lab.test")),
    "bare-turn-port": _servers(_turn("turn:turn.lab.test:3478")),
    "bare-turn-udp-blocked": _servers(_turn("turn:blocked.lab.test")),
    # 2. stuns: is plain STUN over UDP on 3478
    "stuns": _servers({"urls": "stuns:turn.lab.test"}),
    "stuns-udp-blocked": _servers({"urls": "stuns:blocked.lab.test"}),
    # 3. turns:...?transport=udp is TLS
    "turns-transport-udp": _servers(_turn("turns:turn.lab.test:5349?transport=udp")),
    # turns: with an IP address (coturn A's certificate names it): Firefox drops it
    "turns-ip": _servers(_turn(f"turns:{HEALTHY}:5349")),
    # 5. the relay policy
    "relay-policy": _servers(
        {"urls": "stun:turn.lab.test"},
        _turn("turn:turn.lab.test?transport=udp"),
        policy="relay",
    ),
    # 6. a name in /etc/hosts only: UDP misses it, TCP finds it
    "hosts-only-udp": _servers(_turn(f"turn:{HOSTS_ONLY}")),
    "hosts-only-tcp": _servers(_turn(f"turn:{HOSTS_ONLY}?transport=tcp")),
    # 7. DNS SRV: browsers ask none
    "srv-elsewhere": _servers(_turn("turn:srv.lab.test")),
    "srv-no-a-record": _servers(_turn("turn:srvonly.lab.test")),
    "srv-not-offered": _servers(_turn("turn:srvdot.lab.test")),
    "srv-elsewhere-tcp": _servers(_turn("turn:srv.lab.test?transport=tcp")),
    # 8. an explicit ?transport=tcp beside a bare URL: both are the browser's
    "bare-and-tcp": _servers(
        _turn(["turn:turn.lab.test", "turn:turn.lab.test?transport=tcp"])  # type: ignore[arg-type]
    ),
    # credentials
    "wrong-password": _servers(_turn("turn:turn.lab.test", username="alice", credential="wrong")),
    "unknown-user": _servers(_turn("turn:turn.lab.test", username="mallory", credential="x")),
    "rest-valid": _servers(_turn("turn:rest.lab.test", **_rest_credentials(600))),
    "rest-expired": _servers(_turn("turn:rest.lab.test", **_rest_credentials(-3600))),
    # servers down or unreachable
    "down-udp": _servers(_turn("turn:down.lab.test?transport=udp")),
    "down-tcp": _servers(_turn("turn:down.lab.test?transport=tcp")),
    "down-stun": _servers({"urls": "stun:down.lab.test"}),
    # certificates
    "tls-wrong-host": _servers(_turn("turns:wronghost.lab.test")),
    "tls-self-signed": _servers(_turn("turns:selfsigned.lab.test")),
    # a run-time rule: TURN below port 1024 (but 53, 80, 443) is never used
    "turn-low-port": _servers(_turn("turn:turn.lab.test:1000?transport=udp")),
    # ... but a UDP TURN URL there is still a STUN server: a srflx from stun:host:1000
    "turn-low-port-stun-answers": _servers(_turn("turn:lowport.lab.test:1000")),
    # every other URL form on that port: STUN forms are used, TCP and TLS TURN are not
    "stun-low-port": _servers({"urls": "stun:lowport.lab.test:1000"}),
    "stuns-low-port": _servers({"urls": "stuns:lowport.lab.test:1000"}),
    "turn-tcp-low-port": _servers(_turn("turn:lowport.lab.test:1000?transport=tcp")),
    "turns-low-port": _servers(_turn("turns:lowport.lab.test:1000")),
    # two TURN URLs: the relay preference follows the position
    "two-turn-urls": _servers(
        _turn("turn:turn.lab.test?transport=udp"), _turn("turns:turn.lab.test")
    ),
    # the relay policy with nothing it may use: no candidate and no error at all
    "relay-policy-stun-only": _servers({"urls": "stun:turn.lab.test"}, policy="relay"),
    "relay-policy-low-port": _servers(
        _turn(["turn:lowport.lab.test:1000", "turn:lowport.lab.test:1000?transport=tcp"]),  # type: ignore[arg-type]
        policy="relay",
    ),
    # a name without an A record: the lookup text is UDP's only
    "no-a-record-udp": _servers(_turn("turn:noaddr.lab.test?transport=udp")),
    "no-a-record-tcp": _servers(_turn("turn:noaddr.lab.test?transport=tcp")),
    "no-a-record-tls": _servers(_turn("turns:noaddr.lab.test")),
    # a server that needs no authentication (coturn no-auth)
    "no-auth": _servers(_turn("turn:noauth.lab.test?transport=udp")),
    # the recording front: Binding and Allocate on every transport, as put on the wire
    "capture": _servers(
        _turn(
            [  # type: ignore[arg-type]
                "turn:capture.lab.test?transport=udp",
                "turn:capture.lab.test?transport=tcp",
                "turns:capture.lab.test",
            ]
        )
    ),
}

# URL-validation cases: the entry as an app writes it; Chromium and turncheck must agree on
# "accepted" or the exception class and message.
VALIDATION: dict[str, dict[str, Any]] = {
    "stun": {"urls": "stun:a.lab.test"},
    "stun-port": {"urls": "stun:a.lab.test:3478"},
    "stun-query": {"urls": "stun:a.lab.test?transport=udp"},
    "stuns": {"urls": "stuns:a.lab.test"},
    "stuns-query": {"urls": "stuns:a.lab.test:443?transport=tcp"},
    "turn": {"urls": "turn:a.lab.test", **ALICE},
    "turn-tcp": {"urls": "turn:a.lab.test:3478?transport=tcp", **ALICE},
    "turns-udp": {"urls": "turns:a.lab.test:5349?transport=udp", **ALICE},
    "turn-sctp": {"urls": "turn:a.lab.test?transport=sctp", **ALICE},
    "turn-upper-transport": {"urls": "turn:a.lab.test?transport=UDP", **ALICE},
    "turn-query-key": {"urls": "turn:a.lab.test?foo=bar", **ALICE},
    "turn-query-no-value": {"urls": "turn:a.lab.test?transport", **ALICE},
    "http-scheme": {"urls": "http://a.lab.test"},
    "no-scheme": {"urls": "a.lab.test"},
    "upper-scheme": {"urls": "TURN:a.lab.test", **ALICE},
    "port-zero": {"urls": "turn:a.lab.test:0", **ALICE},
    "port-too-big": {"urls": "turn:a.lab.test:65536", **ALICE},
    "port-not-number": {"urls": "turn:a.lab.test:abc", **ALICE},
    "ipv6-no-brackets": {"urls": "turn:2001:db8::1", **ALICE},
    "ipv6-brackets": {"urls": "turn:[2001:db8::1]:3478", **ALICE},
    "user-at-host": {"urls": "turn:alice@a.lab.test", **ALICE},
    "empty-host": {"urls": "turn:", **ALICE},
    "empty-port": {"urls": "turn:a.lab.test:", **ALICE},
    "space-in-host": {"urls": "turn:a lab.test", **ALICE},
    "no-credentials": {"urls": "turn:a.lab.test"},
    "no-credential": {"urls": "turn:a.lab.test", "username": "alice"},
    "empty-username": {"urls": "turn:a.lab.test", "username": "", "credential": "x"},
    "empty-credential": {"urls": "turn:a.lab.test", "username": "alice", "credential": ""},
    "empty-urls": {"urls": []},
    "long-username": {"urls": "turn:a.lab.test", "username": "u" * 510, "credential": "x"},
    "stun-without-credentials-fine": {"urls": ["stun:a.lab.test", "stuns:b.lab.test:443"]},
}

CONSTRUCT_PREFIX = "Failed to construct 'RTCPeerConnection': "


@dataclass
class Equivalence:
    lab: Lab
    chromium: dict[str, Any]  # the driver's OUT.json
    turncheck: dict[str, dict[str, Any]]  # scenario → turncheck's JSON
    stderr: dict[str, str]
    wire: dict[str, list[dict[str, Any]]]  # "chromium"/"turncheck" → recorded requests
    firefox: dict[str, Any]  # tests/browser/firefox_driver.py's OUT.json, same jobs


def _turncheck_runs(lab: Lab, tmp: Path, ca_file: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """turncheck probe --ice-servers for every scenario, all at once, in the client ns."""
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, config in SCENARIOS.items():
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(config))
        argv = [sys.executable, "-m", "turncheck", "probe", "--ice-servers", str(path)]
        argv += ["--json", "--timeout", TURNCHECK_TIMEOUT, "--ca-file", str(ca_file)]
        argv += ["--count", "3"]
        procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", lab.client_ns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    out: dict[str, Any] = {}
    err: dict[str, str] = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate(timeout=10)
        assert "Traceback" not in stderr, (name, stderr)
        assert stdout.strip(), (name, proc.returncode, stderr)
        out[name] = {"code": proc.returncode, **json.loads(stdout)}
        err[name] = stderr
    return out, err


@pytest.fixture(scope="module")
def equivalence(tls_ca, ca_file: Path, tmp_path_factory) -> Iterator[Equivalence]:
    require_lab()
    require_tool("turnserver")
    require_tool("dnsmasq")
    require_chromium(ca=True)
    tmp = tmp_path_factory.mktemp("equivalence")
    with ExitStack() as stack:
        lab = stack.enter_context(nat_lab("masquerade"))
        for ip in (SRV_ALT, BLOCKED, DOWN, SELF_SIGNED, REST, LOW_PORT, NO_AUTH):
            lab.run(lab.server_ns, ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], check=True)
        lab.iptables(lab.nat_ns, "-A", "FORWARD", "-p", "udp", "-d", BLOCKED, "-j", "DROP")

        def coturn(name: str, hosts: tuple[str, ...], ports: tuple[int, int, int], **kw: Any):
            return stack.enter_context(
                running_coturn(
                    tmp / name,
                    ca=tls_ca,
                    hosts=hosts,
                    relay_ips=(hosts[0],),
                    netns=lab.server_ns,
                    netns_ports=ports,
                    **kw,
                )
            )

        coturn(
            "healthy",
            (HEALTHY, DNS_IP),
            (3478, 5349, 49152),
            cert_hostnames=("turn.lab.test", "srv.lab.test", HOSTS_ONLY, HEALTHY),
        )
        coturn("alt", (SRV_ALT,), (3479, 5351, 49210), cert_hostnames=("alt.lab.test",))
        coturn("blocked", (BLOCKED,), (3478, 5349, 49260), cert_hostnames=("blocked.lab.test",))
        coturn("selfsigned", (SELF_SIGNED,), (3478, 5349, 49310), cert_pem=self_signed_pem())
        coturn(
            "rest",
            (REST,),
            (3478, 5349, 49360),
            cert_hostnames=("rest.lab.test",),
            extra=("use-auth-secret", f"static-auth-secret={SECRET}"),
        )
        coturn("lowport", (LOW_PORT,), (1000, 5349, 49410), cert_hostnames=("lowport.lab.test",))
        coturn("noauth", (NO_AUTH,), (3478, 5349, 49460), extra=("no-auth",))
        dns = stack.enter_context(
            running_dnsmasq(
                tmp / "dnsmasq",
                hosts=list(NAMES.items()),
                srv=SRV,
                netns=lab.server_ns,
                host=DNS_IP,
            )
        )
        stack.enter_context(netns_etc(lab.client_ns, dns.host, {HOSTS_ONLY: HEALTHY}))
        wire_log = stack.enter_context(_recorder(lab, tls_ca, tmp))
        jobs = [gather(name, config) for name, config in SCENARIOS.items()]
        jobs += [
            construct(f"validate:{name}", {"iceServers": [entry]})
            for name, entry in VALIDATION.items()
        ]
        chromium = run_chromium(lab, jobs, ca_pem=ca_file, cap_s=CAP_S)
        chromium_wire = _records(wire_log)
        firefox = run_firefox(lab, jobs, ca_pem=ca_file, cap_s=CAP_S)
        firefox_wire = len(_records(wire_log))
        turncheck, stderr = _turncheck_runs(lab, tmp, ca_file)
        wire = {
            "chromium": chromium_wire,
            "turncheck": _records(wire_log)[firefox_wire:],
        }
        yield Equivalence(lab, chromium, turncheck, stderr, wire, firefox)


@contextmanager
def _recorder(lab: Lab, tls_ca: Any, tmp: Path) -> Iterator[Path]:
    """tests/servers/recorder.py in the server namespace, in front of coturn A."""
    lab.run(lab.server_ns, ["ip", "addr", "add", f"{CAPTURE}/24", "dev", "eth0"], check=True)
    leaf = tls_ca.issue_cert("capture.lab.test")
    cert, key = tmp / "capture.pem", tmp / "capture.key"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    out = tmp / "wire.jsonl"
    argv = [sys.executable, "-m", "tests.servers.recorder", "--listen", CAPTURE]
    argv += ["--upstream", HEALTHY, "--cert", str(cert), "--key", str(key), "--out", str(out)]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.server_ns, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        yield out
    finally:
        terminate(proc, proc.send_signal, 5.0)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def chromium_answer(result: dict[str, Any]) -> dict[str, Any]:
    """What Chromium gathered, in the shape of turncheck's `browser` object."""
    candidates = result["candidates"]
    order = {"udp": 0, "tcp": 1, "tls": 2}
    relays = {relay_protocol(c) for c in candidates if c["type"] == "relay"}
    return {
        "relay": sorted((r for r in relays if r), key=order.__getitem__),
        "srflx": any(c["type"] == "srflx" for c in candidates),
        "errors": {(e["url"], e["errorCode"], e["errorText"]) for e in result["errors"]},
    }


def turncheck_answer(doc: dict[str, Any]) -> dict[str, Any]:
    browser = doc["browser"]
    return {
        "relay": browser["relay"],
        "srflx": browser["srflx"],
        "errors": {(e["url"], e["code"], e["text"]) for e in browser["errors"]},
    }


def test_side_by_side_table(equivalence: Equivalence) -> None:
    """Prints each scenario's outcome in Chromium and in turncheck (pytest -s shows it)."""
    lines = []
    for name in SCENARIOS:
        theirs = chromium_answer(equivalence.chromium["results"][name])
        ours = turncheck_answer(equivalence.turncheck[name])

        def text(answer: dict[str, Any]) -> str:
            errors = ", ".join(f"{code} {msg}" for _, code, msg in sorted(answer["errors"]))
            relay = "+".join(answer["relay"]) or "none"
            return f"relay {relay}, srflx {'yes' if answer['srflx'] else 'no'}; {errors or '-'}"

        lines.append(
            f"| {name} | {text(theirs)} | {text(ours)} | {equivalence.turncheck[name]['code']} |"
        )
    print("\n| scenario | Chromium | turncheck browser | exit |\n|---|---|---|---|")
    print("\n".join(lines))
    assert len(lines) == len(SCENARIOS)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_turncheck_says_what_chromium_gathers(equivalence: Equivalence, scenario: str) -> None:
    seen = equivalence.chromium["results"][scenario]
    assert seen["error"] is None, seen
    ours = turncheck_answer(equivalence.turncheck[scenario])
    theirs = chromium_answer(seen)
    context = (scenario, ours, theirs, equivalence.turncheck[scenario]["verdict"])
    assert ours["relay"] == theirs["relay"], context
    assert ours["srflx"] == theirs["srflx"], context
    # Every error Chromium raised, turncheck predicted with the same url, code and text.
    assert theirs["errors"] <= ours["errors"], context
    # What Chromium has not raised yet can only be its ~40 s UDP timeouts.
    missing = ours["errors"] - theirs["errors"]
    assert all(text in TIMEOUT_TEXTS for _, _, text in missing), context


def _relay_priorities(candidates: list[dict[str, Any]]) -> dict[str, int]:
    return {relay_protocol(c) or "": int(c["priority"]) for c in candidates if c["type"] == "relay"}


@pytest.mark.parametrize("scenario", ["healthy-udp", "healthy-tls", "two-turn-urls", "stun"])
def test_candidate_priorities_are_chromiums(equivalence: Equivalence, scenario: str) -> None:
    """priority in turncheck's sdp lines = what chrome://webrtc-internals shows."""
    seen = equivalence.chromium["results"][scenario]["candidates"]
    checks = [c for c in equivalence.turncheck[scenario]["checks"] if not c["extra"]]
    ours_relay: dict[str, int] = {}
    ours_srflx: set[int] = set()
    for check in checks:
        for cand in check["candidates"]:
            priority = int(cand["sdp"].split()[3])
            if cand["type"] == "relay":
                ours_relay[cand["relay_protocol"]] = priority
            elif cand["type"] == "srflx" and check["transport"] == "udp":
                ours_srflx.add(priority)
    assert ours_relay == _relay_priorities(seen)
    theirs_srflx = {int(c["priority"]) for c in seen if c["type"] == "srflx"}
    if theirs_srflx:
        assert theirs_srflx <= ours_srflx


def test_bare_turn_with_udp_blocked_says_no_relay_and_advises_tcp_and_tls(
    equivalence: Equivalence,
) -> None:
    doc = equivalence.turncheck["bare-turn-udp-blocked"]
    assert doc["code"] == 1
    assert doc["browser"]["relay"] == [] and doc["browser"]["ok"] is False
    verdict = doc["verdict"]
    assert verdict.startswith(
        "calls that need TURN fail: a browser with this configuration gets no relay candidate"
    )
    assert (
        "add turn:blocked.lab.test:3478?transport=tcp and "
        "turns:blocked.lab.test:5349?transport=tcp" in verdict
    )
    extra = [
        c
        for c in doc["checks"]
        if c["extra"] and c["kind"] == "turn" and not c["via"].startswith("SRV")
    ]
    assert {c["transport"] for c in extra if c["ok"]} == {"tcp", "tls"}


def test_srv_differences_are_named(equivalence: Equivalence) -> None:
    doc = equivalence.turncheck["srv-elsewhere"]
    assert doc["code"] == 0
    assert "SRV sends RFC clients to alt.lab.test:3479 (udp), but browsers use" in doc["verdict"]
    srv_rows = [c for c in doc["checks"] if c["via"].startswith("SRV")]
    assert srv_rows and all(c["extra"] and c["server"] == f"{SRV_ALT}:3479" for c in srv_rows)


def test_exit_codes_answer_will_calls_work(equivalence: Equivalence) -> None:
    codes = {name: doc["code"] for name, doc in equivalence.turncheck.items()}
    for good in ("healthy-udp", "healthy-tcp", "healthy-tls", "bare-turn", "relay-policy"):
        assert codes[good] == 0, (good, equivalence.turncheck[good]["verdict"])
    for bad in ("bare-turn-udp-blocked", "wrong-password", "rest-expired", "down-tcp"):
        assert codes[bad] == 1, (bad, equivalence.turncheck[bad]["verdict"])


def test_policy_from_the_configuration_is_honoured(equivalence: Equivalence) -> None:
    doc = equivalence.turncheck["relay-policy"]
    assert doc["relay_only"] is True and doc["browser"]["relay_only"] is True


def _server_input(entry: dict[str, Any]) -> IceServerInput:
    """A VALIDATION entry as the browser models take it."""
    urls = entry.get("urls", [])
    return IceServerInput(
        tuple([urls] if isinstance(urls, str) else urls),
        entry.get("username"),
        entry.get("credential"),
        "iceServers[0]",
    )


def _turncheck_constructs(entry: dict[str, Any]) -> dict[str, str] | None:
    server = _server_input(entry)
    try:
        check_constructor([server])
    except ConfigRejected as exc:
        return {"name": exc.exception, "message": exc.message}
    return None


@pytest.mark.parametrize("case", list(VALIDATION))
def test_constructor_validation_is_chromiums(equivalence: Equivalence, case: str) -> None:
    seen = equivalence.chromium["results"][f"validate:{case}"]["error"]
    if seen is not None:
        seen = {"name": seen["name"], "message": seen["message"].removeprefix(CONSTRUCT_PREFIX)}
    assert _turncheck_constructs(VALIDATION[case]) == seen


def test_relay_policy_verdicts_start_with_what_the_browser_gets(equivalence: Equivalence) -> None:
    stun_only = equivalence.turncheck["relay-policy-stun-only"]
    assert stun_only["code"] == 1  # a valid configuration that yields nothing: not bad input
    assert stun_only["verdict"].startswith(
        "calls fail: a browser with this configuration (iceTransportPolicy relay) gathers no "
        "candidate at all: the configuration has no TURN server"
    )
    low = equivalence.turncheck["relay-policy-low-port"]
    assert low["code"] == 1  # calls must work in both browsers (--browser all)
    assert low["verdict"].startswith(
        "calls work in Firefox, not in Chromium: Chromium with this configuration "
        "(iceTransportPolicy relay) gathers no candidate at all: it skips every TURN URL of it "
        "(Chromium never uses a TURN server on port 1000"
    )
    assert (
        "Firefox with this configuration (iceTransportPolicy relay) gets relay candidates "
        "over UDP and TCP" in low["verdict"]
    )
    # The low port's STUN use: a srflx, and the TURN URL named as skipped, not failed.
    stun_too = equivalence.turncheck["turn-low-port-stun-answers"]
    assert stun_too["browser"]["srflx"] is True and stun_too["code"] == 0
    assert stun_too["browser"]["skipped"][0]["url"] == "turn:lowport.lab.test:1000?transport=udp"


def test_a_server_without_authentication_gives_chromium_no_relay(equivalence: Equivalence) -> None:
    """Chromium 156 discards an Allocate success that came without a challenge: no relay, and
    within the cap no error either (its timeout is ~40 s). turncheck relays (an open relay)
    and says the browser gets nothing."""
    assert equivalence.chromium["results"]["no-auth"]["candidates"]
    doc = equivalence.turncheck["no-auth"]
    assert doc["code"] == 1 and doc["browser"]["relay"] == []
    assert "granted the Allocate without authentication" in doc["verdict"]


# -- what goes on the wire: turncheck's requests for the browser's checks are Chromium's -----

BINDING, ALLOCATE = "0x0001", "0x0003"
NAMES_OF = {
    "0x0019": "REQUESTED-TRANSPORT",
    "0x0006": "USERNAME",
    "0x0014": "REALM",
    "0x0015": "NONCE",
    "0x0008": "MESSAGE-INTEGRITY",
    "0x8028": "FINGERPRINT",
    "0x0017": "REQUESTED-ADDRESS-FAMILY",
    "0x8022": "SOFTWARE",
}


def _requests(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], set[tuple[str, ...]]]:
    """(transport, method, phase) → the attribute lists sent, named; Binding and Allocate."""
    out: dict[tuple[str, str, str], set[tuple[str, ...]]] = {}
    for record in records:
        if record["type"] not in (BINDING, ALLOCATE):
            continue
        method = "Binding" if record["type"] == BINDING else "Allocate"
        phase = "signed" if "0x0008" in record["attrs"] else "unsigned"
        names = tuple(NAMES_OF.get(a, a) for a in record["attrs"])
        out.setdefault((record["transport"], method, phase), set()).add(names)
    return out


def test_turncheck_sends_chromiums_attributes(equivalence: Equivalence) -> None:
    """Captured at the recording front over UDP, TCP and TLS: every Binding and Allocate that
    Chromium sent, turncheck sent with the same attributes in the same order (prints the
    table; pytest -s shows it)."""
    chromium = _requests(equivalence.wire["chromium"])
    ours = _requests(equivalence.wire["turncheck"])
    print("\n| transport | request | Chromium 156 | turncheck |\n|---|---|---|---|")
    for key in sorted(chromium):
        print(
            f"| {key[0]} | {key[1]} ({key[2]}) | {sorted(chromium[key])} | {sorted(ours.get(key, set()))} |"
        )
    assert {("udp", "Binding", "unsigned"), ("udp", "Allocate", "signed")} <= set(chromium)
    assert {("tcp", "Allocate", "signed"), ("tls", "Allocate", "signed")} <= set(chromium)
    for key, sent in chromium.items():
        assert ours.get(key) == sent, (key, sent, ours.get(key))


# -- Firefox: the same scenarios, gathered by Debian's firefox-esr over WebDriver BiDi -------

FIREFOX_TIMEOUT_CODES = {701}  # its UDP timeouts (~11.1 s) come after the cap


def firefox_answer(result: dict[str, Any]) -> dict[str, Any]:
    """What Firefox gathered: relay protocols from getStats, srflx, errors (url, code)."""
    relays = {
        result["relay_protocols"].get(f"{c['address']}:{c['port']}")
        for c in result["candidates"]
        if c["type"] == "relay"
    }
    order = {"udp": 0, "tcp": 1, "tls": 2}
    rejected = result["error"]
    return {
        "relay": sorted((r for r in relays if r), key=order.__getitem__),
        "srflx": any(c["type"] == "srflx" for c in result["candidates"]),
        "errors": {(e["url"], e["errorCode"]) for e in result["errors"]},
        "rejected": None if rejected is None else (rejected["name"], rejected["message"]),
    }


def turncheck_firefox(doc: dict[str, Any]) -> dict[str, Any]:
    ff = doc["browsers"]["firefox"]
    rejected = ff["rejected"]
    return {
        "relay": ff["relay"],
        "srflx": ff["srflx"],
        "errors": {(e["url"], e["code"]) for e in ff["errors"]},
        "rejected": None if rejected is None else (rejected["exception"], rejected["message"]),
        "late": set(ff["late"]),
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_turncheck_says_what_firefox_gathers(equivalence: Equivalence, scenario: str) -> None:
    theirs = firefox_answer(equivalence.firefox["results"][scenario])
    ours = turncheck_firefox(equivalence.turncheck[scenario])
    context = (scenario, ours, theirs, equivalence.turncheck[scenario]["verdict"])
    assert ours["rejected"] == theirs["rejected"], context
    assert ours["relay"] == theirs["relay"], context
    assert ours["srflx"] == theirs["srflx"], context
    assert theirs["errors"] <= ours["errors"], context
    # What Firefox has not raised yet can only be what comes after its ~11 s UDP timeout.
    missing = ours["errors"] - theirs["errors"]
    assert all(url in ours["late"] for url, _ in missing), context


@pytest.mark.parametrize("case", list(VALIDATION))
def test_constructor_validation_is_firefoxs(equivalence: Equivalence, case: str) -> None:
    from turncheck import firefox

    seen = equivalence.firefox["results"][f"validate:{case}"]["error"]
    ours = firefox.check_constructor([_server_input(VALIDATION[case])])
    assert (None if ours is None else {"name": ours.exception, "message": ours.message}) == (
        None if seen is None else {"name": seen["name"], "message": seen["message"]}
    )


def test_firefox_side_by_side_table(equivalence: Equivalence) -> None:
    """scenario | Chromium | Firefox | turncheck's prediction for each (pytest -s)."""

    def text(answer: dict[str, Any]) -> str:
        if answer.get("rejected"):
            return f"throws {answer['rejected'][0]}"
        relay = "+".join(answer["relay"]) or "none"
        return f"relay {relay}, srflx {'yes' if answer['srflx'] else 'no'}"

    print("\n| scenario | Chromium | Firefox | turncheck: Chromium / Firefox | exit |")
    print("|---|---|---|---|---|")
    for name in SCENARIOS:
        chromium = chromium_answer(equivalence.chromium["results"][name])
        ff = firefox_answer(equivalence.firefox["results"][name])
        doc = equivalence.turncheck[name]
        ours = f"{text(turncheck_answer(doc))} / {text(turncheck_firefox(doc))}"
        print(f"| {name} | {text(chromium)} | {text(ff)} | {ours} | {doc['code']} |")


def test_turns_with_an_ip_address_says_which_browser_gets_what(equivalence: Equivalence) -> None:
    doc = equivalence.turncheck["turns-ip"]  # probed with --ice-servers, as an app gives it
    assert doc["code"] == 1
    assert doc["verdict"].startswith(
        "calls work in Chromium, not in Firefox: Chromium with this configuration gets relay "
        f"candidates over TLS; Firefox drops turns:{HEALTHY}:5349: TLS needs a host name"
    ), doc["verdict"]
    assert doc["browsers"]["chromium"]["relay"] == ["tls"]
    assert doc["browsers"]["firefox"]["relay"] == []
