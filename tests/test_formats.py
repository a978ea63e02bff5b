"""--format junit and --format prometheus, and --output FILE, against a real coturn on loopback.

The JUnit document is validated with the Jenkins xUnit plugin's published JUnit schema
(tests/data/junit.xsd); the Prometheus text is read back with prometheus_client's parser.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from prometheus_client.parser import text_string_to_metric_families

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block
from turncheck.render import junit, prometheus
from turncheck.report import Report
from turncheck.require import Requirement
from turncheck.results import (
    Candidate,
    CheckResult,
    Explanation,
    NatVerdict,
    PathStats,
    RelayResult,
)

CREDS = ("-u", "alice", "-p", "s3cret")
JUNIT_XSD = Path(__file__).parent / "data" / "junit.xsd"

Sample = tuple[str, frozenset[tuple[str, str]]]


@pytest.fixture(scope="module")
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(JUNIT_XSD))


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nothing listens on: UDP checks time out, TCP ones are refused."""
    return free_port_block(1)


def metrics(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """family name → {label set → value}, parsed strictly by prometheus_client."""
    out: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation, family.name
        samples = out.setdefault(family.name, {})
        for sample in family.samples:
            assert sample.name == family.name
            key = frozenset(sample.labels.items())
            assert key not in samples, f"duplicate series {sample}"
            samples[key] = sample.value
    return out


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


# --- JUnit -----------------------------------------------------------------------------------


def test_junit_is_schema_valid_with_failures_and_requirements(
    cli, coturn: Coturn, closed_port: int, junit_schema: xmlschema.XMLSchema
) -> None:
    good = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    bad = f"stun:127.0.0.1:{closed_port}"
    result = cli(
        "probe",
        good,
        bad,
        *CREDS,
        "--timeout",
        "1",
        "--require",
        "tls",
        "--require",
        "udp",
        "--format",
        "junit",
    )
    assert result.code == 1, result.out + result.err  # --require tls: no TLS URL was probed
    assert "s3cret" not in result.out
    junit_schema.validate(result.out)

    root = ET.fromstring(result.out)
    assert root.tag == "testsuites" and root.get("name") == "turncheck"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [good, bad, "requirements"]
    good_suite, bad_suite, req_suite = suites

    # turn: over UDP gives a Binding and an Allocate; stun: without a transport, UDP and TCP.
    assert good_suite.get("tests") == "2" and good_suite.get("failures") == "0"
    assert bad_suite.get("tests") == "2" and bad_suite.get("failures") == "2"
    assert req_suite.get("tests") == "2" and req_suite.get("failures") == "1"
    assert root.get("tests") == "6" and root.get("failures") == "3"
    assert root.get("errors") == "0"

    names = {c.get("name") for c in good_suite.iter("testcase")}
    assert names == {
        f"udp Binding 127.0.0.1:{coturn.port}",
        f"udp Allocate 127.0.0.1:{coturn.port}",
    }
    for case in good_suite.iter("testcase"):
        assert case.get("classname") == f"turncheck.turn_127_0_0_1_{coturn.port}_transport_udp"
        assert "." not in case.get("classname", "").removeprefix("turncheck.")
        assert float(case.get("time", "0")) > 0
        assert case.find("failure") is None
        out = case.findtext("system-out", "")
        assert " typ srflx" in out
        if case.get("name", "").startswith("udp Allocate"):
            assert " typ relay " in out and "relay echo" in out and "loss 0.0 %" in out

    for case in bad_suite.iter("testcase"):
        failure = case.find("failure")
        assert failure is not None, case.get("name")
        assert failure.get("message")
        assert failure.get("type") == "error"  # no STUN error code: nothing answered
        assert failure.text is not None
        assert failure.text.startswith(failure.get("message", "")) and "\nhint: " in failure.text

    reqs = {c.get("name"): c for c in req_suite.iter("testcase")}
    assert set(reqs) == {"tls", "udp"}
    assert reqs["udp"].find("failure") is None
    tls_failure = reqs["tls"].find("failure")
    assert tls_failure is not None and "no TLS check was run" in (tls_failure.get("message") or "")


def test_junit_without_requirements_has_no_requirements_suite(
    cli, coturn: Coturn, junit_schema: xmlschema.XMLSchema
) -> None:
    result = cli(
        "probe", f"stun:127.0.0.1:{coturn.port}", "--transport", "udp", "--format", "junit"
    )
    assert result.code == 0, result.out + result.err
    junit_schema.validate(result.out)
    root = ET.fromstring(result.out)
    assert [s.get("name") for s in root.findall("testsuite")] == [f"stun:127.0.0.1:{coturn.port}"]
    assert root.get("tests") == "1" and root.get("failures") == "0"


def test_junit_strips_characters_xml_forbids_from_server_text(
    junit_schema: xmlschema.XMLSchema,
) -> None:
    hostile = "bad\x00 reply\x1b[31m\x07 \ud800end\ufffe"
    check = CheckResult(
        url="turn:127.0.0.1:3478?transport=udp",
        transport="udp",
        kind="turn",
        server="127.0.0.1:3478",
        port=3478,
        ok=False,
        error=Explanation(401, hostile, "check the <credentials> & try again"),
        details={"software": hostile},
    )
    text = junit.render(Report((check,), NatVerdict(None, "n/a"), "failed"))
    junit_schema.validate(text)
    failure = ET.fromstring(text).find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("type") == "401"
    assert failure.get("message") == "bad reply[31m end"
    assert failure.text == "bad reply[31m end\nhint: check the <credentials> & try again"
    assert "&lt;credentials&gt; &amp; try" in text


# --- Prometheus ------------------------------------------------------------------------------


def test_prometheus_metrics_from_a_real_run(cli, coturn: Coturn, ca_file: Path, closed_port: int):
    turn = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    turns = f"turns:localhost:{coturn.tls_port}?transport=tcp"
    bad = f"stun:127.0.0.1:{closed_port}"
    result = cli(
        "probe",
        turn,
        turns,
        bad,
        *CREDS,
        "--ca-file",
        str(ca_file),
        "--timeout",
        "1",
        "--require",
        "udp",
        "--require",
        "tls",
        "--require",
        "relay",
        "--format",
        "prometheus",
    )
    # The closed port fails its checks, but the requirements decide the exit code.
    assert result.code == 0, result.out + result.err
    assert "s3cret" not in result.out
    m = metrics(result.out)
    assert list(m) == [
        "turncheck_check_up",
        "turncheck_rtt_seconds",
        "turncheck_relay_loss_ratio",
        "turncheck_relay_rtt_seconds",
        "turncheck_relay_jitter_seconds",
        "turncheck_tls_cert_expiry_seconds",
        "turncheck_requirement_met",
        "turncheck_nat_symmetric",
        "turncheck_run_ok",
        "turncheck_checks_total",
        "turncheck_checks_failed",
    ]
    turn_server = f"127.0.0.1:{coturn.port}"
    tls_server = f"127.0.0.1:{coturn.tls_port}"
    up = m["turncheck_check_up"]
    expected_up = {
        labels(url=turn, transport="udp", kind=kind, server=turn_server): 1.0
        for kind in ("stun", "turn")
    }
    expected_up |= {
        labels(url=turns, transport="tls", kind=kind, server=tls_server): 1.0
        for kind in ("stun", "turn")
    }
    bad_server = f"127.0.0.1:{closed_port}"
    expected_up |= {
        labels(url=bad, transport=t, kind="stun", server=bad_server): 0.0 for t in ("udp", "tcp")
    }
    assert up == expected_up

    rtt = m["turncheck_rtt_seconds"]
    assert set(rtt) == {k for k, v in up.items() if v == 1.0}
    assert all(0 < value < 1 for value in rtt.values())

    relay_keys = {
        labels(url=turn, transport="udp", server=turn_server),
        labels(url=turns, transport="tls", server=tls_server),
    }
    assert m["turncheck_relay_loss_ratio"] == dict.fromkeys(relay_keys, 0.0)
    relay_rtt = m["turncheck_relay_rtt_seconds"]
    assert set(relay_rtt) == {k | {("stat", s)} for k in relay_keys for s in ("min", "avg", "max")}
    for key in relay_keys:
        low, avg, high = (relay_rtt[key | {("stat", s)}] for s in ("min", "avg", "max"))
        assert 0 < low <= avg <= high < 1
    assert set(m["turncheck_relay_jitter_seconds"]) == relay_keys
    assert all(v >= 0 for v in m["turncheck_relay_jitter_seconds"].values())

    expiry = m["turncheck_tls_cert_expiry_seconds"]
    # The Binding over TLS saw the certificate too; the plain UDP and TCP checks did not.
    assert {dict(k)["url"] for k in expiry} == {turns}
    assert all(v > time.time() for v in expiry.values())

    assert m["turncheck_requirement_met"] == {
        labels(name="udp"): 1.0,
        labels(name="tls"): 1.0,
        labels(name="relay"): 1.0,
    }
    assert m["turncheck_nat_symmetric"] == {labels(): 0.0}
    assert m["turncheck_run_ok"] == {labels(): 1.0}
    assert m["turncheck_checks_total"] == {labels(): 6.0}
    assert m["turncheck_checks_failed"] == {labels(): 2.0}


def test_prometheus_run_ok_is_0_when_a_requirement_fails(cli, coturn: Coturn) -> None:
    result = cli(
        "probe",
        f"stun:127.0.0.1:{coturn.port}",
        "--transport",
        "udp",
        "--require",
        "relay",
        "--format",
        "prometheus",
    )
    assert result.code == 1
    m = metrics(result.out)
    assert m["turncheck_requirement_met"] == {labels(name="relay"): 0.0}
    assert m["turncheck_run_ok"] == {labels(): 0.0}
    assert m["turncheck_checks_failed"] == {labels(): 0.0}
    assert "turncheck_relay_loss_ratio" not in m  # no relay test: no relay families at all


def hand_built(url: str, server: str | None = "198.51.100.7:3478") -> Report:
    relay = RelayResult(
        "second allocation",
        PathStats("channel", 10, 9, 0.001, 0.0025, 0.004, 0.0005, 0, 0),
    )
    check = CheckResult(
        url=url,
        transport="tls",
        kind="turn",
        server=server,
        port=None if server is None else 3478,
        ok=True,
        rtt_ms=12.5,
        candidates=(Candidate("relay", "198.51.100.7", 50000, "udp", relay_protocol="tls"),),
        relay=relay,
        details={"tls": {"certificate": {"not_after": "2030-01-02T03:04:05Z", "days_left": 9}}},
    )
    return Report(
        (check,),
        NatVerdict(None, "unknown"),
        "all passed",
        requirements=(Requirement('max-rtt "50" \\ms\n', True, "ok"),),
    )


def test_prometheus_escapes_label_values_and_reads_back() -> None:
    url = 'turns:we"ird\\host\n.example:5349'
    text = prometheus.render(hand_built(url, server=None))
    assert 'url="turns:we\\"ird\\\\host\\n.example:5349"' in text
    assert 'name="max-rtt \\"50\\" \\\\ms\\n"' in text
    m = metrics(text)
    key = labels(url=url, transport="tls", server="")
    assert m["turncheck_check_up"] == {key | {("kind", "turn")}: 1.0}
    assert m["turncheck_rtt_seconds"] == {key | {("kind", "turn")}: 0.0125}
    assert m["turncheck_relay_loss_ratio"] == {key: pytest.approx(0.1)}
    assert m["turncheck_relay_rtt_seconds"] == {
        key | {("stat", "min")}: 0.001,
        key | {("stat", "avg")}: 0.0025,
        key | {("stat", "max")}: 0.004,
    }
    assert m["turncheck_relay_jitter_seconds"] == {key: 0.0005}
    assert m["turncheck_tls_cert_expiry_seconds"] == {key: 1893553445.0}  # 2030-01-02T03:04:05Z
    assert m["turncheck_requirement_met"] == {labels(name='max-rtt "50" \\ms\n'): 1.0}
    assert "turncheck_nat_symmetric" not in m  # unknown: omitted, not guessed


def test_prometheus_output_is_deterministic_and_documented() -> None:
    report = hand_built("turns:turn.example:5349?transport=tcp")
    text = prometheus.render(report)
    assert text == prometheus.render(report)
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = text.splitlines()
    for name in {line.split()[2] for line in lines if line.startswith("# TYPE")}:
        help_at = lines.index(next(x for x in lines if x.startswith(f"# HELP {name} ")))
        assert lines[help_at + 1] == f"# TYPE {name} gauge"
        assert name in (prometheus.__doc__ or "")
    assert "probe_ssl_earliest_cert_expiry" in text


# --- --output FILE ---------------------------------------------------------------------------


def _run_both(cli, tmp_path: Path, fmt: str, *args: str) -> tuple[str, str]:
    """The same probe to stdout and to --output FILE; returns (stdout, file text)."""
    shown = cli("probe", *args, "--format", fmt)
    target = tmp_path / f"result.{fmt}"
    target.write_text("stale content that must be replaced\n")
    written = cli("probe", *args, "--format", fmt, "--output", str(target))
    assert shown.code == written.code == 1, shown.out + shown.err + written.err
    assert written.out == ""
    return shown.out, target.read_text(encoding="utf-8")


@pytest.fixture
def output_args(coturn: Coturn, closed_port: int) -> tuple[str, ...]:
    return (
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        f"stun:127.0.0.1:{closed_port}",
        "--transport",
        "udp",
        *CREDS,
        "--timeout",
        "1",
        "--require",
        "udp",
        "--require",
        "tls",
    )


def _only_the_result_is_left(directory: Path, fmt: str) -> None:
    # write_atomically renames a temporary ".result.<fmt>.*" over the target: none may remain.
    assert [p.name for p in directory.iterdir()] == [f"result.{fmt}"]


def test_output_file_json_matches_stdout(cli, tmp_path: Path, output_args) -> None:
    shown, written = _run_both(cli, tmp_path, "json", *output_args)
    assert "s3cret" not in written

    def shape(doc: dict) -> object:
        return (
            doc["schema"],
            doc["ok"],
            doc["verdict"],
            [
                (
                    (c["url"], c["server"], c["transport"], c["kind"], c["ok"], c["error"]),
                    [x["type"] for x in c["candidates"]],
                )
                for c in doc["checks"]
            ],
            doc["requirements"],
        )

    assert shape(json.loads(written)) == shape(json.loads(shown))
    _only_the_result_is_left(tmp_path, "json")


def test_output_file_junit_matches_stdout(
    cli, tmp_path: Path, output_args, junit_schema: xmlschema.XMLSchema
) -> None:
    shown, written = _run_both(cli, tmp_path, "junit", *output_args)
    junit_schema.validate(written)

    def cases(text: str) -> set[tuple[str | None, str | None, str | None]]:
        root = ET.fromstring(text)
        out = set()
        for suite in root.findall("testsuite"):
            for case in suite.findall("testcase"):
                failure = case.find("failure")
                kind = None if failure is None else failure.get("type")
                out.add((suite.get("name"), case.get("name"), kind))
        return out

    assert cases(written) == cases(shown)
    assert len(cases(written)) == 2 + 1 + 2  # Binding, Allocate; one UDP Binding; 2 requirements
    _only_the_result_is_left(tmp_path, "junit")


def test_output_file_prometheus_matches_stdout(cli, tmp_path: Path, output_args) -> None:
    shown, written = _run_both(cli, tmp_path, "prometheus", *output_args)
    a, b = metrics(shown), metrics(written)
    assert {name: set(series) for name, series in a.items()} == {
        name: set(series) for name, series in b.items()
    }
    for name in ("turncheck_check_up", "turncheck_requirement_met", "turncheck_run_ok"):
        assert a[name] == b[name]
    assert b["turncheck_run_ok"] == {labels(): 0.0}
    _only_the_result_is_left(tmp_path, "prometheus")
