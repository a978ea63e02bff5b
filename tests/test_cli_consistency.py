"""One CLI: the same options on every command, machine formats -q/-v never alter, --output,
the credentials environment, deprecated spellings, help panels, advice that applies."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn

CREDS = ("-u", "alice", "-p", "s3cret")


@pytest.mark.parametrize("fmt", ["json", "junit", "prometheus"])
@pytest.mark.parametrize("flag", ["-q", "-v"])
def test_machine_formats_are_never_altered_by_quiet_or_verbose(
    cli, coturn: Coturn, fmt: str, flag: str
) -> None:
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    plain = cli("probe", url, *CREDS, "--format", fmt, "--count", "2")
    other = cli("probe", url, *CREDS, "--format", fmt, "--count", "2", flag)
    assert other.code == plain.code == 0
    if fmt == "json":
        assert json.loads(other.out)["checks"]
    elif fmt == "junit":
        assert ET.fromstring(other.out).tag == "testsuites"
    else:
        assert "turncheck_run_ok 1" in other.out
    assert not other.out.startswith("verdict:")
    if flag == "-v":
        assert "Allocate request" in other.err  # the trace goes to stderr


def test_output_dash_is_stdout(cli, coturn: Coturn, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("probe", f"stun:127.0.0.1:{coturn.port}", "--json", "--output", "-")
    assert json.loads(result.out)["checks"]
    assert not (tmp_path / "-").exists()


def test_output_file_puts_the_verdict_on_stderr(cli, coturn: Coturn, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = cli(
        "probe",
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        "-u",
        "alice",
        "-p",
        "wrong-one",
        "--json",
        "-o",
        str(target),
    )
    assert result.code == 1
    assert result.out == ""
    assert json.loads(target.read_text())["ok"] is False
    (line,) = [li for li in result.err.splitlines() if li.startswith("verdict: ")]
    assert "401" in line


@pytest.mark.parametrize(
    "env",
    [
        {"TURNCHECK_CREDENTIAL": "s3cret"},
        {"TURNCHECK_USERNAME": "alice"},
        {"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"},
    ],
)
def test_credentials_in_the_environment_do_not_trouble_a_stun_probe(
    cli, coturn: Coturn, env: dict[str, str]
) -> None:
    result = cli("probe", f"stun:127.0.0.1:{coturn.port}", "--json", env=env)
    assert result.code == 0, result.err
    assert "alice" not in result.out


def test_half_credentials_on_the_command_line_are_still_an_error(cli) -> None:
    result = cli("probe", "stun:127.0.0.1:3478", "-p", "x")
    assert result.code == 2 and "--credential given without --username" in result.err


@pytest.mark.parametrize("command", ["probe", "nat", "load"])
def test_shared_options_exist_on_every_command(cli, command: str) -> None:
    result = cli(command, "--help", env={"COLUMNS": "200"})
    assert result.code == 0
    for option in ("--format", "--output", "--quiet", "--verbose", "--timeout", "--ice-servers"):
        assert option in result.out, (command, option)
    assert "5.0" in result.out  # --timeout defaults to 5 s everywhere
    if command != "nat":
        for option in ("--username", "--credential", "--secret-file", "--rest-user", "--ttl"):
            assert option in result.out, (command, option)


def test_probe_help_is_in_panels_with_choices(cli) -> None:
    out = cli("probe", "--help", env={"COLUMNS": "200"}).out
    for panel in ("Servers", "Credentials", "Network and DNS", "TLS", "Output", "Relay check"):
        assert panel in out, panel
    assert "CI gates" in out and "Monitoring" in out
    assert "[table|json|junit|prometheus|nagios]" in out
    assert "[relay|srflx|udp|tcp|tls]" in out


def test_old_spellings_work_with_a_deprecation_note(cli, coturn: Coturn) -> None:
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    packets = cli("probe", url, *CREDS, "--interval", "5", "--dry-run")
    assert packets.code == 0
    assert "--interval is deprecated" in packets.err and "--packet-interval 5" in packets.err
    rounds = cli(
        "probe", f"stun:127.0.0.1:{coturn.port}", "--repeat", "1", "--interval", "0", "--json"
    )
    assert rounds.code == 0 and "--round-interval 0" in rounds.err
    user = cli("creds", "turn:h", "--user", "bob", env={"TURNCHECK_SECRET": "k"})
    assert user.code == 0 and "--rest-user" in user.err
    assert json.loads(user.out)["iceServers"][0]["username"].endswith(":bob")


def test_units_do_not_change_with_other_options(cli) -> None:
    # --round-interval is seconds and needs --repeat; --packet-interval is milliseconds.
    lonely = cli("probe", "stun:127.0.0.1:3478", "--round-interval", "5", "--dry-run")
    assert lonely.code == 2 and "--round-interval needs --repeat" in lonely.err


def test_error_messages_agree_with_what_they_reject(cli) -> None:
    zero = cli("probe", "stun:127.0.0.1:3478", "--timeout", "0")
    assert zero.code == 2
    assert zero.err.strip() == (
        "turncheck: error: --timeout 0: give seconds above 0 and at most 600"
    )
    bogus = cli("probe", "--bogus")
    assert bogus.code == 2
    assert bogus.err.strip() == (
        "turncheck: error: no such option: --bogus (see turncheck probe --help)"
    )


def test_no_expiry_advice_on_credentials_turncheck_minted(cli, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("k3y\n")
    result = cli(
        "probe",
        "turn:turn.example.com",
        "--secret-file",
        str(secret),
        "--ttl",
        "600",
        "--dry-run",
        "--json",
    )
    assert result.code == 0
    assert not any("expires in" in line for line in result.json()["advice"])


def test_nat_line_only_when_udp_binding_answered(cli, coturn: Coturn) -> None:
    tcp = cli("probe", f"turn:127.0.0.1:{coturn.port}?transport=tcp", *CREDS)
    assert tcp.code == 0
    assert "symmetric NAT" not in tcp.out
    udp = cli("probe", f"stun:127.0.0.1:{coturn.port}")
    assert "symmetric NAT: no" in udp.out


def test_quiet_prints_exactly_the_verdict_for_nat(cli, coturn: Coturn) -> None:
    result = cli("nat", f"stun:127.0.0.1:{coturn.port}", "-q")
    assert result.code == 0
    (line,) = result.out.splitlines()
    assert line.startswith("verdict: ") and "mapping" in line


def test_nat_and_load_write_json_to_a_file(cli, coturn: Coturn, tmp_path: Path) -> None:
    nat_file = tmp_path / "nat.json"
    nat = cli("nat", f"stun:127.0.0.1:{coturn.port}", "--format", "json", "-o", str(nat_file))
    assert nat.code == 0 and nat.out == ""
    assert json.loads(nat_file.read_text())["method"] == "rfc5780"
    assert nat.err.startswith("verdict: ")
    load = cli(
        "load",
        f"turn:127.0.0.1:{coturn.port}",
        *CREDS,
        "--clients",
        "1",
        "--duration",
        "0.3",
        "--format",
        "json",
    )
    assert load.code == 0 and json.loads(load.out)["allocations"]["deleted"] == 2


def test_load_takes_its_url_from_ice_servers(cli, coturn: Coturn, tmp_path: Path) -> None:
    config = tmp_path / "ice.json"
    config.write_text(
        json.dumps(
            {
                "iceServers": [
                    {"urls": f"stun:127.0.0.1:{coturn.port}"},
                    {
                        "urls": f"turn:127.0.0.1:{coturn.port}",
                        "username": "alice",
                        "credential": "s3cret",
                    },
                ]
            }
        )
    )
    result = cli(
        "load", "--ice-servers", str(config), "--clients", "1", "--duration", "0.3", "--json"
    )
    assert result.code == 0, result.err
    assert result.json()["allocations"]["pairs_succeeded"] == 1
