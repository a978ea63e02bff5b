"""Management surfaces (turncheck/audit/surfaces.py): coturn with its CLI, web admin and
ACME redirect on loopback ports, a real Prometheus exporter; only the URL's host."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.coturn import Coturn
from tests.servers.fixtures import require_tool
from tests.servers.ports import free_port_block, release_ports
from tests.test_audit_unauth import audit_context, closing_everything, only, run
from turncheck.audit import AuditContext, surfaces
from turncheck.audit.surfaces import HTTP_ROOT, SurfacePorts
from turncheck.findings import Finding, Severity
from turncheck.transport import StreamAnswer, stream_exchange

DEBIAN_12 = "Coturn-4.6.1 'Gorst'"


@pytest.fixture
def free_ports() -> Iterator[list[int]]:
    """Four ports nothing listens on (for the surfaces a server does not open)."""
    first = free_port_block(4)
    try:
        yield [first, first + 1, first + 2, first + 3]
    finally:
        release_ports(first, 4)


def urls(server: Coturn) -> tuple[str, ...]:
    return (
        f"turn:127.0.0.1:{server.port}?transport=udp",
        f"turn:127.0.0.1:{server.port}?transport=tcp",
    )


def all_of(ctx: AuditContext, ports: SurfacePorts) -> list[Finding]:
    found: list[Finding] = []
    for check in surfaces.checks_for(ports):
        found += run(check, ctx)
    return found


def test_coturn_with_cli_web_admin_and_http_on_its_port(coturn_factory, free_ports) -> None:
    cli, admin, metrics, other = free_ports
    server = coturn_factory(
        extra=[
            "no-cli=false",
            "cli-ip=127.0.0.1",
            f"cli-port={cli}",
            "cli-password=not-the-default",
            "web-admin",
            "web-admin-ip=127.0.0.1",
            f"web-admin-port={admin}",
            "web-admin-listen-on-workers",
            # coturn 4.6.1 crashes on HTTP to its TURN port with web-admin-listen-on-workers
            # and verbose (advisories.crashes_on_http); and SOFTWARE hidden, so the check
            # does not know the release and probes.
            "verbose=false",
            "no-software-attribute",
        ],
    )
    ports = SurfacePorts(cli=cli, web_admin=admin, coturn_metrics=metrics, eturnal_metrics=other)
    found = all_of(audit_context(*urls(server)), ports)

    http = only(found, "http-on-turn-port")
    assert http.severity is Severity.HIGH
    assert "web-admin-listen-on-workers" in http.finding
    assert http.evidence == "GET / → 200 OK, Server: Coturn-4.6.1 'Gorst'"
    assert http.target == f"127.0.0.1:{server.port}/tcp"

    telnet = only(found, "coturn-cli")
    assert telnet.severity is Severity.HIGH
    assert "asks for a password" in telnet.finding
    # The CLI greets with the release, even with no-software-attribute.
    assert telnet.evidence == (
        "connect → \"TURN Server | Coturn-4.6.1 'Gorst' | Type '?' for help | Enter password:\""
    )
    assert "no-cli" in telnet.hint and "cli-ip" in telnet.hint

    web = only(found, "web-admin")
    assert web.severity is Severity.HIGH
    # Over plain HTTP coturn's web admin port asks for HTTPS; the probe follows. (Its HTTPS
    # pages name no release with no-software-attribute; the plain one does.)
    assert web.evidence == "GET / over TLS → 200 OK"
    assert web.finding == "coturn's web admin is reachable"
    assert "web-admin" in web.hint

    exporters = [f for f in found if f.id == "metrics-exposed"]
    assert [f.severity for f in exporters] == [Severity.OK, Severity.OK]
    assert server.process.poll() is None  # alive after every probe


def test_coturn_4_6_1_opens_no_cli_without_a_password(coturn_factory, free_ports) -> None:
    """The CRITICAL case (a CLI that asks for no password, CVE-2018-4059's) cannot happen with
    coturn 4.6.1: it logs "Empty cli-password, and so telnet cli interface is disabled"."""
    cli = free_ports[0]
    # coturn refuses to start with allow-loopback-peers (the fixture's) and no cli-password.
    server = coturn_factory(
        extra=["allow-loopback-peers=false", "no-cli=false", "cli-ip=127.0.0.1", f"cli-port={cli}"],
        tls=False,
    )
    (found,) = run(surfaces.checks_for(SurfacePorts(cli=cli))[1], audit_context(*urls(server)))
    assert found.severity is Severity.OK
    assert found.evidence == f"connect to 127.0.0.1:{cli} → connection refused"
    assert "telnet cli interface is disabled" in server.log_text()


def test_acme_redirect_on_the_turn_port(coturn_factory) -> None:
    """coturn 4.6.1 takes the ACME path (acme-redirect) but closes the connection (SO_LINGER
    0) before its 301 leaves: under strace no byte is written. So the probe sees a reset, as
    without acme-redirect; the judgement of a 301 is checked on the bytes newer coturn sends."""
    server = coturn_factory(
        extra=["acme-redirect=http://acme.invalid/", "no-software-attribute"], tls=False
    )
    (found,) = run(surfaces.http_on_turn_port, audit_context(*urls(server)))
    assert found.severity is Severity.OK
    assert found.evidence == (
        "GET / → connection reset; "
        f"GET /.well-known/acme-challenge/{surfaces.ACME_TOKEN} → connection reset"
    )
    assert len(surfaces.HTTP_ROOT) < 64  # below try_acme_redirect's bound: never its leak path
    location = f"Location: http://acme.invalid/{surfaces.ACME_TOKEN}"
    redirect = StreamAnswer(True, f"HTTP/1.1 301 Moved Permanently\r\n{location}\r\n\r\n".encode())
    nothing = StreamAnswer(True, b"", "connection reset")
    severity, text = surfaces.judge_turn_http(nothing, redirect, None)
    assert severity is Severity.LOW and "acme-redirect" in text
    # With a release SOFTWARE shows in the range of CVE-2026-62959, it is MEDIUM.
    severity, text = surfaces.judge_turn_http(nothing, redirect, "Coturn-4.14.0 'Gorst'")
    assert severity is Severity.MEDIUM and "CVE-2026-62959" in text
    assert surfaces.judge_turn_http(nothing, redirect, "Coturn-4.15.0 'Gorst'")[0] is Severity.LOW


def test_no_http_probe_where_it_crashes_coturn(coturn: Coturn) -> None:
    # SOFTWARE says 4.6.1: the TURN ports are not probed at all (the shared server would die
    # if web-admin-listen-on-workers were set).
    ctx = audit_context(*urls(coturn), software=DEBIAN_12)
    (found,) = run(surfaces.http_on_turn_port, ctx)
    assert found.severity is Severity.INFO and found.skipped
    assert "crashes on an HTTP(S) request" in found.finding
    assert "web-admin-listen-on-workers" in found.hint


def test_default_coturn_serves_no_http_on_its_port(coturn: Coturn) -> None:
    (found,) = run(surfaces.http_on_turn_port, audit_context(*urls(coturn)))
    assert found.severity is Severity.OK
    assert found.evidence.startswith("GET / → ")


def test_https_probe_of_a_tls_port_needs_a_release_that_does_not_crash(coturn: Coturn) -> None:
    tls_only = f"turns:localhost:{coturn.tls_port}?transport=tcp"
    (skipped,) = run(surfaces.http_on_turn_port, audit_context(tls_only))
    assert skipped.skipped and "SOFTWARE does not show the release" in skipped.finding
    # A release that does not crash: the TLS port is probed (coturn closes: no HTTP).
    (probed,) = run(
        surfaces.http_on_turn_port, audit_context(tls_only, software="Coturn-4.17.1 'Gorst'")
    )
    assert probed.severity is Severity.OK and probed.evidence.startswith("GET / over TLS → ")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[int]:
    """A real Prometheus on 127.0.0.1:<free port>: it serves its own /metrics."""
    binary = require_tool("prometheus")
    port = free_port_block(1)
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("prometheus did not start listening")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        release_ports(port, 1)


def test_a_prometheus_exporter_is_exposed(prometheus: int, free_ports) -> None:
    ctx = audit_context("turn:127.0.0.1:3478?transport=udp")
    ports = SurfacePorts(coturn_metrics=prometheus, eturnal_metrics=free_ports[0])
    exposed, closed = run(surfaces.checks_for(ports)[3], ctx)
    assert exposed.severity is Severity.MEDIUM
    assert exposed.finding.startswith("a Prometheus exporter is reachable")
    assert exposed.evidence == "GET /metrics → 200 OK"
    assert "prometheus-address=127.0.0.1" in exposed.hint and "mod_stats_prometheus" in exposed.hint
    assert exposed.target == f"127.0.0.1:{prometheus}/tcp"
    assert closed.severity is Severity.OK


def test_only_the_urls_host_is_probed(free_ports) -> None:
    """A listener on 127.0.0.2 sees no connection when the URL names 127.0.0.1."""
    port = free_ports[0]
    accepted: list[object] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", port))
        listener.listen()
        listener.settimeout(0.1)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    conn, peer = listener.accept()
                except (TimeoutError, OSError):
                    continue
                accepted.append(peer)
                conn.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            ctx = audit_context(f"turn:127.0.0.1:{port}?transport=tcp")
            found = all_of(ctx, SurfacePorts(port, port, port, port))
        finally:
            stop.set()
            thread.join(timeout=2)
    assert accepted == []
    assert {f.target.split("/")[0].rsplit(":", 1)[0] for f in found} == {"127.0.0.1"}
    assert all(f.severity is Severity.OK for f in found), found


def test_parsing_what_servers_say() -> None:
    banner = b"\xff\xfb\x01\xff\xfd\x18TURN Server\r\nCoturn-4.6.1 'Gorst'\r\n\r\nType '?' for help\r\n> "
    assert surfaces.shown(banner) == "TURN Server | Coturn-4.6.1 'Gorst' | Type '?' for help | >"
    assert surfaces.judge_cli(banner)[0] is Severity.CRITICAL
    assert surfaces.judge_cli(b"SSH-2.0-OpenSSH_9.2\r\n")[0] is Severity.INFO
    http = surfaces.parse_http(
        b"HTTP/1.1 400 HTTP Not supported\r\nConnection: close\r\n\r\nHTTP not supported.\n"
    )
    assert http is not None and http.status == 400
    severity, _ = surfaces.judge_turn_http(
        StreamAnswer(True, b"HTTP/1.1 400 HTTP Not supported\r\n\r\nHTTP not supported.\n"),
        None,
        None,
    )
    assert severity is Severity.INFO  # coturn's respond-http-unsupported: no service behind
    assert surfaces.parse_http(b"\x00\x01\x00\x00") is None
    eturnal = surfaces.parse_http(b"HTTP/1.1 200 OK\r\n\r\n# TYPE eturnal_sessions gauge\n")
    assert surfaces.judge_metrics(eturnal)[1].startswith("eturnal's Prometheus exporter")


# -- transport.stream_exchange: bounded, closed on every path ---------------------------------


async def _until_closed(reader: asyncio.StreamReader) -> str:
    """How the probe's side of a connection ended, read from the other side."""
    try:
        await reader.read()  # to EOF
    except ConnectionResetError:
        return "reset"
    return "closed"


async def _flooded(limit: int) -> tuple[StreamAnswer, str]:
    """A peer that answers a request with four times the limit, then watches the close."""
    closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(len(HTTP_ROOT))
            writer.write(b"x" * (limit * 4))
            closed.set_result(await _until_closed(reader))
        finally:
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        deadline = asyncio.get_running_loop().time() + 5
        answer = await stream_exchange(
            "127.0.0.1", port, HTTP_ROOT, deadline=deadline, limit=limit, quiet=5
        )
        return answer, await asyncio.wait_for(closed, 5)


def test_stream_exchange_reads_at_most_its_limit_and_closes() -> None:
    answer, closed = closing_everything(_flooded(1000))
    assert (answer.connected, len(answer.data), answer.ended) == (True, 1000, "limit")
    assert closed in ("closed", "reset")


async def _cancelled_mid_read() -> str:
    loop = asyncio.get_running_loop()
    reading, closed = loop.create_future(), loop.create_future()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(len(HTTP_ROOT))
            reading.set_result(None)  # the probe wrote its request: it is reading now
            closed.set_result(await _until_closed(reader))
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        probe = asyncio.create_task(
            stream_exchange(
                "127.0.0.1", port, HTTP_ROOT, deadline=loop.time() + 30, limit=100, quiet=30
            )
        )
        await asyncio.wait_for(reading, 5)
        probe.cancel()  # Ctrl-C in the middle of the read
        with pytest.raises(asyncio.CancelledError):
            await probe
        return await asyncio.wait_for(closed, 5)


def test_stream_exchange_cancelled_closes_its_connection() -> None:
    assert closing_everything(_cancelled_mid_read()) in ("closed", "reset")


def test_stream_exchange_to_a_closed_port_says_so() -> None:
    port = free_port_block(1)
    try:
        answer = closing_everything(_once(port))
    finally:
        release_ports(port, 1)
    assert (answer.connected, answer.data, answer.ended) == (False, b"", "connection refused")


async def _once(port: int) -> StreamAnswer:
    deadline = asyncio.get_running_loop().time() + 5
    return await stream_exchange("127.0.0.1", port, None, deadline=deadline, limit=10, quiet=1)
