"""Self-tests of the headless-Chromium harness (tests/browser/driver.py, chromium.py).

A masquerading lab (srflx 203.0.113.1 differs from host 192.0.2.2), coturn in its
server namespace (alice:s3cret, TLS on 3480 with a certificate from the test CA),
dnsmasq on 203.0.113.3:53 in the same namespace as the client namespace's only
resolver.  One Chromium run gathers every case of the module at once; a second
one checks that the TLS relay really depends on the CA being trusted.

Traffic stays in the namespaces these tests create; every wait is bounded.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack
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
)
from tests.lab.netns import Lab, nat_lab, require_lab
from tests.servers.coturn import Coturn, running_coturn
from tests.servers.dnsmasq import DnsServer, running_dnsmasq
from tests.servers.fixtures import require_tool

pytestmark = pytest.mark.timeout(120)

CAP_S = 10.0  # every case here completes in well under a second
DNS_NAME = "turn.turncheck.test"  # in the lab's DNS only
HOSTS_NAME = "hosts-only.turncheck.test"  # in the client namespace's /etc/hosts only
RUN_LIMIT_S = 30.0  # one driver run (launch, all gathers, close); about 2 s measured


@dataclass
class BrowserLab:
    lab: Lab
    coturn: Coturn
    dns: DnsServer
    ca_file: Path
    out: dict[str, Any]  # the driver's OUT.json for JOBS

    def result(self, job_id: str) -> dict[str, Any]:
        return self.out["results"][job_id]


def _jobs(server: str, port: int, tls_port: int) -> list[dict[str, Any]]:
    alice = {"username": "alice", "credential": "s3cret"}
    return [
        gather("stun", {"iceServers": [{"urls": f"stun:{server}:{port}"}]}),
        gather("turn-udp", {"iceServers": [{"urls": f"turn:{server}:{port}", **alice}]}),
        gather(
            "turns-tls",
            {"iceServers": [{"urls": f"turns:{server}:{tls_port}?transport=tcp", **alice}]},
        ),
        gather(
            "wrong-password",
            {
                "iceServers": [
                    {"urls": f"turn:{server}:{port}", "username": "alice", "credential": "wrong"}
                ]
            },
        ),
        gather("dns-name", {"iceServers": [{"urls": f"stun:{DNS_NAME}:{port}"}]}),
        gather("hosts-only", {"iceServers": [{"urls": f"stun:{HOSTS_NAME}:{port}"}]}),
        construct("stun-query", {"iceServers": [{"urls": "stun:a.example?transport=udp"}]}),
    ]


@pytest.fixture(scope="module")
def browser_lab(tls_ca, ca_file: Path, tmp_path_factory) -> Iterator[BrowserLab]:
    """The lab of tests/lab/conftest.py's ``turn_lab("masquerade")`` plus DNS, built
    once per module so that one Chromium run serves every test here."""
    require_lab()
    require_tool("turnserver")
    require_tool("dnsmasq")
    require_chromium(ca=True)
    tmp = tmp_path_factory.mktemp("browser-lab")
    with ExitStack() as stack:
        lab = stack.enter_context(nat_lab("masquerade"))
        server, dns_ip = lab.server_ips
        coturn = stack.enter_context(
            running_coturn(
                tmp / "coturn",
                ca=tls_ca,
                hosts=lab.server_ips,
                relay_ips=(server,),
                cert_hostnames=lab.server_ips,
                netns=lab.server_ns,
            )
        )
        dns = stack.enter_context(
            running_dnsmasq(
                tmp / "dnsmasq", hosts=[(DNS_NAME, server)], netns=lab.server_ns, host=dns_ip
            )
        )
        stack.enter_context(netns_etc(lab.client_ns, dns.host, {HOSTS_NAME: server}))
        out = run_chromium(
            lab, _jobs(server, coturn.port, coturn.tls_port), ca_pem=ca_file, cap_s=CAP_S
        )
        print(f"\nChromium {out['chromium']} driver run: {json.dumps(out['timing'])}")
        yield BrowserLab(lab, coturn, dns, ca_file, out)


def _of_type(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in result["candidates"] if c["type"] == kind]


def test_driver_run_is_complete_and_quick(browser_lab: BrowserLab) -> None:
    out = browser_lab.out
    assert out["chromium"].startswith(tuple("0123456789")), out["chromium"]
    assert out["secure_context"] is True
    assert out["getusermedia"]["ok"] is True, out["getusermedia"]
    assert out["timing"]["wall_s"] < RUN_LIMIT_S, out["timing"]
    for job_id in ("stun", "turn-udp", "turns-tls", "wrong-password", "dns-name"):
        result = browser_lab.result(job_id)
        assert result["error"] is None, (job_id, result)
        assert result["complete"] is True, (job_id, result)
        assert result["elapsed_ms"] < CAP_S * 1000, (job_id, result)


def test_host_candidates_are_the_client_address(browser_lab: BrowserLab) -> None:
    """getUserMedia + WebRtcHideLocalIpsWithMdns off: raw host IPs, not .local names."""
    hosts = _of_type(browser_lab.result("stun"), "host")
    assert hosts, browser_lab.result("stun")
    assert {c["address"] for c in hosts} == {browser_lab.lab.client_ip}
    assert {c["url"] for c in hosts} == {""}  # Chromium gives "" (not null) for host candidates


def test_stun_gives_srflx_of_the_nat(browser_lab: BrowserLab) -> None:
    result = browser_lab.result("stun")
    srflx = _of_type(result, "srflx")
    assert [c["address"] for c in srflx] == [browser_lab.lab.nat_outside_ip], result
    (c,) = srflx
    assert c["protocol"] == "udp"
    assert c["relatedAddress"] == browser_lab.lab.client_ip
    assert c["url"] == f"stun:{browser_lab.lab.server_ips[0]}:{browser_lab.coturn.port}"
    assert result["errors"] == []


def test_turn_gives_udp_relay(browser_lab: BrowserLab) -> None:
    result = browser_lab.result("turn-udp")
    (relay,) = _of_type(result, "relay")
    server = browser_lab.lab.server_ips[0]
    assert relay["address"] == server
    assert browser_lab.coturn.min_port <= relay["port"] <= browser_lab.coturn.max_port
    assert relay["protocol"] == "udp"
    assert relay["relatedAddress"] == browser_lab.lab.nat_outside_ip  # XOR-MAPPED-ADDRESS
    assert relay["url"] == f"turn:{server}:{browser_lab.coturn.port}?transport=udp"
    # Chromium 156 leaves relayProtocol null for UDP relays (see relay_protocol()).
    assert relay["relayProtocol"] in (None, "udp"), relay
    assert relay_protocol(relay) == "udp"
    assert result["errors"] == []


def test_turns_gives_tls_relay_with_the_ca_trusted(browser_lab: BrowserLab) -> None:
    result = browser_lab.result("turns-tls")
    (relay,) = _of_type(result, "relay")
    server = browser_lab.lab.server_ips[0]
    assert relay["address"] == server
    assert relay["relayProtocol"] == "tls"
    assert relay["url"] == f"turns:{server}:{browser_lab.coturn.tls_port}?transport=tcp"
    assert result["errors"] == []


def test_wrong_password_is_icecandidateerror_401(browser_lab: BrowserLab) -> None:
    result = browser_lab.result("wrong-password")
    assert _of_type(result, "relay") == []
    (error,) = result["errors"]
    assert error["errorCode"] == 401
    assert error["errorText"] == "Unauthorized."
    server = browser_lab.lab.server_ips[0]
    assert error["url"] == f"turn:{server}:{browser_lab.coturn.port}?transport=udp"
    # the local address, last part hidden (Blink hides it unless host IPs may show)
    assert error["address"] == "192.0.2.x"


def test_constructing_with_a_stun_query_is_syntaxerror(browser_lab: BrowserLab) -> None:
    result = browser_lab.result("stun-query")
    assert result["error"] is not None
    assert result["error"]["name"] == "SyntaxError", result
    assert "stun:a.example?transport=udp" in result["error"]["message"]


def test_name_from_lab_dns_gives_srflx(browser_lab: BrowserLab) -> None:
    result = browser_lab.result("dns-name")
    srflx = _of_type(result, "srflx")
    assert [c["address"] for c in srflx] == [browser_lab.lab.nat_outside_ip], result
    assert srflx[0]["url"] == f"stun:{DNS_NAME}:{browser_lab.coturn.port}"
    assert f"query[A] {DNS_NAME}" in browser_lab.dns.log_text()


def test_lab_dns_saw_only_lab_names(browser_lab: BrowserLab) -> None:
    """Chromium's own start-up lookups (accounts.google.com, update.googleapis.com,
    ...) are answered inside the browser (driver.QUIET_HOSTS): the lab resolver
    sees only the names the jobs use, and the readiness probe's."""
    names = set(re.findall(r"query\[\w+\] (\S+) from", browser_lab.dns.log_text()))
    assert names <= {DNS_NAME, HOSTS_NAME, "turncheck-readiness.invalid"}, names
    assert DNS_NAME in names


def test_hosts_only_name_fails_over_udp(browser_lab: BrowserLab) -> None:
    """PROTOCOL.md: Chromium resolves UDP STUN/TURN names as absolute names, so a
    name only in /etc/hosts fails (701 host lookup error), with no srflx."""
    result = browser_lab.result("hosts-only")
    assert _of_type(result, "srflx") == [], result
    codes = [(e["errorCode"], e["errorText"]) for e in result["errors"]]
    assert codes == [(701, "STUN host lookup received error.")], result


def test_client_namespace_resolves_through_lab_dns_and_hosts(browser_lab: BrowserLab) -> None:
    """netns_etc works for anything run in the client namespace (turncheck uses
    dnspython, which reads /etc/resolv.conf; glibc reads /etc/hosts)."""
    code = (
        "import socket, sys, dns.resolver\n"
        "r = dns.resolver.Resolver()\n"
        "print(r.nameservers[0], r.resolve(sys.argv[1], 'A')[0].address,"
        " socket.gethostbyname(sys.argv[2]))\n"
    )
    lab = browser_lab.lab
    done = lab.run(lab.client_ns, [sys.executable, "-c", code, DNS_NAME, HOSTS_NAME], timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [browser_lab.dns.host, lab.server_ips[0], lab.server_ips[0]]


def test_turns_fails_without_the_ca(browser_lab: BrowserLab) -> None:
    """The TLS relay above needs the NSS db: without it, no relay and a 701."""
    lab, coturn = browser_lab.lab, browser_lab.coturn
    url = f"turns:{lab.server_ips[0]}:{coturn.tls_port}?transport=tcp"
    job = gather(
        "no-ca", {"iceServers": [{"urls": url, "username": "alice", "credential": "s3cret"}]}
    )
    out = run_chromium(lab, [job], cap_s=CAP_S)
    result = out["results"]["no-ca"]
    assert _of_type(result, "relay") == [], result
    assert [(e["errorCode"], e["url"]) for e in result["errors"]] == [(701, url)], result
