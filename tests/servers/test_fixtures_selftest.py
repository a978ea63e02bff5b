"""Self-tests for the lab fixtures: prove that coturn and dnsmasq start, answer,
and stop, using only coturn's own clients, raw sockets, ssl and dnspython.
All traffic goes to loopback only."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess

import pytest

from tests.servers.coturn import stun_binding_ok
from tests.servers.ports import free_port_block

# Works whether or not the top-level conftest already loads the plugin.  (The
# plugin module is not imported at the top here, so pytest can still
# assertion-rewrite it when it registers it.)
pytest_plugins = ["tests.servers.fixtures"]


def require_tool(name: str) -> str:
    from tests.servers.fixtures import require_tool as _require_tool

    return _require_tool(name)


CLIENT_TIMEOUT = 30  # s, for coturn's client tools (uclient needs ~5 s by design)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)


# --------------------------------------------------------------------- ports


def test_free_port_block_is_free_and_not_repeated():
    a = free_port_block(4)
    b = free_port_block(4)
    assert 20000 <= a <= 45000 - 4 and 20000 <= b <= 45000 - 4
    assert not set(range(a, a + 4)) & set(range(b, b + 4))
    for p in range(a, a + 4):
        for host in ("127.0.0.1", "127.0.0.2"):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((host, p))


# -------------------------------------------------------------------- coturn


def test_stunclient_sees_rfc5780_other_address(coturn):
    require_tool("turnutils_stunclient")
    r = _run(["turnutils_stunclient", "-p", str(coturn.port), "127.0.0.1"])
    assert r.returncode == 0, r.stdout + r.stderr
    # e.g. "0: : IPv4. Other addr: : 127.0.0.2:25257" and
    #      "0: : IPv4. Response origin: : 127.0.0.1:25256"
    assert f"Other addr: : 127.0.0.2:{coturn.port + 1}" in r.stdout, r.stdout
    assert f"Response origin: : 127.0.0.1:{coturn.port}" in r.stdout, r.stdout
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", r.stdout), r.stdout


def test_uclient_relays_client_to_client(coturn):
    require_tool("turnutils_uclient")
    r = _run(
        [
            "turnutils_uclient",
            "-y",
            "-n",
            "2",
            "-u",
            "alice",
            "-w",
            "s3cret",
            "-p",
            str(coturn.port),
            "127.0.0.1",
        ]
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    # summary line, e.g. "4: : start_mclient: tot_send_msgs=8, tot_recv_msgs=8"
    totals = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", r.stdout)
    assert totals, r.stdout[-3000:]
    sent, received = totals[-1]
    assert int(sent) > 0 and sent == received, r.stdout[-3000:]
    assert "Total lost packets 0 " in r.stdout


def test_uclient_wrong_password_fails(coturn):
    require_tool("turnutils_uclient")
    r = _run(
        [
            "turnutils_uclient",
            "-y",
            "-n",
            "1",
            "-u",
            "alice",
            "-w",
            "wrong",
            "-p",
            str(coturn.port),
            "127.0.0.1",
        ]
    )
    assert r.returncode != 0
    assert "Cannot complete Allocation" in r.stdout + r.stderr


def test_tls_handshake_verified_with_ca(coturn, ca_file):
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", coturn.tls_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            cert = tls.getpeercert()
            assert ("DNS", "localhost") in cert["subjectAltName"]


def test_tls_rejects_wrong_hostname(coturn, ca_file):
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", coturn.tls_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="wrong.example.test")


def test_log_file_and_config(coturn):
    assert coturn.log_path.name == "turn.log"
    text = coturn.log_text()
    assert f"UDP listener opened on: 127.0.0.2:{coturn.port}" in text
    conf = coturn.config_path.read_text()
    assert "lt-cred-mech" in conf and "user=alice:s3cret" in conf
    assert f"userdb={coturn.workdir / 'turndb'}" in conf


def test_factory_runs_two_servers_at_once(coturn_factory):
    a = coturn_factory(tls=False)
    b = coturn_factory(tls=False, hosts=("127.0.0.1",), users={"bob": "pw"})
    ports_a = {a.port, a.port + 1, *range(a.min_port, a.max_port + 1)}
    ports_b = {b.port, b.port + 1, *range(b.min_port, b.max_port + 1)}
    assert not ports_a & ports_b
    assert a.tls_port == 0 and b.tls_port == 0
    assert stun_binding_ok("127.0.0.1", a.port, timeout=1)
    assert stun_binding_ok("127.0.0.1", b.port, timeout=1)
    assert "no-tls" in a.config_path.read_text()
    a.stop()
    a.stop()  # idempotent
    assert a.process.poll() is not None
    assert not stun_binding_ok("127.0.0.1", a.port, timeout=0.3)
    assert stun_binding_ok("127.0.0.1", b.port, timeout=1)


def test_factory_ipv6_loopback(coturn_factory):
    s = coturn_factory(tls=False, hosts=("127.0.0.1", "::1"))
    assert stun_binding_ok("::1", s.port, timeout=1)
    assert "relay-ip=::1" in s.config_path.read_text()


def test_factory_auth_secret_has_no_lt_cred_mech(coturn_factory):
    s = coturn_factory(tls=False, extra=["use-auth-secret", "static-auth-secret=topsecret"])
    conf = s.config_path.read_text()
    assert "lt-cred-mech" not in conf and "use-auth-secret" in conf
    assert stun_binding_ok("127.0.0.1", s.port, timeout=1)


def test_factory_unknown_option_is_an_error(coturn_factory):
    # coturn itself only logs "Bad configuration format: ..." and runs on
    with pytest.raises(RuntimeError, match="this-is-not-an-option"):
        coturn_factory(tls=False, extra=["this-is-not-an-option=1"])


def test_factory_not_ready_raises_with_log(coturn_factory):
    # no UDP and no TCP listener -> neither readiness probe can ever succeed
    with pytest.raises(RuntimeError, match=r"(?s)not ready after 0\.5 s.*last log lines"):
        coturn_factory(tls=False, extra=["no-udp", "no-tcp"], ready_timeout=0.5)


# ------------------------------------------------------------------- dnsmasq


def _query(server, name, rdtype):
    import dns.message
    import dns.query

    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, server.host, port=server.port, timeout=2)


def test_dnsmasq_srv_a_aaaa_and_nxdomain(dns_server):
    import dns.rcode
    import dns.rdatatype

    srv = dns_server(
        srv=[
            ("_turn._udp.example.test", "turn.example.test", 3478, 10, 5),
            ("_turns._tcp.none.test", ".", 0, 0, 0),
        ],
        hosts=[
            ("turn.example.test", "127.0.0.1"),
            ("turn.example.test", "127.0.0.2"),
            ("six.example.test", "::1"),
        ],
    )
    assert srv.address == f"127.0.0.1:{srv.port}"

    r = _query(srv, "_turn._udp.example.test", "SRV")
    assert r.rcode() == dns.rcode.NOERROR
    (rrset,) = r.answer
    (rec,) = list(rrset)
    assert (rec.priority, rec.weight, rec.port, rec.target.to_text()) == (
        10,
        5,
        3478,
        "turn.example.test.",
    )

    r = _query(srv, "turn.example.test", "A")
    assert sorted(x.address for x in r.answer[0]) == ["127.0.0.1", "127.0.0.2"]

    r = _query(srv, "six.example.test", "AAAA")
    assert [x.address for x in r.answer[0]] == ["::1"]

    # "no service here": SRV target "."
    r = _query(srv, "_turns._tcp.none.test", "SRV")
    (rec,) = list(r.answer[0])
    assert rec.target.to_text() == "."

    # unknown names: NXDOMAIN (thanks to --local=/#/; without it dnsmasq REFUSES)
    assert _query(srv, "unknown.example.test", "A").rcode() == dns.rcode.NXDOMAIN
    assert _query(srv, "_turn._tcp.example.test", "SRV").rcode() == dns.rcode.NXDOMAIN
    # known name, missing type: NODATA
    r = _query(srv, "turn.example.test", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer

    # the resolver helper asks only this server
    ans = srv.resolver().resolve("turn.example.test", "A")
    assert {x.address for x in ans} == {"127.0.0.1", "127.0.0.2"}
    assert "query[SRV] _turn._udp.example.test" in srv.log_text()


def test_dnsmasq_stop_is_idempotent(dns_server):
    s = dns_server(hosts=[("a.test", "127.0.0.1")])
    s.stop()
    s.stop()
    assert s.process.poll() is not None


# ------------------------------------------------------------- skip helper


def test_require_tool_skips_or_fails(monkeypatch):
    monkeypatch.delenv("TURNCHECK_REQUIRE_LAB", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-xyz"):
        require_tool("no-such-tool-xyz")
    monkeypatch.setenv("TURNCHECK_REQUIRE_LAB", "1")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-xyz"):
        require_tool("no-such-tool-xyz")
    assert require_tool("sh")
