"""The same checks against every real TURN server we have: coturn, pion/turn and ejabberd
(p1_stun, the engine of eturnal). Each cell asserts turncheck's outcome and the reason it
gives, so that what it tells a user holds for the server in front of them.

Servers differ (PROTOCOL.md, tests/servers/pion.py, tests/servers/ejabberd.py): pion answers
a wrong password with an unsigned 400 and never sends a TLS close_notify; ejabberd signs its
401 and refuses blacklisted clients with 403; neither speaks RFC 5780.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers.coturn import Coturn
from tests.servers.ports import free_port_block

SERVERS = ("coturn", "pion", "ejabberd")
TRANSPORTS = ("udp", "tcp", "tls")
TIMEOUT = 3.0


def urls(name: str, coturn: Coturn, pion_servers: dict[str, Any], ejabberd: Any) -> dict[str, str]:
    if name == "coturn":
        return {
            "udp": f"turn:127.0.0.1:{coturn.port}?transport=udp",
            "tcp": f"turn:127.0.0.1:{coturn.port}?transport=tcp",
            "tls": f"turns:localhost:{coturn.tls_port}?transport=tcp",
        }
    if name == "pion":
        return {t: pion_servers[t].url for t in TRANSPORTS}
    return {t: ejabberd.url(t) for t in TRANSPORTS}


@pytest.fixture
def server_urls(request, coturn, pion_servers, ejabberd) -> dict[str, str]:
    return urls(request.param, coturn, pion_servers, ejabberd)


def run(
    *args: str, ca_file: Path, user: str = "alice", password: str = "s3cret"
) -> tuple[Any, float, str]:
    env = {**os.environ, "TURNCHECK_USERNAME": user, "TURNCHECK_CREDENTIAL": password}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "turncheck", *args, "--ca-file", str(ca_file), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr
    return (done.returncode, json.loads(done.stdout)), elapsed, done.stderr


def allocate(doc: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in doc["checks"] if c["kind"] == "turn" and not c["extra"])


@pytest.mark.parametrize("server_urls", SERVERS, indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_probe_relays_over_every_transport(server_urls, transport: str, ca_file: Path) -> None:
    (code, doc), _, _ = run("probe", server_urls[transport], "--timeout", "3", ca_file=ca_file)
    check = allocate(doc)
    assert code == 0, check["error"]
    assert check["relay_test"]["received"] == check["relay_test"]["sent"] == 10
    assert doc["browser"]["relay"] == [transport]


EXPECTED_AUTH = {
    "coturn": "wrong username or credential, or realm mismatch (401 Unauthorized)",
    "ejabberd": "wrong username or credential, or realm mismatch (401 Unauthorized)",
    "pion": "the server answered 400 without integrity to the authenticated Allocate: servers "
    "built on pion/turn answer a wrong username or password this way",
}
# The hint speaks of the server in front of you: its SOFTWARE names it (coturn, ejabberd),
# or its answer does (pion's unsigned 400, which is the point, not the missing signature).
EXPECTED_AUTH_HINT = {
    "coturn": "with coturn's use-auth-secret the username is <expiry>:<user>",
    "ejabberd": "ejabberd/eturnal takes the account's password",
    "pion": "this server says 400 Bad Request to a wrong username or password, where RFC 8656 "
    "says 401",
}


@pytest.mark.parametrize("server_urls", SERVERS, indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_bad_credentials_are_named_quickly(
    request, server_urls, transport: str, who: str, ca_file: Path
) -> None:
    name = request.node.callspec.params["server_urls"]
    user, password = ("alice", "wrong1") if who == "wrong-password" else ("mallory", "x1")
    (code, doc), elapsed, _ = run(
        "probe",
        server_urls[transport],
        "--timeout",
        str(TIMEOUT),
        ca_file=ca_file,
        user=user,
        password=password,
    )
    assert code == 1
    reason = allocate(doc)["error"]["reason"]
    assert EXPECTED_AUTH[name] in reason, reason
    hint = allocate(doc)["error"]["hint"]
    assert EXPECTED_AUTH_HINT[name] in hint, hint
    assert "would have said 401" not in hint
    # §9.2.5: a reliable transport ends the transaction at once; over UDP the evidence is
    # conclusive after the second send (0.5 s), not at --timeout.
    assert elapsed < TIMEOUT, (elapsed, reason)
    assert "right server and port" not in allocate(doc)["error"]["hint"]


@pytest.mark.parametrize("server_urls", SERVERS, indirect=True)
def test_no_refresh_after_an_allocate_error(request, server_urls, ca_file: Path) -> None:
    """RFC 8656 §7.3: no allocation exists after an error response; no Refresh(0) is sent."""
    env = {**os.environ, "TURNCHECK_USERNAME": "alice", "TURNCHECK_CREDENTIAL": "wrong1"}
    done = subprocess.run(
        [sys.executable, "-m", "turncheck", "probe", server_urls["udp"], "-v", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert "Allocate request" in done.stderr
    assert "Refresh request" not in done.stderr, done.stderr


def test_closed_port_is_refused_whatever_the_server(ca_file: Path) -> None:
    port = free_port_block(1)
    (code, doc), elapsed, _ = run(
        "probe", f"turn:127.0.0.1:{port}?transport=udp", "--timeout", "2", ca_file=ca_file
    )
    assert code == 1 and elapsed < 2
    assert "connection refused" in allocate(doc)["error"]["reason"]


@pytest.mark.parametrize("server_urls", SERVERS, indirect=True)
def test_nat_and_probe_agree(server_urls, ca_file: Path) -> None:
    host_port = server_urls["udp"].split(":", 1)[1].split("?")[0]
    nat_run = subprocess.run(
        [sys.executable, "-m", "turncheck", "nat", f"stun:{host_port}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nat_run.returncode == 0, nat_run.stderr
    nat = json.loads(nat_run.stdout)
    (code, doc), _, _ = run("probe", f"stun:{host_port}", "--timeout", "2", ca_file=ca_file)
    assert code == 0
    assert doc["nat"]["symmetric"] == nat["symmetric"] is False  # loopback: no NAT
    assert "no method possible" not in nat_run.stdout
    # No NAT answers the mapping question: the verdict never says the type is unknown, and
    # without RFC 5780 only the filtering stays open.
    assert nat["classic"] in ("open internet", "no NAT"), nat
    assert nat["mapping"] == "endpoint-independent"
    if nat["filtering"] is None:
        assert nat["classic"] == "no NAT"


@pytest.mark.parametrize("server_urls", SERVERS, indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_load_sets_up_and_relays(server_urls, transport: str, ca_file: Path) -> None:
    (code, doc), _, _ = run(
        "load", server_urls[transport], "--clients", "3", "--duration", "0.5", ca_file=ca_file
    )
    assert code == 0, doc["verdict"]
    assert doc["allocations"]["deleted"] == 6


def test_load_over_tls_against_pion_closes_fast(pion_servers, ca_file: Path) -> None:
    """pion never sends a TLS close_notify: 20 pairs, 1 s of relaying, under 3 s in all."""
    (code, doc), elapsed, _ = run(
        "load", pion_servers["tls"].url, "--clients", "20", "--duration", "1", ca_file=ca_file
    )
    assert code == 0, doc["verdict"]
    assert doc["allocations"]["deleted"] == 40
    assert elapsed < 4.0, elapsed  # 3 s for the run, plus the interpreter's start


def test_tls_probe_against_pion_costs_its_handshake_and_checks(pion_servers, ca_file: Path) -> None:
    (code, _), elapsed, _ = run("probe", pion_servers["tls"].url, "--count", "3", ca_file=ca_file)
    assert code == 0
    assert elapsed < 2.0, elapsed  # was 2.4 s waiting for close_notify that never comes


def test_load_reasons_carry_the_cause(pion_servers, ca_file: Path) -> None:
    (code, doc), elapsed, _ = run(
        "load",
        pion_servers["udp"].url,
        "--clients",
        "2",
        "--duration",
        "0.3",
        "--timeout",
        "3",
        ca_file=ca_file,
        password="wrong1",
    )
    assert code == 1
    (reason,) = doc["allocations"]["failures"]
    assert "400" in reason and "without integrity" in reason and "timeout" not in reason
    assert elapsed < 3.0


def test_refusals_get_the_hint_of_the_server_in_front_of_you(
    coturn_factory, ejabberd_factory, pion_factory, ca_file: Path
) -> None:
    # coturn: a denied peer → 403 at CreatePermission, coturn's option names.
    denied = coturn_factory(extra=["denied-peer-ip=127.0.0.1"], tls=False)
    (code, doc), _, _ = run("probe", f"turn:127.0.0.1:{denied.port}?transport=udp", ca_file=ca_file)
    error = allocate(doc)["error"]
    assert code == 1 and error["code"] == 403
    assert "denied-peer-ip" in error["hint"] and "turn_blacklist" not in error["hint"]
    # ejabberd: turn_blacklist refuses the client itself → 403 at Allocate, its option name.
    blacklisting = ejabberd_factory(turn_blacklist=["127.0.0.1/8"])
    (code, doc), _, _ = run("probe", blacklisting.url("udp"), ca_file=ca_file)
    error = allocate(doc)["error"]
    assert code == 1 and error["code"] == 403
    assert "turn_blacklist" in error["hint"] and "denied-peer-ip" not in error["hint"]
    assert "peer address" not in error["reason"]
    # pion never sends 403: its permission filter refuses peers with a ChannelBind 401 and
    # a CreatePermission error without ERROR-CODE; the reason says it is about the peer.
    # Its example filter lets only the client's own address through: relay to 127.0.0.2.
    filtering = pion_factory("perm-filter")
    (code, doc), _, _ = run("probe", filtering.url, "--peer", "127.0.0.2:9", ca_file=ca_file)
    assert code == 1
    reason = allocate(doc)["error"]["reason"]
    assert "wrong username" not in reason
    assert "peer" in reason or "ERROR-CODE" in reason, reason


def test_classic_names_a_server_that_ignores_rfc3489_requests(pion_servers) -> None:
    port = pion_servers["udp"].port
    done = subprocess.run(
        [sys.executable, "-m", "turncheck", "nat", f"stun:127.0.0.1:{port}", "--classic", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    note = json.loads(done.stdout)["classic_check"]["note"]
    assert "the server does not answer RFC 3489 requests" in note
    assert "pion" not in note  # the note speaks of this server, not of one it guessed
    assert "Traceback" not in done.stderr


def test_classic_speaks_in_words_on_ejabberds_padded_software(ejabberd) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "turncheck", "nat", f"stun:127.0.0.1:{ejabberd.port}", "--classic"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "invalid literal" not in done.stdout and "Traceback" not in done.stderr
    assert "classic RFC 3489 test (pystun3): " in done.stdout
    # The real cause: p1_stun's SOFTWARE "P1 STUN library" is 15 bytes, padded to 16.
    words = " ".join(done.stdout.split())
    assert "does not skip the padding after an attribute" in words
    assert "this server's SOFTWARE is 15 bytes" in words


# -- one evidence-to-reason engine: probe and load say the same for the same evidence ------


def load_failure(doc: dict[str, Any]) -> tuple[str, str]:
    (reason,) = doc["allocations"]["failures"]
    return reason, doc["allocations"]["hints"][reason]


@pytest.mark.parametrize("server_urls", SERVERS, indirect=True)
def test_probe_and_load_give_the_same_reason_and_hint(server_urls, ca_file: Path) -> None:
    url = server_urls["udp"]
    wrong = {"ca_file": ca_file, "password": "wrong1"}
    (code, doc), _, _ = run("probe", url, "--timeout", str(TIMEOUT), **wrong)
    error = allocate(doc)["error"]
    (load_code, load_doc), _, _ = run(
        "load", url, "--clients", "1", "--duration", "0.2", "--timeout", str(TIMEOUT), **wrong
    )
    assert code == load_code == 1
    assert load_failure(load_doc) == (error["reason"], error["hint"])


def test_probe_and_load_agree_on_a_closed_port(ca_file: Path) -> None:
    url = f"turn:127.0.0.1:{free_port_block(1)}?transport=udp"
    (_, doc), _, _ = run("probe", url, "--timeout", "2", ca_file=ca_file)
    (_, load_doc), _, _ = run(
        "load", url, "--clients", "1", "--duration", "0.2", "--timeout", "2", ca_file=ca_file
    )
    error = allocate(doc)["error"]
    assert error["reason"].startswith("connection refused: nothing listens on 127.0.0.1:")
    assert load_failure(load_doc) == (error["reason"], error["hint"])


def test_a_stun_only_server_given_as_turn(stund, ca_file: Path) -> None:
    """stund answers Binding in a fraction of a millisecond and drops Allocate: the evidence
    names a STUN-only server, not a network that blocks UDP; probe and load agree."""
    url = f"turn:127.0.0.1:{stund.port}?transport=udp"
    (code, doc), elapsed, _ = run("probe", url, "--timeout", "5", ca_file=ca_file)
    check = allocate(doc)
    assert code == 1
    assert check["error"]["reason"].startswith(
        "this server answers STUN but not TURN: 20 of 20 Binding requests from the same socket "
        "were answered (in "
    )
    # three sends, the burst of Bindings, five more sends to confirm (transport.CONFIRM_SENDS)
    assert "no answer to TURN Allocate (udp) after 8 send(s)" in check["error"]["reason"]
    # Conclusive after the third unanswered send (1.5 s) and a burst, not at --timeout.
    assert elapsed < 4.0, elapsed
    assert "UDP may be blocked" not in check["error"]["hint"]
    assert "STUN-only server" in check["error"]["hint"]
    # What Chromium raises for it is still its timeout: the server never answers.
    assert check["details"]["browser_error"] == {
        "code": 701,
        "text": "TURN allocate request timed out.",
    }
    (_, load_doc), _, _ = run(
        "load", url, "--clients", "1", "--duration", "0.2", "--timeout", "5", ca_file=ca_file
    )
    figures = re.compile(r"\d+(\.\d+)?")  # the round trips and waits of two runs differ
    assert [figures.sub("N", s) for s in load_failure(load_doc)] == [
        figures.sub("N", check["error"]["reason"]),
        figures.sub("N", check["error"]["hint"]),
    ]


def test_unsigned_channel_bind_load_relays_over_indications_and_says_what_browsers_do(
    coturn_factory, ca_file: Path
) -> None:
    from tests.servers.proxy import strip_integrity, udp_delay_proxy

    server = coturn_factory(tls=False, relay_range=60)
    with udp_delay_proxy(
        ("127.0.0.1", server.port), delay=0.0, rewrite=strip_integrity(0x0109)
    ) as proxy:
        url = f"turn:127.0.0.1:{proxy.port}?transport=udp"
        (code, doc), _, _ = run(
            "load", url, "--clients", "5", "--duration", "1", "--timeout", "2", ca_file=ca_file
        )
        (probe_code, probe_doc), _, _ = run("probe", url, "--timeout", "2", ca_file=ca_file)
    alloc = doc["allocations"]
    assert code == probe_code == 1
    assert alloc["pairs_succeeded"] == alloc["pairs_on_indications"] == 5
    (reason,) = alloc["channel_bind_failures"]
    assert "ChannelBind with a success without integrity" in reason
    assert doc["relay"]["received"] > 0  # the server's relaying was still measured
    assert doc["verdict"].startswith("calls through TURN fail: 5 of 5 pairs relay only over")
    assert "Chromium drops a TURN connection whose ChannelBind fails" in doc["verdict"]
    assert "Chromium drops a TURN connection whose ChannelBind fails" in probe_doc["verdict"]
    assert reason == allocate(probe_doc)["relay_test"]["paths"]["channel"]["error"]["reason"]
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted


def test_a_server_slow_to_accept_is_named_a_set_up_stall(coturn_factory, ca_file: Path) -> None:
    """A TCP front with a listen backlog of 1 that accepts one connection per 50 ms: SYNs
    overflow it and come again after 1 s. load reports set-up by phase and names it."""
    from tests.servers.proxy import slow_accept_tcp_proxy

    server = coturn_factory(tls=False, relay_range=60)
    with slow_accept_tcp_proxy(("127.0.0.1", server.port), backlog=1, accept_every=0.05) as px:
        (_, doc), _, _ = run(
            "load",
            f"turn:127.0.0.1:{px.port}?transport=tcp",
            "--clients",
            "10",
            "--duration",
            "0.5",
            "--timeout",
            "8",
            ca_file=ca_file,
        )
    setup = doc["allocations"]["setup_ms"]
    assert set(setup) == {"connect", "tls_handshake", "allocate", "channel_bind"}
    assert setup["tls_handshake"] is None  # TCP: no handshake
    assert setup["connect"]["max"] >= 900
    stall = doc["allocations"]["stall"]
    assert stall is not None and "their SYN was dropped and sent again after 1 s" in stall
    assert "set-up stalled" in doc["verdict"] or doc["allocations"]["pairs_failed"]


def test_a_server_without_authentication_is_an_open_relay_browsers_ignore(
    coturn_factory, ca_file: Path
) -> None:
    """coturn no-auth grants the first, unauthenticated Allocate. turncheck relays through it
    (no crash on a success without the 401 round), names the open relay, and says what
    Chromium 156 gets: nothing (it discards unauthenticated Allocate answers; the namespace
    lab's no-auth scenario shows it)."""
    server = coturn_factory(tls=False, extra=["no-auth"])
    (code, doc), _, _ = run(
        "probe", f"turn:127.0.0.1:{server.port}?transport=udp", "--timeout", "2", ca_file=ca_file
    )
    check = allocate(doc)
    assert "internal error" not in json.dumps(doc), doc
    assert check["ok"] is True and check["details"]["unchallenged"] is True
    assert check["relay_test"]["received"] == check["relay_test"]["sent"] == 10
    assert code == 1
    assert doc["verdict"].startswith(
        "calls that need TURN fail: a browser with this configuration gets no relay candidate"
    )
    assert "granted the Allocate without authentication" in doc["verdict"]
    assert any(n.startswith("open relay: turn:127.0.0.1:") for n in doc["notes"])
    assert check["details"]["browser_error"] == {
        "code": 701,
        "text": "TURN allocate request timed out.",
    }
    made, deleted = server.allocation_sessions()
    assert made and made <= deleted, server.log_tail()
