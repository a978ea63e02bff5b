"""`turncheck probe` end to end against a real coturn on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block
from tests.servers.proxy import udp_delay_proxy

CREDS = ("-u", "alice", "-p", "s3cret")


def by_key(doc: dict) -> dict[tuple[str, str, str], dict]:
    return {(c["url"], c["transport"], c["kind"]): c for c in doc["checks"]}


def test_one_turn_host_over_udp_tcp_tls_gives_srflx_and_relay(
    cli, coturn: Coturn, ca_file: Path
) -> None:
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}",
        f"turns:localhost:{coturn.tls_port}?transport=tcp",
        *CREDS,
        "--ca-file",
        str(ca_file),
        "--json",
    )
    assert result.code == 0, result.out + result.err
    doc = result.json()
    assert doc["schema"] == 1 and doc["ok"] is True
    assert {(c["transport"], c["kind"]) for c in doc["checks"]} == {
        (t, k) for t in ("udp", "tcp", "tls") for k in ("stun", "turn")
    }
    for check in doc["checks"]:
        assert check["ok"] is True and check["error"] is None
        assert check["rtt_ms"] > 0
        types = [c["type"] for c in check["candidates"]]
        srflx = check["candidates"][0]
        assert srflx["type"] == "srflx" and srflx["address"] == "127.0.0.1"
        assert srflx["protocol"] == ("udp" if check["transport"] == "udp" else "tcp")
        if check["kind"] == "turn":
            assert types == ["srflx", "relay"]
            relay = check["candidates"][1]
            assert relay["protocol"] == "udp" and relay["relay_protocol"] == check["transport"]
            assert coturn.min_port <= relay["port"] <= coturn.max_port
            assert check["details"]["deleted"] is True
            assert check["details"]["software"].startswith("Coturn")
            assert check["details"]["lifetime"] == 600
            assert " typ relay raddr 127.0.0.1 " in relay["sdp"]
        else:
            assert types == ["srflx"]
    tls = by_key(doc)[(f"turns:localhost:{coturn.tls_port}?transport=tcp", "tls", "turn")]
    assert tls["server"] == f"127.0.0.1:{coturn.tls_port}"
    assert tls["details"]["tls"]["verified"] is True


def test_json_has_the_documented_minimum_shape(cli, coturn: Coturn) -> None:
    result = cli("probe", f"turn:127.0.0.1:{coturn.port}?transport=udp", *CREDS, "--json")
    doc = result.json()
    assert {"schema", "ok", "checks", "nat"} <= doc.keys()
    check = doc["checks"][1]
    assert {
        "url",
        "server",
        "transport",
        "kind",
        "ok",
        "rtt_ms",
        "candidates",
        "error",
    } <= check.keys()
    assert check["url"] == f"turn:127.0.0.1:{coturn.port}?transport=udp"
    assert check["server"] == f"127.0.0.1:{coturn.port}"
    assert {"type", "address", "port", "protocol"} <= check["candidates"][0].keys()
    # On loopback the server sees this host's own address: no NAT, as `turncheck nat` says.
    assert doc["nat"] == {
        "symmetric": False,
        "basis": "no NAT: the server sees this host's own address",
    }
    assert "s3cret" not in result.out


def test_probe_and_nat_agree_on_a_plain_server(cli, coturn_factory) -> None:
    """One NAT method for both commands: no RFC 5780 here, and no NAT on loopback."""
    server = coturn_factory(extra=["no-rfc5780"], tls=False)
    probe = cli("probe", f"stun:127.0.0.1:{server.port}", "--transport", "udp", "--json")
    nat = cli("nat", f"stun:127.0.0.1:{server.port}", "--json")
    assert probe.json()["nat"]["symmetric"] is False
    assert nat.json()["symmetric"] is False
    assert "no NAT" in probe.json()["nat"]["basis"]


def test_table_output_has_rows_verdict_and_nat_line(cli, coturn: Coturn) -> None:
    result = cli("probe", f"stun:127.0.0.1:{coturn.port}", f"stun:127.0.0.2:{coturn.port}")
    assert result.code == 0
    assert result.out.count(" ok ") == 4
    assert "all 4 checks passed" in result.out
    assert "symmetric NAT: no (no NAT: the server sees this host's own address)" in result.out
    assert "\x1b[" not in result.out  # NO_COLOR and not a TTY: plain text


def test_wrong_credential_is_explained_and_exits_1(cli, coturn: Coturn) -> None:
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        "-u",
        "alice",
        "-p",
        "WRONG-pw-77",
        "--json",
    )
    assert result.code == 1
    turn = by_key(result.json())[(f"turn:127.0.0.1:{coturn.port}?transport=udp", "udp", "turn")]
    assert turn["ok"] is False
    assert turn["error"]["code"] == 401
    assert "wrong username or credential, or realm mismatch" in turn["error"]["reason"]
    assert turn["error"]["hint"]
    assert "WRONG-pw-77" not in result.out + result.err


def test_closed_port_over_udp_and_tcp_fails_fast_with_a_reason(cli) -> None:
    port = free_port_block(1)
    start = time.monotonic()
    result = cli("probe", f"stun:127.0.0.1:{port}", "--timeout", "3", "--json")
    elapsed = time.monotonic() - start
    assert result.code == 1
    checks = result.json()["checks"]
    assert [c["transport"] for c in checks] == ["udp", "tcp"]
    for check in checks:
        assert check["ok"] is False
        assert "connection refused" in check["error"]["reason"]
        assert "listens" in check["error"]["hint"]
    assert elapsed < 3, "ICMP port unreachable must end the UDP check at once, not at the timeout"


def test_silent_udp_server_times_out_after_the_rfc_schedule(cli) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        result = cli(
            "probe",
            f"stun:127.0.0.1:{port}?transport=udp".replace("?transport=udp", ""),
            "--transport",
            "udp",
            "--timeout",
            "1.6",
            "--json",
        )
    finally:
        silent.close()
    check = result.json()["checks"][0]
    assert result.code == 1
    # RFC 8489 §6.2.1 sends at 0, 0.5 and 1.5 s: three sends fit in 1.6 s.
    assert check["error"]["reason"].startswith("no answer to STUN Binding (udp) after 3 send(s)")
    assert "UDP may be blocked" in check["error"]["hint"]


def test_silent_tcp_server_gets_one_send_no_retransmission(cli) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        port = listener.getsockname()[1]
        result = cli(
            "probe", f"stun:127.0.0.1:{port}", "--transport", "tcp", "--timeout", "1", "--json"
        )
    finally:
        listener.close()
    check = result.json()["checks"][0]
    assert check["error"]["reason"].startswith("no answer to STUN Binding (tcp) after 1 send(s)")


def test_tls_wrong_host_untrusted_ca_and_insecure(cli, coturn: Coturn, ca_file: Path) -> None:
    wrong = cli(
        "probe",
        f"turns:127.0.0.2:{coturn.tls_port}?transport=tcp",
        *CREDS,
        "--ca-file",
        str(ca_file),
        "--json",
    )
    assert wrong.code == 1
    for check in wrong.json()["checks"]:
        assert "does not match the URL host" in check["error"]["reason"]
        assert "127.0.0.2" in check["error"]["reason"]
    untrusted = cli("probe", f"stuns:localhost:{coturn.tls_port}", "--transport", "tls", "--json")
    assert untrusted.code == 1
    reason = untrusted.json()["checks"][0]["error"]
    assert "not signed by a trusted CA" in reason["reason"] and "--ca-file" in reason["hint"]
    insecure = cli(
        "probe", f"stuns:127.0.0.2:{coturn.tls_port}", "--transport", "tls", "--insecure"
    )
    assert insecure.code == 0
    assert "NOT verified (--insecure)" in insecure.out or "verification was skipped" in insecure.out


def test_ipv6_loopback(cli, coturn_factory) -> None:
    if not socket.has_ipv6 or not Path("/proc/net/if_inet6").exists():
        pytest.skip("this machine has no IPv6")
    try:
        probe_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe_sock.bind(("::1", 0))
        probe_sock.close()
    except OSError:
        pytest.skip("this machine has no ::1")
    # Browsers send no REQUESTED-ADDRESS-FAMILY (turn_port.cc), so over IPv6 they ask for
    # an IPv4 relay (RFC 8656 §7.1): a server listening on ::1 must relay over IPv4 too.
    server = coturn_factory(hosts=("::1",), tls=False, relay_ips=("127.0.0.1", "::1"))
    result = cli("probe", f"turn:[::1]:{server.port}", *CREDS, "--json")
    assert result.code == 0, result.out
    for check in result.json()["checks"]:
        assert check["server"] == f"[::1]:{server.port}"
        assert check["candidates"][0]["address"] == "::1"
        if check["kind"] == "turn":
            assert check["candidates"][1]["address"] == "127.0.0.1"
    v6_relays_only = coturn_factory(hosts=("::1",), tls=False)
    result = cli("probe", f"turn:[::1]:{v6_relays_only.port}", *CREDS, "--json")
    assert result.code == 1
    turn = next(c for c in result.json()["checks"] if c["kind"] == "turn")
    assert turn["error"]["code"] == 440
    assert "browsers ask for none" in turn["error"]["reason"]
    assert "IPv4 relay address" in turn["error"]["hint"]
    assert turn["details"]["browser_error"] == {"code": 440, "text": "TURN allocate error."}
    only4 = cli("probe", f"turn:[::1]:{server.port}", *CREDS, "-4", "--json")
    assert only4.code == 1
    assert "no IPv4 address" in only4.json()["checks"][0]["error"]["reason"]


def test_srv_resolution_checks_every_address_and_verifies_tls_against_the_url_host(
    cli, coturn_factory, dns_server, ca_file: Path
) -> None:
    server = coturn_factory(cert_hostnames=("turn.test",))
    dns = dns_server(
        srv=[
            ("_turn._udp.turn.test", "relay1.turn.test", server.port, 0, 0),
            ("_turn._tcp.turn.test", "relay1.turn.test", server.port, 0, 0),
            ("_turns._tcp.turn.test", "relay1.turn.test", server.tls_port, 0, 0),
        ],
        hosts=[("relay1.turn.test", "127.0.0.1"), ("relay1.turn.test", "127.0.0.3")],
    )
    result = cli(
        "probe",
        "turn:turn.test",
        *CREDS,
        "--dns-server",
        dns.address,
        "--ca-file",
        str(ca_file),
        "--timeout",
        "1",
        "--json",
    )
    doc = result.json()
    assert result.code == 1
    # Browsers ask no SRV: turn.test has no A record, so the browser's own checks fail...
    own = [c for c in doc["checks"] if not c["extra"]]
    assert own and all("turn.test." in c["error"]["reason"] for c in own), own
    assert {
        "url": "turn:turn.test:3478?transport=udp",
        "code": 701,
        "text": "TURN host lookup received error.",
    } in doc["browser"]["errors"]
    assert doc["browser"]["relay"] == []
    # ... while RFC clients follow SRV: every address behind it is checked, as extras.
    checks = [c for c in doc["checks"] if c["via"].startswith("SRV")]
    assert all(c["extra"] for c in checks)
    assert len(checks) == 12  # 3 transports × 2 addresses × (Binding + Allocate)
    good = [c for c in checks if c["server"].startswith("127.0.0.1:")]
    dead = [c for c in checks if c["server"].startswith("127.0.0.3:")]
    assert len(good) == len(dead) == 6
    assert all(c["ok"] for c in good), [c["error"] for c in good if not c["ok"]]
    assert not any(c["ok"] for c in dead)
    tls = next(c for c in good if c["transport"] == "tls")
    assert tls["server"] == f"127.0.0.1:{server.tls_port}"
    assert tls["via"] == f"SRV _turns._tcp.turn.test → relay1.turn.test:{server.tls_port}"


def test_dns_failures_are_failed_checks_not_crashes(cli, dns_server) -> None:
    dns = dns_server(
        srv=[("_stun._udp.off.test", ".", 0, 0, 0)],
        hosts=[("plain.test", "127.0.0.1")],
    )
    result = cli(
        "probe",
        "stun:missing.test:3478",
        "stun:off.test",
        "stun:plain.test",
        "--transport",
        "udp",
        "--dns-server",
        dns.address,
        "--timeout",
        "1",
        "--json",
    )
    assert result.code == 1
    checks = {c["url"]: c for c in result.json()["checks"]}
    assert "does not exist in DNS" in checks["stun:missing.test:3478"]["error"]["reason"]
    assert "not offered" in checks["stun:off.test"]["error"]["reason"]
    fallback = checks["stun:plain.test"]
    assert fallback["server"] == "127.0.0.1:3478"
    assert fallback["via"] == "A/AAAA plain.test."  # as Chromium: an absolute name, no SRV


def test_allocations_are_deleted_so_a_small_quota_allows_probe_after_probe(
    cli, coturn_factory
) -> None:
    # Each probe holds two allocations at once (the relay check's pair): quota 2.
    server = coturn_factory(extra=["user-quota=2"], tls=False)
    url = f"turn:127.0.0.1:{server.port}"
    for transport in ("udp", "tcp", "udp"):
        result = _retry_quota(cli, f"{url}?transport={transport}")
        assert result.code == 0, result.out
    # Refresh(0) answered for every allocation: coturn logs the deletion request.
    assert server.log_text().count("lifetime=0") >= 6


def _retry_quota(cli, url: str):
    # coturn frees a deleted allocation's quota on its next 1-second timer tick; a leaked
    # allocation keeps it for its whole 600 s lifetime, so 3 s separates the two cases.
    deadline = time.monotonic() + 3
    while True:
        result = cli("probe", url, *CREDS, "--json")
        if result.code == 0 or "486" not in result.out or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_300_alternate_server_is_followed_once_and_shown(
    cli, coturn: Coturn, coturn_factory
) -> None:
    redirector = coturn_factory(extra=[f"alternate-server=127.0.0.1:{coturn.port}"], tls=False)
    result = cli("probe", f"turn:127.0.0.1:{redirector.port}?transport=udp", *CREDS, "--json")
    assert result.code == 0, result.out
    turn = result.json()["checks"][1]
    assert turn["server"] == f"127.0.0.1:{coturn.port}"
    assert turn["details"]["redirected_from"] == f"127.0.0.1:{redirector.port}"


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated (SIGTERM)"),
        (signal.SIGHUP, 129, "hung up (SIGHUP)"),
    ],
)
def test_signal_mid_allocation_still_deletes_it(coturn_factory, sig, code: int, word: str) -> None:
    """Ctrl-C, a CI job timeout's SIGTERM and a closed terminal's SIGHUP alike."""
    server = coturn_factory(extra=["user-quota=1"], tls=False)
    with udp_delay_proxy(("127.0.0.1", server.port), delay=1.0) as proxy:
        env = {**os.environ, "TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "turncheck",
                "probe",
                f"turn:127.0.0.1:{proxy.port}?transport=udp",
                "--timeout",
                "5",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # The authenticated Allocate leaves at ~1.0 s and coturn allocates at once; its
        # answer is held back until ~2.0 s. Interrupt in between.
        time.sleep(1.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == code, (out, err)
    assert "Traceback" not in err
    assert word in err
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted, "the interrupted probe must delete its allocation"


def test_dry_run_sends_no_dns_query_and_no_packet(cli, dns_server) -> None:
    dns = dns_server(hosts=[("turn.test", "127.0.0.1")])
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        port = listener.getsockname()[1]
        before = dns.log_text().count("query[")
        result = cli(
            "probe",
            "turn:turn.test",
            f"stun:127.0.0.1:{port}",
            *CREDS,
            "--dns-server",
            dns.address,
            "--dry-run",
        )
        assert result.code == 0
        assert "turn:turn.test" in result.out and "nothing sent" in result.out
        with pytest.raises(BlockingIOError):
            listener.recv(2048)
        # The same command without --dry-run does query: the log is a working witness.
        cli(
            "probe",
            f"stun:turn.test:{port}",
            "--transport",
            "udp",
            "--dns-server",
            dns.address,
            "--timeout",
            "0.5",
        )
        assert dns.log_text().count("query[") > before
    finally:
        listener.close()
    assert dns.log_text().count("query[") - before == 2  # A and AAAA of the real run only
