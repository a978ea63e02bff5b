"""Self-tests of the netns lab: each NAT mode behaves as PROTOCOL.md says
(checked with coturn's own turnutils_natdiscovery), loss and teardown work,
and the lab has no route out.

Traffic stays inside the namespaces these tests create (192.0.2.0/24 and
203.0.113.0/24 only).  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.lab.netns import (
    LAB_PREFIXES,
    NAT_MODES,
    Lab,
    LabError,
    cleanup_stale,
    nat_lab,
    require_lab,
)
from tests.servers.coturn import Coturn, running_coturn
from tests.servers.fixtures import require_tool

pytestmark = pytest.mark.timeout(60)

NATDISCOVERY_TIMEOUT = 10.0  # it gives up by itself after ~3 s per unanswered test

# One UDP STUN Binding from a connected socket: prints answer / refused / timeout.
UDP_PROBE = r"""
import os, socket, struct, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
tid = os.urandom(12)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(timeout)
s.connect((host, port))
try:
    s.send(struct.pack("!HHI", 1, 0, 0x2112A442) + tid)
    data = s.recv(2048)
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
else:
    print("answer" if data[8:20] == tid else "other")
"""

TCP_PROBE = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])):
    print("connected")
"""


@pytest.fixture
def lab_coturn(
    lab_factory: Callable[..., Lab], tmp_path: Path
) -> Iterator[Callable[[str], tuple[Lab, Coturn]]]:
    """``make(mode) -> (lab, coturn)``: a lab plus coturn (RFC 5780 on the two
    server addresses, alice:s3cret, no TLS) in its server namespace."""
    require_tool("turnserver")
    with ExitStack() as stack:

        def make(mode: str) -> tuple[Lab, Coturn]:
            lab = lab_factory(mode)
            server = stack.enter_context(
                running_coturn(
                    tmp_path / f"coturn-{lab.tag}",
                    tls=False,
                    hosts=lab.server_ips,
                    relay_ips=(lab.server_ips[0],),
                    netns=lab.server_ns,
                )
            )
            return lab, server

        yield make


def natdiscovery(lab: Lab, server: Coturn, flag: str) -> str:
    """Run turnutils_natdiscovery -m or -f from the client namespace; stdout."""
    require_tool("turnutils_natdiscovery")
    argv = ["turnutils_natdiscovery", flag, "-p", str(server.port), lab.server_ips[0]]
    proc = lab.run(lab.client_ns, argv, timeout=NATDISCOVERY_TIMEOUT)
    return proc.stdout + proc.stderr


def client_python(lab: Lab, script: str, *args: str, timeout: float = 10) -> str:
    proc = lab.run(lab.client_ns, [sys.executable, "-c", script, *args], timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_mode_none_routes_without_nat(lab_coturn) -> None:
    lab, server = lab_coturn("none")
    out = natdiscovery(lab, server, "-m")
    assert "NAT with Endpoint Independent Mapping!" in out, out
    # no translation: the server sees the client's own address
    assert f"UDP reflexive addr: {lab.client_ip}:" in out, out
    assert "Other addr: : 203.0.113.3:3479" in out, out  # RFC 5780 is on
    out = natdiscovery(lab, server, "-f")
    assert "NAT with Endpoint Independent Filtering!" in out, out


def test_mode_masquerade_is_port_restricted_cone(lab_coturn) -> None:
    lab, server = lab_coturn("masquerade")
    out = natdiscovery(lab, server, "-m")
    assert "NAT with Endpoint Independent Mapping!" in out, out
    assert f"UDP reflexive addr: {lab.nat_outside_ip}:" in out, out
    assert f"UDP reflexive addr: {lab.client_ip}:" not in out, out
    out = natdiscovery(lab, server, "-f")  # ~6 s: two unanswered 3 s tests
    assert "NAT with Address and Port Dependent Filtering!" in out, out


def test_mode_symmetric_maps_per_destination(lab_coturn) -> None:
    lab, server = lab_coturn("symmetric")
    out = natdiscovery(lab, server, "-m")
    assert "NAT with Address and Port Dependent Mapping!" in out, out
    assert f"UDP reflexive addr: {lab.nat_outside_ip}:" in out, out


def test_mode_block_udp_drops_udp_but_passes_tcp(lab_coturn) -> None:
    lab, server = lab_coturn("block-udp")
    out = natdiscovery(lab, server, "-m")  # ~3 s
    assert "STUN receive timeout.." in out, out
    assert "Mapping!" not in out, out
    assert client_python(lab, UDP_PROBE, lab.server_ips[0], str(server.port), "0.5") == "timeout"
    assert client_python(lab, TCP_PROBE, lab.server_ips[0], str(server.port), "3") == "connected"


def test_mode_reject_udp_refuses_udp_but_passes_tcp(lab_coturn) -> None:
    lab, server = lab_coturn("reject-udp")
    assert client_python(lab, UDP_PROBE, lab.server_ips[0], str(server.port), "3") == "refused"
    assert client_python(lab, TCP_PROBE, lab.server_ips[0], str(server.port), "3") == "connected"


def test_loss_and_set_nat(lab_coturn) -> None:
    lab, server = lab_coturn("none")
    probe = (UDP_PROBE, lab.server_ips[0], str(server.port), "0.5")
    assert client_python(lab, *probe) == "answer"
    lab.add_loss(1.0)
    rules = lab.run(lab.nat_ns, ["iptables", "-S", "FORWARD"], check=True).stdout
    assert "-m statistic --mode random --probability 1" in rules, rules
    assert client_python(lab, *probe) == "timeout"
    lab.clear_loss()
    assert client_python(lab, *probe) == "answer"
    lab.set_nat("reject-udp")
    assert client_python(lab, *probe) == "refused"
    lab.set_nat("none")
    assert client_python(lab, *probe) == "answer"
    with pytest.raises(ValueError):
        lab.set_nat("full-cone")


def test_coturn_runs_inside_the_server_namespace(lab_coturn) -> None:
    lab, server = lab_coturn("none")
    # `ip netns exec` execs turnserver, so the Popen pid is the server itself
    assert Path(f"/proc/{server.process.pid}/comm").read_text().strip() == "turnserver"
    assert str(server.process.pid) in _netns_pids(lab.server_ns)
    server.stop()
    assert server.process.poll() is not None
    assert _netns_pids(lab.server_ns) == []


def _netns_pids(ns: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
    return out.stdout.split()


def test_client_namespace_only_knows_the_lab(lab_factory) -> None:
    lab = lab_factory("masquerade")
    routes = lab.run(lab.client_ns, ["ip", "-4", "route"], check=True).stdout
    prefixes = {line.split()[0] for line in routes.splitlines() if line.strip()}
    assert prefixes <= set(LAB_PREFIXES), routes
    assert "default" not in routes
    for ns in lab.namespaces:
        v4 = lab.run(ns, ["ip", "-4", "route", "show", "table", "all"], check=True).stdout
        assert "default" not in v4, (ns, v4)
        v6 = lab.run(ns, ["ip", "-6", "route", "show", "table", "all"], check=True).stdout
        for line in v6.splitlines():
            assert " dev lo " in f" {line} ", (ns, v6)  # IPv6 only on lo
        links = lab.run(ns, ["ip", "-d", "-o", "link"], check=True).stdout
        for line in links.splitlines():
            if " veth " in line:  # every veth's peer is in another lab namespace
                peer_ns = line.split(" link-netns ", 1)[1].split()[0]
                assert peer_ns in lab.namespaces, line
    # nothing reachable outside: 198.51.100.0/24 is not routed anywhere
    out = lab.run(lab.client_ns, ["ip", "route", "get", "198.51.100.1"])
    assert out.returncode != 0 and "unreachable" in out.stderr, out


def test_teardown_on_exception_kills_processes_and_deletes_namespaces() -> None:
    require_lab()
    with pytest.raises(RuntimeError, match="boom"):
        with nat_lab("symmetric") as lab:
            names = lab.namespaces
            assert all(lab.exists().values())
            sleeper = lab.popen(lab.server_ns, ["sleep", "30"])
            raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert not any(lab.exists().values()), names
    with pytest.raises(LabError):
        lab.popen(lab.client_ns, ["true"])


def test_cleanup_stale_removes_dead_runs_only(lab_factory) -> None:
    live = lab_factory("none")
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=5)
    stale = f"tc{dead.pid}zz"
    mine_orphan = f"tc{os.getpid()}zzz"  # our pid, but no live lab owns it
    created = []
    try:
        for ns in (f"{stale}c", f"{mine_orphan}s"):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
            created.append(ns)
        deleted = cleanup_stale()
        assert set(created) <= set(deleted), deleted
        assert not set(deleted) & set(live.namespaces)
        assert all(live.exists().values())
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_nat_modes_are_validated() -> None:
    assert NAT_MODES == ("none", "masquerade", "symmetric", "block-udp", "reject-udp")
    with pytest.raises(ValueError):
        with nat_lab("full-cone"):
            pass  # pragma: no cover


def test_turncheck_runs_in_the_client_namespace(lab_coturn) -> None:
    """turncheck works from inside the lab (its NAT verdict is not asserted
    here: that logic is tested elsewhere)."""
    lab, server = lab_coturn("masquerade")
    urls = [f"stun:{ip}:{server.port}" for ip in lab.server_ips]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_COLOR"] = "1"
    argv = [sys.executable, "-m", "turncheck", "probe", *urls, "--transport", "udp", "--json"]
    proc = lab.run(lab.client_ns, argv, timeout=30, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True, doc
    print("turncheck nat (masquerade):", json.dumps(doc.get("nat")))


TLS_PROBE = r"""
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as raw:
    with ctx.wrap_socket(raw, server_hostname=sys.argv[1]) as tls:
        print(tls.version())
"""


def test_coturn_tls_in_the_server_namespace(lab_factory, tls_ca, ca_file, tmp_path) -> None:
    require_tool("turnserver")
    lab = lab_factory("masquerade")
    with running_coturn(
        tmp_path / "coturn-tls",
        ca=tls_ca,
        hosts=lab.server_ips,
        relay_ips=(lab.server_ips[0],),
        cert_hostnames=lab.server_ips,
        netns=lab.server_ns,
    ) as server:
        assert server.tls_port == server.port + 2
        version = client_python(
            lab, TLS_PROBE, lab.server_ips[0], str(server.tls_port), str(ca_file)
        )
        assert version.startswith("TLSv1."), version
