"""`turncheck audit` end to end against real servers on loopback, each with its expected
findings: coturn permissive, as Debian ships it, and hardened by a public guide; coturn as
an open relay; pion/turn; ejabberd. Then serve's audit module, scraped.

With TURNCHECK_AUDIT_MATRIX=FILE every audit's JSON is appended there (one line each), for
the findings matrix of the closing note."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from tests.servers.coturn import Coturn
from tests.test_audit_acl import DUAL_STACK, HARDENED, NO_LOOPBACK
from tests.test_serve import start_exporter, stop_exporter

# /etc/turnserver.conf as Debian 12's coturn 4.6.1 package installs it (its only lines
# that are not comments, less `syslog`), with a user for the credentialed checks.
DEBIAN = ["no-rfc5780", "no-stun-backward-compatibility", "response-origin-only-with-rfc5780"]
# The rest of Enable Security's recommended.conf that a loopback lab can carry.
GUIDE = [
    "no-tcp-relay",
    "user-quota=12",
    "total-quota=1200",
    "no-software-attribute",
    "max-allocate-lifetime=3600",
    "stale-nonce=600",
    *DEBIAN,
]


def audit(
    *urls: str, creds: bool = True, ca_file: Path | None = None, extra: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any], float]:
    argv = [sys.executable, "-m", "turncheck", "audit", *urls, "--json", *extra]
    if ca_file is not None:
        argv += ["--ca-file", str(ca_file)]
    env = {"PATH": "/usr/bin:/bin"}
    if creds:
        env |= {"TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "s3cret"}
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout, done.stderr
    doc = json.loads(done.stdout)
    if os.environ.get("TURNCHECK_AUDIT_MATRIX"):  # the findings matrix of the closing note
        with open(os.environ["TURNCHECK_AUDIT_MATRIX"], "a") as matrix:
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
            matrix.write(
                json.dumps({"test": test, "exit": done.returncode, "s": elapsed, "doc": doc}) + "\n"
            )
    return done.returncode, doc, elapsed


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Findings by id (the worst when an id repeats, as it does per target)."""
    out: dict[str, dict[str, Any]] = {}
    for f in doc["findings"]:
        out.setdefault(f["id"], f)
    return out


def severity(doc: dict[str, Any], fid: str) -> str | None:
    found = by_id(doc).get(fid)
    return None if found is None else found["severity"]


def no_bugs(doc: dict[str, Any]) -> None:
    ids = [f["id"] for f in doc["findings"]]
    assert "internal-error" not in ids, [f for f in doc["findings"] if f["id"] == "internal-error"]
    assert not [i for i in ids if i.endswith("-timeout")], ids


def all_deleted(server: Coturn) -> None:
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted, made - deleted


def urls_of(server: Coturn) -> tuple[str, ...]:
    out = (f"turn:127.0.0.1:{server.port}",)
    if server.tls_port:
        out += (f"turns:localhost:{server.tls_port}?transport=tcp",)
    return out


def test_coturn_permissive(coturn_factory, ca_file: Path) -> None:
    server = coturn_factory(hosts=DUAL_STACK)  # allow-loopback-peers, no denied-peer-ip
    code, doc, _ = audit(*urls_of(server), ca_file=ca_file)
    no_bugs(doc)
    assert code == 1 and doc["exit_code"] == 1
    assert severity(doc, "peer-acl-loopback") == "CRITICAL"
    assert severity(doc, "peer-acl-metadata") == "CRITICAL"
    assert severity(doc, "peer-acl-private") == "HIGH"
    assert severity(doc, "open-relay") == "OK"
    assert severity(doc, "software-version") == "LOW"
    assert "offered" in by_id(doc)["tcp-relay"]["finding"]
    assert severity(doc, "quota") == "LOW"  # no per-user quota up to 20
    failing = [f for f in doc["findings"] if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
    assert doc["verdict"].startswith(f"{len([f for f in failing if not f['skipped']])} finding(s)")
    all_deleted(server)


def test_coturn_as_debian_ships_it(coturn_factory, ca_file: Path) -> None:
    server = coturn_factory(hosts=DUAL_STACK, extra=[NO_LOOPBACK, *DEBIAN])
    code, doc, _ = audit(*urls_of(server), ca_file=ca_file)
    no_bugs(doc)
    assert code == 1
    loopback = by_id(doc)["peer-acl-loopback"]
    assert loopback["severity"] == "CRITICAL" and "::ffff:127.0.0.1" in loopback["finding"]
    assert "bypass" in loopback["finding"] and loopback["cve"]  # 127.0.0.1 itself is refused
    assert severity(doc, "peer-acl-private") == "HIGH"
    assert severity(doc, "rfc3489-answered") in (None, "OK")
    assert "not offered" in by_id(doc)["rfc5780"]["finding"]
    assert any(f["id"].startswith("advisory-") for f in doc["findings"])
    all_deleted(server)


def test_coturn_hardened_by_a_public_guide(coturn_factory, ca_file: Path) -> None:
    server = coturn_factory(hosts=DUAL_STACK, extra=[NO_LOOPBACK, *HARDENED, *GUIDE])
    code, doc, _ = audit(*urls_of(server), ca_file=ca_file)
    no_bugs(doc)
    for group in ("loopback", "metadata", "private", "multicast"):
        assert severity(doc, f"peer-acl-{group}") == "OK", by_id(doc)[f"peer-acl-{group}"]
    assert severity(doc, "software-version") in (None, "OK")
    assert not any(f["id"].startswith("advisory-") for f in doc["findings"])
    assert "not offered" in by_id(doc)["tcp-relay"]["finding"]
    assert severity(doc, "quota") == "OK" and "12 allocations" in by_id(doc)["quota"]["finding"]
    failing = [f for f in doc["findings"] if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
    assert code == (1 if failing else 0), failing
    all_deleted(server)


def test_coturn_without_authentication_is_an_open_relay(coturn_factory) -> None:
    server = coturn_factory(tls=False, extra=["no-auth"])
    code, doc, _ = audit(*urls_of(server), creds=False)
    no_bugs(doc)
    assert code == 1 and severity(doc, "open-relay") == "CRITICAL"
    assert doc["findings"][0]["id"] == "open-relay" or doc["findings"][0]["severity"] == "CRITICAL"
    # without credentials, an open relay's peer ACL is still checked: it matters most
    assert severity(doc, "peer-acl-loopback") is not None
    all_deleted(server)


def test_without_credentials_only_what_anyone_sees(coturn_factory) -> None:
    server = coturn_factory(tls=False)
    _, doc, _ = audit(*urls_of(server), creds=False)
    no_bugs(doc)
    assert severity(doc, "open-relay") == "OK"
    assert by_id(doc)["needs-credentials"]["skipped"] is True
    assert severity(doc, "peer-acl-loopback") is None


def test_pion_allows_every_peer(pion_factory) -> None:
    server = pion_factory("udp")
    assert server.users.get("alice") == "s3cret"
    code, doc, _ = audit(f"turn:127.0.0.1:{server.port}?transport=udp")
    no_bugs(doc)
    assert code == 1 and severity(doc, "peer-acl-loopback") == "CRITICAL"
    assert "PermissionHandler" in by_id(doc)["peer-acl-loopback"]["hint"]


def test_ejabberd(ejabberd_factory) -> None:
    server = ejabberd_factory()
    assert server.users.get("alice") == "s3cret"
    code, doc, _ = audit(f"turn:127.0.0.1:{server.port}?transport=udp")
    no_bugs(doc)
    assert code == 1 and severity(doc, "peer-acl-loopback") == "CRITICAL"


def test_an_unreachable_server_is_exit_3(tmp_path: Path) -> None:
    from tests.servers.ports import free_port_block

    port = free_port_block(1)
    code, doc, _ = audit(f"turn:127.0.0.1:{port}?transport=tcp")
    assert code == 3 and doc["ran"] is False and "refused" in doc["why"]


def test_serve_audit_module(coturn_factory, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server = coturn_factory(hosts=DUAL_STACK, tls=False)
    (tmp_path / "alice.cred").write_text("s3cret\n")
    config = tmp_path / "turncheck.yml"
    config.write_text(
        f"""modules:
  audit:
    kind: audit
    username: alice
    credential_file: {tmp_path / "alice.cred"}
    fail_on: high
    max_allocations: 5
    targets: ["turn:127.0.0.1:{server.port}"]
"""
    )
    exporter = start_exporter(config, tmp_path)
    try:
        query = urllib.parse.urlencode(
            {"module": "audit", "target": f"turn:127.0.0.1:{server.port}"}
        )
        status, body, _ = exporter.get(
            f"/probe?{query}", headers={"X-Prometheus-Scrape-Timeout-Seconds": "30"}
        )
        assert status == 200, body
        elsewhere = urllib.parse.urlencode({"module": "audit", "target": "turn:127.0.0.9:3478"})
        status, refused, _ = exporter.get(f"/probe?{elsewhere}")
        assert status == 400 and "not one of module 'audit''s targets" in refused
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }
        assert samples[("probe_success", ())] == 0  # CRITICAL loopback ≥ high
        assert samples[("turncheck_audit_ran", ())] == 1
        assert samples[("turncheck_audit_findings", (("severity", "CRITICAL"),))] >= 1
        ids = {
            dict(labels).get("id")
            for (name, labels) in samples
            if name == "turncheck_audit_finding"
        }
        assert "peer-acl-loopback" in ids
        assert "s3cret" not in body and "s3cret" not in exporter.log.read_text()
    finally:
        stop_exporter(exporter)
    all_deleted(server)
