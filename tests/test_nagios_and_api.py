"""--format nagios by the plugin rules, and the run API a Python caller uses."""

from __future__ import annotations

import re

import pytest

from tests.servers.coturn import Coturn

CREDS = ("-u", "alice", "-p", "s3cret")
LINE = re.compile(
    r"^TURN (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| ('[^']+'=[\d.]+(ms|%)(;[\d.]*){2,4} ?)+)?\n$"
)


def test_ok_with_perfdata(cli, coturn: Coturn) -> None:
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    result = cli(
        "probe",
        url,
        *CREDS,
        "--format",
        "nagios",
        "--warning-rtt",
        "500",
        "--critical-rtt",
        "1000",
        "--warning-loss",
        "1",
        "--critical-loss",
        "5",
    )
    assert result.code == 0, result.out
    assert LINE.match(result.out), result.out
    assert result.out.startswith("TURN OK - calls connect")
    assert "'udp_allocate_rtt'=" in result.out and "'udp_relay_loss'=0.0%;1;5;0;100" in result.out


def test_warning_and_critical_thresholds(cli, coturn: Coturn) -> None:
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    warning = cli("probe", url, *CREDS, "--format", "nagios", "--warning-rtt", "0.0001")
    assert warning.code == 1 and warning.out.startswith("TURN WARNING - ")
    critical = cli("probe", url, *CREDS, "--format", "nagios", "--critical-rtt", "0.0001")
    assert critical.code == 2 and critical.out.startswith("TURN CRITICAL - ")


def test_calls_that_fail_are_critical(cli, coturn: Coturn) -> None:
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    result = cli("probe", url, "-u", "alice", "-p", "wrong", "--format", "nagios")
    assert result.code == 2
    assert result.out.startswith("TURN CRITICAL - calls that need TURN fail")
    assert "|" not in result.out.split(" | ")[0][len("TURN CRITICAL - ") :]


@pytest.mark.parametrize(
    "args",
    [
        ("probe", "turn:h:abc", "--format", "nagios"),
        ("probe", "stun:127.0.0.1:3478", "--format", "nagios", "--timeout", "0"),
        ("probe", "stun:127.0.0.1:3478", "--format=nagios", "--bogus"),
    ],
)
def test_input_errors_are_unknown(cli, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 3
    assert result.out.startswith("TURN UNKNOWN - ") and result.out.count("\n") == 1


def test_the_run_api_from_python(coturn: Coturn) -> None:
    from turncheck.api import ProbeOptions, probe

    report = probe(
        ProbeOptions.of(
            f"turn:127.0.0.1:{coturn.port}?transport=udp", username="alice", credential="s3cret"
        )
    )
    assert report.ok, report.verdict
    assert report.browser is not None and report.browser.relay == ("udp",)


def test_the_run_api_refuses_bad_input_before_any_packet() -> None:
    from turncheck.api import ProbeOptions
    from turncheck.errors import InputError

    with pytest.raises(InputError, match="InvalidAccessError"):
        ProbeOptions.of("turn:127.0.0.1:3478")
