"""DNS failures named for what happened: in a namespace whose resolver cannot be reached, the
lookup fails at once (glibc's EAI_AGAIN), and turncheck says so instead of "timed out"."""

from __future__ import annotations

import sys
import time

from tests.browser.chromium import netns_etc

UNREACHABLE = "DNS lookup of {} failed: no DNS server could be reached or none answered ({})"
# The browser's UDP target looks the absolute name up through the OS (glibc: EAI_AGAIN);
# the SRV names of turncheck's extra targets go through dnspython, which finds no server.
EXPECTED = {
    UNREACHABLE.format("turn.example.net.", "temporary failure in name resolution"),
    UNREACHABLE.format("turn.example.net", "temporary failure in name resolution"),
    UNREACHABLE.format(
        "_turn._udp.turn.example.net", "this host's resolv.conf names no DNS server"
    ),
    UNREACHABLE.format(
        "_turn._tcp.turn.example.net", "this host's resolv.conf names no DNS server"
    ),
    UNREACHABLE.format(
        "_turns._tcp.turn.example.net", "this host's resolv.conf names no DNS server"
    ),
}


def test_no_reachable_resolver_is_named_not_a_timeout(lab_factory) -> None:
    lab = lab_factory("none")
    # No nameserver line: lookups go to the namespace's own 127.0.0.1:53, where nothing
    # listens; no query leaves the namespace.
    with netns_etc(lab.client_ns, None):
        started = time.monotonic()
        done = lab.run(
            lab.client_ns,
            [
                sys.executable,
                "-m",
                "turncheck",
                "probe",
                "turn:turn.example.net",
                "-u",
                "alice",
                "-p",
                "s3cret",
                "--timeout",
                "3",
                "--json",
            ],
            timeout=30,
        )
        elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr
    import json

    doc = json.loads(done.stdout)
    reasons = {c["error"]["reason"] for c in doc["checks"]}
    assert reasons and reasons <= EXPECTED, reasons
    assert all("timed out" not in r for r in reasons)
    assert "resolver" in doc["checks"][0]["error"]["hint"]
    assert elapsed < 3, elapsed  # it failed at once: nothing was waited for
