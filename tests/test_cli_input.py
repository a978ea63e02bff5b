"""Command-line input: defaults via --dry-run, bad input → one line naming the culprit, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from turncheck.plan import DEFAULT_STUN_SERVERS


def test_no_url_probes_the_default_stun_servers_dry_run(cli) -> None:
    result = cli("probe", "--dry-run", "--json")
    assert result.code == 0
    plan = result.json()["plan"]
    assert sorted({p["url"] for p in plan}) == sorted(DEFAULT_STUN_SERVERS)
    assert {p["transport"] for p in plan} == {"udp", "tcp"}
    assert all(p["checks"] == ["stun"] for p in plan)


def test_dry_run_masks_the_credential_and_names_its_source(cli) -> None:
    result = cli("probe", "turn:turn.example.com", "-u", "alice", "-p", "SeCrEt-42", "--dry-run")
    assert result.code == 0
    assert "alice:***" in result.out and "--username/--credential" in result.out
    assert "SeCrEt-42" not in result.out + result.err
    env = cli(
        "probe",
        "turn:turn.example.com",
        "--dry-run",
        "--json",
        env={"TURNCHECK_USERNAME": "bob", "TURNCHECK_CREDENTIAL": "SeCrEt-42"},
    )
    assert env.code == 0
    assert "SeCrEt-42" not in env.out + env.err
    assert (
        env.json()["plan"][0]["credentials"]
        == "bob:*** from TURNCHECK_USERNAME/TURNCHECK_CREDENTIAL"
    )


def test_dry_run_shows_srv_and_dns_server(cli) -> None:
    result = cli(
        "probe", "stun:example.test", "--dns-server", "127.0.0.1:5353", "--dry-run", "--json"
    )
    plan = result.json()["plan"]
    assert plan[0]["dns"] == "A/AAAA example.test. (via 127.0.0.1:5353)"
    assert plan[0]["role"] == "browser"
    srv = [p for p in plan if p["role"] == "extra (SRV)"]
    assert srv[0]["dns"] == (
        "SRV _stun._udp.example.test, only the servers it names (via 127.0.0.1:5353)"
    )


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (
            ["probe", "turn:example.com"],
            "'turn:example.com': the browser throws InvalidAccessError: Both username and",
        ),
        (["probe", "turns:example.com", "-u", "alice"], "--username given without --credential"),
        (["probe", "stun:example.com", "-p", "x"], "--credential given without --username"),
        (["probe", "turn:[::1"], "'turn:[::1': the browser throws SyntaxError: ICE server"),
        (["probe", '{"iceServers": []}'], "--ice-servers -"),
        (["probe", "stun:a.example", "http://b.example"], "'http://b.example'"),
        (["probe", "stun:a.example", "--transport", "udp,sctp"], "unknown transport 'sctp'"),
        (["probe", "stun:a.example", "--dns-server", "dns.example"], "--dns-server"),
        (["probe", "stun:a.example", "--timeout", "0"], "--timeout"),
        (["probe", "stun:a.example", "--timeout", "soon"], "'--timeout'"),
        (["probe", "stun:a.example", "-4", "-6"], "-4 and -6"),
        (["probe", "stun:a.example", "--ca-file", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
        (["probe", "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_is_one_line_naming_the_culprit_and_exit_2(cli, args, culprit) -> None:
    result = cli(*args)
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert culprit in lines[0]
    assert "Traceback" not in result.err


def test_version_and_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "turncheck", "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert done.stdout.startswith("turncheck ")


def test_console_script_bad_input_exit_2_without_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "turncheck", "probe", "turn:"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "'turn:': the browser throws SyntaxError" in done.stderr


def test_browser_firefox_judges_the_input_by_firefoxs_rules(cli) -> None:
    """--browser firefox: what Firefox accepts is probed (turn:h: is its 3478), what it
    refuses is one line naming Firefox; Chromium's refusal then no longer applies."""
    env = {"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}
    chromium = cli("probe", "turn:127.0.0.1:", "--dry-run", env=env)
    assert chromium.code == 2 and "Invalid hostname format" in chromium.err
    firefox = cli(
        "probe", "turn:127.0.0.1:", "--dry-run", "--json", "--browser", "firefox", env=env
    )
    assert firefox.code == 0, firefox.err
    plan = firefox.json()["plan"]
    assert plan[0]["port"] == 3478 and plan[0]["transport"] == "udp"
    blocked = cli("probe", "turn:127.0.0.1:25", "--dry-run", "--browser", "firefox", env=env)
    assert blocked.code == 2
    assert blocked.err.strip() == (
        "turncheck: error: 'turn:127.0.0.1:25': Firefox throws SyntaxError: "
        "PeerConnectionImpl.setConfiguration: 'turn:127.0.0.1:25' uses a port that is blocked"
    )
    bad = cli("probe", "stun:127.0.0.1", "--browser", "safari", "--dry-run")
    assert bad.code == 2 and "--browser safari: choose chromium, firefox or all" in bad.err
