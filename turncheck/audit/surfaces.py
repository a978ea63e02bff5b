"""Management surfaces answering on the host named in the URL.

    http-on-turn-port  HTTP on a TURN TCP port: coturn's web admin there
                       (web-admin-listen-on-workers): HIGH; another HTTP service: MEDIUM;
                       coturn's ACME redirect: LOW (MEDIUM on a release in the range of
                       CVE-2026-62959); coturn's "400 HTTP not supported": INFO
    coturn-cli         coturn's telnet CLI (5766): HIGH when it asks for a password,
                       CRITICAL when it does not (anyone can reconfigure the server)
    web-admin          coturn's web admin (8080, HTTPS): HIGH
    metrics-exposed    a Prometheus exporter: coturn's (9641), eturnal's (8081): MEDIUM

Only the addresses the URLs' hosts resolved to are probed, only these ports, with one
connect, one small request and a bounded read each; a port that refuses or stays silent is
simply not exposed (OK). The ports are a parameter (SurfacePorts), so the tests probe
servers on free ports.

One probe is not made where it would crash the server: coturn 4.6.1 and older crash on an
HTTP(S) request to a TURN port when web-admin-listen-on-workers is set
(advisories.crashes_on_http). So the TURN ports are not probed at all when SOFTWARE shows
such a release, and a TLS port is probed with HTTPS only when SOFTWARE shows a release
that does not crash and no plain TCP port of that host could tell instead. What is left:
a plain TCP port is probed when SOFTWARE says nothing, so a coturn 4.6.1 that hides
SOFTWARE and runs `verbose` with web-admin-listen-on-workers could still crash on it (the
README's safety rules say so).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass

from turncheck import stun
from turncheck.advisories import COTURN_HTTP_CRASH_FIXED, crashes_on_http, known_vulnerable
from turncheck.audit import AuditContext, Check
from turncheck.findings import Finding, Severity
from turncheck.resolve import Endpoint
from turncheck.transport import StreamAnswer, stream_exchange
from turncheck.urls import Transport, hostport

READ_LIMIT = 8192  # bytes read from any surface, at most
QUIET = 0.5  # seconds without a new byte that end a read once something came
PROBE_TIMEOUT = 3.0  # seconds for one probe: connect, request, read
MAX_HOSTS = 4  # distinct addresses probed per run

HTTP_ROOT = b"GET / HTTP/1.0\r\n\r\n"
# coturn answers ACME only for a path of 10 or more [A-Za-z0-9_-] characters in a request
# of 64 bytes or more (acme.c is_acme_req, try_acme_redirect); this one is 89.
ACME_TOKEN = "turncheck-audit-probe"
HTTP_ACME = (
    f"GET /.well-known/acme-challenge/{ACME_TOKEN} HTTP/1.0\r\nUser-Agent: turncheck\r\n\r\n"
).encode()
HTTP_METRICS = b"GET /metrics HTTP/1.0\r\n\r\n"
_HTTPS_PLEASE = b"use https connection for the admin session"  # coturn's http_server.c


@dataclass(frozen=True, slots=True)
class SurfacePorts:
    """The management ports probed: the products' defaults unless a test moves them."""

    cli: int = 5766  # coturn cli-port
    web_admin: int = 8080  # coturn web-admin-port
    coturn_metrics: int = 9641  # coturn prometheus-port
    eturnal_metrics: int = 8081  # eturnal mod_stats_prometheus port


DEFAULT_PORTS = SurfacePorts()

_HTTP_HINT = (
    "serve no HTTP on TURN ports: coturn: remove web-admin-listen-on-workers (and "
    "acme-redirect unless certificates are issued through it); put other HTTP services on "
    "their own port"
)
_CLI_HINT = (
    "coturn: no-cli (the CLI is on by default before 4.10.0), or cli-ip=127.0.0.1 with a "
    "cli-password hashed by turnadmin -P; and firewall the CLI port"
)
_WEB_ADMIN_HINT = "coturn: remove web-admin, or web-admin-ip=127.0.0.1 and firewall the port"
_METRICS_HINT = (
    "keep the exporter off the Internet: coturn: prometheus-address=127.0.0.1 (4.6.3 and "
    "later; before, it listens on every address: firewall port 9641); eturnal: "
    "mod_stats_prometheus: ip: 127.0.0.1 (its default is any), or tls with a firewall"
)


# -- bounded stream probes ------------------------------------------------------------------


async def _probe(
    address: str,
    port: int,
    request: bytes | None,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> StreamAnswer:
    """One transport.stream_exchange with this module's bounds: PROBE_TIMEOUT in all,
    READ_LIMIT bytes, QUIET seconds without a new byte once something came."""
    return await stream_exchange(
        address,
        port,
        request,
        deadline=asyncio.get_running_loop().time() + PROBE_TIMEOUT,
        limit=READ_LIMIT,
        quiet=QUIET,
        tls=tls,
        server_hostname=server_hostname,
    )


def shown(data: bytes, limit: int = 120) -> str:
    """Server bytes as safe one-line text: telnet negotiation dropped, control bytes '?'."""
    text = re.sub(rb"\xff\xfa.*?\xff\xf0|\xff[\xfb-\xfe].|\xff.", b"", data, flags=re.DOTALL)
    lines = [stun.clean_text(line, limit) for line in text.decode("utf-8", "replace").splitlines()]
    return " | ".join(line for line in lines if line)[:limit]


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}".strip()


def parse_http(data: bytes) -> HttpAnswer | None:
    """An HTTP/1.x answer's status, headers and body; None when the bytes are not HTTP."""
    if not data.startswith(b"HTTP/1."):
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = stun.clean_text(value.strip(), 200)
    return HttpAnswer(
        int(parts[1]), stun.clean_text(parts[2] if len(parts) > 2 else "", 60), headers, body
    )


def _http_evidence(what: str, answer: StreamAnswer) -> str:
    http = parse_http(answer.data)
    if http is None:
        return f"{what} → {shown(answer.data) or answer.ended}"
    server = f", Server: {http.headers['server']}" if http.headers.get("server") else ""
    location = f", Location: {http.headers['location']}" if http.headers.get("location") else ""
    return f"{what} → {http.status_line}{server}{location}"


def _addresses(ctx: AuditContext) -> list[tuple[str, str]]:
    """(address, host as the URL wrote it) of every host named in the URLs, each once."""
    seen: dict[str, str] = {}
    for ep in ctx.endpoints:
        seen.setdefault(ep.address, ep.target.url.host)
    return list(seen.items())[:MAX_HOSTS]


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _closed(check_id: str, what: str, target: str, answer: StreamAnswer) -> Finding:
    return Finding(
        check_id,
        Severity.OK,
        f"{what} is not reachable",
        evidence=f"connect to {target.rsplit('/', 1)[0]} → {answer.ended}",
        target=target,
    )


# -- HTTP on the TURN ports -------------------------------------------------------------------


def judge_turn_http(
    root: StreamAnswer, acme: StreamAnswer | None, software: str | None
) -> tuple[Severity, str]:
    """The severity and words for what a TURN port answered to GET / and the ACME probe."""
    http = parse_http(root.data)
    redirect = parse_http(acme.data) if acme is not None else None
    if http is not None:
        body = http.body
        if _HTTPS_PLEASE in body or b"TURN Server" in body:
            return (
                Severity.HIGH,
                "coturn's web admin answers on the TURN port (web-admin-listen-on-workers)",
            )
        if http.status == 400 and b"HTTP not supported" in body:
            return (
                Severity.INFO,
                "the TURN port answers HTTP with 400 Not supported (coturn's "
                "respond-http-unsupported): no HTTP service behind it",
            )
        return Severity.MEDIUM, f"an HTTP service answers on the TURN port ({http.status_line})"
    if redirect is not None and ACME_TOKEN in redirect.headers.get("location", ""):
        if known_vulnerable(software, "CVE-2026-62959"):
            return (
                Severity.MEDIUM,
                "coturn's ACME redirect answers HTTP on the TURN port, and SOFTWARE's release "
                "is in the range of CVE-2026-62959 (heap disclosure in that redirect)",
            )
        return (
            Severity.LOW,
            "coturn's ACME redirect answers HTTP on the TURN port (acme-redirect): an HTTP "
            "parser any client reaches before authenticating",
        )
    if redirect is not None:
        return Severity.MEDIUM, f"an HTTP service answers on the TURN port ({redirect.status_line})"
    return Severity.OK, "no HTTP answer on the TURN port"


async def http_on_turn_port(ctx: AuditContext) -> list[Finding]:
    """GET / (and coturn's ACME path) on each TURN/STUN TCP port; HTTPS on a TLS port only
    where that cannot crash the server (see the module's docstring)."""
    plain = _ports(ctx, Transport.TCP)
    secure = _ports(ctx, Transport.TLS)
    if not plain and not secure:
        return [
            Finding(
                "http-on-turn-port",
                Severity.INFO,
                "no TCP or TLS endpoint among the URLs: not checked",
                target=", ".join(ctx.hosts),
                skipped=True,
            )
        ]
    crash = crashes_on_http(ctx.software)
    if crash:
        return [
            _crash_skip(ep, ctx.software or "", "the TURN port was not probed")
            for ep in plain + secure
        ]
    probed = {ep.address for ep in plain}
    found = list(await asyncio.gather(*(_plain_http(ctx, ep) for ep in plain)))
    for ep in secure:
        if ep.address in probed:
            continue
        if crash is None:
            found.append(
                _crash_skip(
                    ep,
                    ctx.software,
                    "the TLS port was not probed with HTTPS, and no plain TCP port of this "
                    "host was among the URLs",
                )
            )
            continue
        found.append(await _tls_http(ctx, ep))
    return found


def _ports(ctx: AuditContext, transport: Transport) -> list[Endpoint]:
    seen: set[tuple[str, int]] = set()
    out: list[Endpoint] = []
    allowed = {address for address, _ in _addresses(ctx)}
    for ep in ctx.endpoints:
        key = (ep.address, ep.port)
        if ep.target.transport is transport and key not in seen and ep.address in allowed:
            seen.add(key)
            out.append(ep)
    return out


def _crash_skip(ep: Endpoint, software: str | None, what: str) -> Finding:
    said = f'SOFTWARE says "{software}"' if software else "SOFTWARE does not show the release"
    return Finding(
        "http-on-turn-port",
        Severity.INFO,
        f"{what}: coturn before {COTURN_HTTP_CRASH_FIXED} crashes on an HTTP(S) request there "
        f"when web-admin-listen-on-workers is set, and {said}",
        hint="check the server's configuration for web-admin-listen-on-workers instead",
        target=f"{ep.server}/{ep.target.transport.value}",
        skipped=True,
    )


async def _plain_http(ctx: AuditContext, ep: Endpoint) -> Finding:
    target = f"{ep.server}/tcp"
    root = await _probe(ep.address, ep.port, HTTP_ROOT)
    if not root.connected:
        return _closed("http-on-turn-port", "the TURN TCP port", target, root)
    acme = None
    if parse_http(root.data) is None:
        acme = await _probe(ep.address, ep.port, HTTP_ACME)
    severity, text = judge_turn_http(root, acme, ctx.software)
    evidence = _http_evidence("GET /", root)
    if acme is not None:
        evidence += f"; {_http_evidence(f'GET /.well-known/acme-challenge/{ACME_TOKEN}', acme)}"
    return Finding(
        "http-on-turn-port",
        severity,
        text,
        hint=_HTTP_HINT if severity > Severity.INFO else "",
        cve=("CVE-2026-62959",) if "CVE-2026-62959" in text else (),
        evidence=evidence,
        target=target,
    )


async def _tls_http(ctx: AuditContext, ep: Endpoint) -> Finding:
    target = f"{ep.server}/tls"
    root = await _probe(
        ep.address, ep.port, HTTP_ROOT, tls=_unverified(), server_hostname=ep.target.url.host
    )
    if not root.connected:
        return _closed("http-on-turn-port", "the TURN TLS port", target, root)
    severity, text = judge_turn_http(root, None, ctx.software)
    return Finding(
        "http-on-turn-port",
        severity,
        text.replace("the TURN port", "the TURN TLS port"),
        hint=_HTTP_HINT if severity > Severity.INFO else "",
        evidence=_http_evidence("GET / over TLS", root),
        target=target,
    )


# -- coturn's CLI -----------------------------------------------------------------------------


def judge_cli(banner: bytes) -> tuple[Severity, str]:
    """coturn's telnet greeting is "TURN Server", its SOFTWARE, "Type '?' for help", then
    "Enter password: " when cli-password is set, else the prompt (turn_admin_server.c)."""
    text = shown(banner, 400)
    if "TURN Server" in text or "Coturn" in text or "Type '?' for help" in text:
        if "password" in text.lower():
            return Severity.HIGH, "coturn's telnet CLI is reachable (it asks for a password)"
        return (
            Severity.CRITICAL,
            "coturn's telnet CLI is reachable without a password: anyone can reconfigure "
            "or stop the server",
        )
    if text:
        return Severity.INFO, "another service answers on the CLI port"
    return Severity.INFO, "the CLI port accepts connections but says nothing"


async def coturn_cli(ctx: AuditContext, ports: SurfacePorts = DEFAULT_PORTS) -> list[Finding]:
    """Connect to coturn's CLI port and read what it says first (nothing is sent)."""
    return list(
        await asyncio.gather(*(_cli_of(address, ports.cli) for address, _ in _addresses(ctx)))
    )


async def _cli_of(address: str, port: int) -> Finding:
    target = f"{hostport(address, port)}/tcp"
    answer = await _probe(address, port, None)
    if not answer.connected:
        return _closed("coturn-cli", f"coturn's CLI (port {port})", target, answer)
    severity, text = judge_cli(answer.data)
    return Finding(
        "coturn-cli",
        severity,
        text,
        hint=_CLI_HINT if severity > Severity.INFO else "",
        evidence=f'connect → "{shown(answer.data)}"'
        if answer.data
        else f"connect → {answer.ended}",
        target=target,
    )


# -- coturn's web admin -------------------------------------------------------------------------


async def web_admin(ctx: AuditContext, ports: SurfacePorts = DEFAULT_PORTS) -> list[Finding]:
    """GET / in plain HTTP, then over TLS when the port did not answer HTTP (coturn's web
    admin is HTTPS, though its TLS listener takes plain TCP too)."""
    return list(
        await asyncio.gather(
            *(
                _web_admin_of(ctx, address, host, ports.web_admin)
                for address, host in _addresses(ctx)
            )
        )
    )


async def _web_admin_of(ctx: AuditContext, address: str, host: str, port: int) -> Finding:
    target = f"{hostport(address, port)}/tcp"
    answer = await _probe(address, port, HTTP_ROOT)
    how = "GET /"
    if answer.connected and (parse_http(answer.data) is None or _HTTPS_PLEASE in answer.data):
        # coturn's TLS listener answers plain HTTP with a page asking for HTTPS.
        secure = await _probe(address, port, HTTP_ROOT, tls=_unverified(), server_hostname=host)
        if secure.connected and parse_http(secure.data) is not None:
            answer, how = secure, "GET / over TLS"
    if not answer.connected:
        return _closed("web-admin", f"coturn's web admin (port {port})", target, answer)
    http = parse_http(answer.data)
    if http is not None and b"TURN Server" in http.body:
        cves = ("CVE-2020-6061", "CVE-2020-6062")
        old = known_vulnerable(ctx.software, "CVE-2020-6061")
        return Finding(
            "web-admin",
            Severity.HIGH,
            "coturn's web admin is reachable"
            + ("; SOFTWARE's release is in the range of CVE-2020-6061/6062" if old else ""),
            hint=_WEB_ADMIN_HINT,
            cve=cves if old else (),
            evidence=_http_evidence(how, answer),
            target=target,
        )
    what = "an HTTP service" if http is not None else "another service"
    return Finding(
        "web-admin",
        Severity.INFO,
        f"{what} answers on port {port}, not coturn's web admin",
        evidence=_http_evidence(how, answer),
        target=target,
    )


# -- Prometheus exporters --------------------------------------------------------------------


def judge_metrics(http: HttpAnswer | None) -> tuple[Severity, str]:
    if http is None:
        return Severity.INFO, "another service answers on the exporter's port"
    if http.status == 200 and (b"# HELP" in http.body or b"# TYPE" in http.body):
        if b"\nturn_" in http.body or http.body.startswith(b"turn_"):
            who = "coturn's Prometheus exporter"
        elif b"eturnal_" in http.body:
            who = "eturnal's Prometheus exporter"
        else:
            who = "a Prometheus exporter"
        return Severity.MEDIUM, f"{who} is reachable: server load and sessions for anyone"
    return Severity.INFO, f"an HTTP service answers ({http.status_line}), not Prometheus metrics"


async def metrics_exposed(ctx: AuditContext, ports: SurfacePorts = DEFAULT_PORTS) -> list[Finding]:
    """GET /metrics on coturn's and eturnal's exporter ports (plain HTTP, then HTTPS)."""
    probes = [
        (address, host, port)
        for address, host in _addresses(ctx)
        for port in dict.fromkeys((ports.coturn_metrics, ports.eturnal_metrics))
    ]
    return list(await asyncio.gather(*(_metrics_of(*probe) for probe in probes)))


async def _metrics_of(address: str, host: str, port: int) -> Finding:
    target = f"{hostport(address, port)}/tcp"
    answer = await _probe(address, port, HTTP_METRICS)
    how = "GET /metrics"
    if answer.connected and parse_http(answer.data) is None:
        # eturnal's exporter may be TLS only (mod_stats_prometheus: tls: true)
        secure = await _probe(address, port, HTTP_METRICS, tls=_unverified(), server_hostname=host)
        if secure.connected and parse_http(secure.data) is not None:
            answer, how = secure, "GET /metrics over TLS"
    if not answer.connected:
        return _closed("metrics-exposed", f"a metrics exporter on port {port}", target, answer)
    severity, text = judge_metrics(parse_http(answer.data))
    return Finding(
        "metrics-exposed",
        severity,
        text,
        hint=_METRICS_HINT if severity > Severity.INFO else "",
        evidence=_http_evidence(how, answer),
        target=target,
    )


def checks_for(ports: SurfacePorts = DEFAULT_PORTS) -> tuple[Check, ...]:
    """The checks with other management ports (the tests' free ports)."""

    async def cli(ctx: AuditContext) -> list[Finding]:
        return await coturn_cli(ctx, ports)

    async def admin(ctx: AuditContext) -> list[Finding]:
        return await web_admin(ctx, ports)

    async def metrics(ctx: AuditContext) -> list[Finding]:
        return await metrics_exposed(ctx, ports)

    return (http_on_turn_port, cli, admin, metrics)


CHECKS: tuple[Check, ...] = (http_on_turn_port, coturn_cli, web_admin, metrics_exposed)
