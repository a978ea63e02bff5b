"""The test page in real browsers, in the namespace lab: a support link, end to end.

client ns (the user's browser) ── NAT ns (the user's network: its NAT and firewall) ──
server ns (coturn with TURN REST auth, TLS on 443; dnsmasq; `turncheck serve` with test
pages). For each scenario a real Chromium and a real Firefox open
http://203.0.113.2:9731/test/NAME, run the page to its end, post the results; then
`turncheck results ID` (as support staff run it) must print the verdict that names the
cause. Scenarios: healthy, UDP blocked, only 443 (and UDP) through, TURN down, a wrong
REST secret, a symmetric NAT.

With TURNCHECK_PAGE_TABLE=FILE the scenario table (what each browser measured and the
verdict) is written there, for the closing note; with TURNCHECK_PAGE_SHOTS=DIR the page's
screenshots (phone and desktop widths, mid-run and at the end) are kept there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import netns_etc, open_test_page
from tests.lab.netns import Lab, nat_lab, require_lab
from tests.servers.coturn import running_coturn
from tests.servers.dnsmasq import running_dnsmasq
from tests.servers.fixtures import require_tool

SERVER, SECOND, DOWN, DNS_IP = "203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5"
NAME = "turn.lab.test"  # turns: needs a name: Firefox drops turns: with an IP address
PORT = 9731
SECRET = "lab-page-secret"
UDP = f"turn:{SERVER}:3478"
TCP = f"turn:{SERVER}:3478?transport=tcp"
TLS = f"turns:{NAME}:443?transport=tcp"
STUN, STUN2 = f"stun:{SERVER}:3478", f"stun:{SECOND}:3478"


@dataclass
class PageLab:
    lab: Lab
    config: Path
    ca_file: Path
    shots: Path | None
    table: list[dict[str, Any]]


def _config(tmp: Path, ca_file: Path) -> Path:
    (tmp / "secret").write_text(SECRET + "\n")
    (tmp / "wrong").write_text("not-" + SECRET + "\n")
    common = f"    ca_file: {ca_file}\n    dns_server: {DNS_IP}\n    rest_user: lab\n"
    config = tmp / "turncheck.yml"
    config.write_text(
        f"""results:
  path: {tmp / "results.sqlite"}
tests:
  app:
    title: Lab app
    urls: ["{UDP}", "{TCP}", "{TLS}", "{STUN}"]
    secret_file: {tmp / "secret"}
{common}  nat:
    urls: ["{UDP}", "{STUN}", "{STUN2}"]
    secret_file: {tmp / "secret"}
{common}  down:
    urls: ["turn:{DOWN}:3478", "turn:{DOWN}:3478?transport=tcp"]
    secret_file: {tmp / "secret"}
{common}  wrong:
    urls: ["{UDP}", "{TCP}"]
    secret_file: {tmp / "wrong"}
{common}"""
    )
    return config


@pytest.fixture(scope="module")
def page_lab(tls_ca, ca_file: Path, tmp_path_factory) -> Iterator[PageLab]:
    require_lab()
    require_tool("turnserver")
    require_tool("dnsmasq")
    tmp = tmp_path_factory.mktemp("page-lab")
    with ExitStack() as stack:
        lab = stack.enter_context(nat_lab("masquerade"))
        for ip in (DOWN, DNS_IP):  # SECOND is the lab's own second address
            lab.run(lab.server_ns, ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], check=True)
        stack.enter_context(
            running_coturn(
                tmp / "coturn",
                ca=tls_ca,
                hosts=(SERVER, SECOND),
                relay_ips=(SERVER,),
                netns=lab.server_ns,
                netns_ports=(3478, 443, 49152),
                cert_hostnames=(NAME,),
                extra=("use-auth-secret", f"static-auth-secret={SECRET}"),
            )
        )
        dns = stack.enter_context(
            running_dnsmasq(tmp / "dns", hosts=[(NAME, SERVER)], netns=lab.server_ns, host=DNS_IP)
        )
        stack.enter_context(netns_etc(lab.client_ns, dns.host))
        config = _config(tmp, ca_file)
        log = tmp / "serve.log"
        serve = lab.popen(
            lab.server_ns,
            [
                sys.executable,
                "-m",
                "turncheck",
                "serve",
                "--config",
                str(config),
                "--listen",
                f"{SERVER}:{PORT}",
            ],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert serve.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "listening on" in log.read_text(), log.read_text()
        shots = os.environ.get("TURNCHECK_PAGE_SHOTS")
        table: list[dict[str, Any]] = []
        yield PageLab(lab, config, ca_file, Path(shots) if shots else None, table)
        serve.terminate()
        serve.wait(timeout=15)
        assert SECRET not in log.read_text()
        if os.environ.get("TURNCHECK_PAGE_TABLE"):
            Path(os.environ["TURNCHECK_PAGE_TABLE"]).write_text(json.dumps(table, indent=1))


def _network(lab: Lab, scenario: str) -> None:
    """The user's network for *scenario*: the NAT namespace's NAT and firewall."""
    lab.set_nat("symmetric" if scenario == "symmetric" else "masquerade")
    if scenario in ("udp-blocked", "only-443"):
        for rule in (("--dport", "53"), ("--sport", "53")):  # the lab's own DNS still works
            lab.iptables(lab.nat_ns, "-A", "FORWARD", "-p", "udp", *rule, "-j", "ACCEPT")
        lab.iptables(lab.nat_ns, "-A", "FORWARD", "-p", "udp", "-j", "DROP")
    if scenario == "only-443":  # TCP to the TURN port blocked; 443 (and the page's port) open
        lab.iptables(lab.nat_ns, "-A", "FORWARD", "-p", "tcp", "--dport", "3478", "-j", "DROP")


def _results(page_lab: PageLab, *args: str) -> subprocess.CompletedProcess[str]:
    """`turncheck results --config … ARGS`, as support staff run it, at 80 columns."""
    argv = [sys.executable, "-m", "turncheck", "results", "--config", str(page_lab.config)]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )


SCENARIOS = {
    # name: (profile, calls connect, cause starts, words the verdict must hold)
    "healthy": ("app", True, "every TURN URL works", ("every TURN URL relayed data",)),
    "udp-blocked": (
        "app",
        True,
        "UDP blocked",
        (
            "from serve's side TURN over UDP on 3478 works",
            "the user's network blocks UDP",
            "calls will relay over TCP",
        ),
    ),
    "only-443": (
        "app",
        True,
        "UDP blocked, only 443 open",
        ("lets only port 443 through", "calls will relay over TLS"),
    ),
    "turn-down": ("down", False, "TURN server failing", ("not the user's network",)),
    "wrong-secret": ("wrong", False, "credentials refused", ("refused the page's credentials",)),
    "symmetric": ("nat", True, "", ("symmetric NAT",)),
}


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_support_link_to_answer(page_lab: PageLab, scenario: str, browser: str) -> None:
    profile, connects, cause, words = SCENARIOS[scenario]
    _network(page_lab.lab, scenario)
    shots = None
    if page_lab.shots is not None:
        shots = page_lab.shots / scenario
        shots.mkdir(parents=True, exist_ok=True)
    elif scenario == "healthy":  # the screenshots are taken on every run at least once
        shots = Path(page_lab.config.parent) / f"shots-{browser}"
    out = open_test_page(
        page_lab.lab,
        f"http://{SERVER}:{PORT}/test/{profile}",
        browser=browser,
        ca_pem=page_lab.ca_file,
        screenshots_dir=shots,
        timeout=75,
    )
    state = out["state"]
    assert state["phase"] == "done", (state.get("error"), out.get("console"))
    answer = state["answer"]
    assert answer["id"] in answer["summary"]
    if shots is not None:
        # mid-run ones only when the run lasts long enough to catch it running
        assert {"end-phone", "end-desktop"} <= set(out["screenshots"])
        assert all(Path(p).stat().st_size > 1000 for p in out["screenshots"].values())
    shown = _results(page_lab, answer["id"])
    assert shown.returncode == (0 if connects else 1), shown.stdout + shown.stderr
    assert all(len(line) <= 80 for line in shown.stdout.splitlines())
    document = json.loads(_results(page_lab, answer["id"], "--json").stdout)
    judgement = document["judgement"]
    name = "Firefox" if browser == "firefox" else "Chrome"
    page_lab.table.append(
        {
            "scenario": scenario,
            "browser": judgement["browser"],
            "rows": {r["url"]: r["user"] for r in judgement["rows"]},
            "nat": judgement["nat"],
            "cause": judgement["cause"],
            "verdict": judgement["verdict"],
            "run_s": out["timing"].get("run_s"),
        }
    )
    assert judgement["browser"].startswith(name)
    assert judgement["ok"] is connects and answer["ok"] is connects, judgement
    assert judgement["cause"].startswith(cause), judgement
    text = " ".join(shown.stdout.split())
    for phrase in words:
        assert phrase in judgement["verdict"], judgement["verdict"]
    assert " ".join(judgement["verdict"].split()) in text
    if scenario == "symmetric":
        assert judgement["nat"]["symmetric"] is True, judgement["nat"]
    elif scenario == "healthy":
        assert judgement["nat"]["symmetric"] is not True
    assert out["timing"]["run_s"] < 30, out["timing"]
    assert SECRET not in json.dumps(document)
