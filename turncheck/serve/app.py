"""The exporter's HTTP application (aiohttp), on the same event loop as the probes.

    GET  /probe?target=<ICE URL>&module=<name>   one probe → Prometheus text (or OpenMetrics)
    GET  /metrics                                 the exporter's own metrics
    GET  /-/healthy                               200 while serving
    POST /-/reload                                re-read the config (SIGHUP does the same)
    GET  /                                        recent probes, in plain words

As blackbox_exporter: the probe's deadline is the scrape's (X-Prometheus-Scrape-Timeout-
Seconds) less a margin; a probe that cannot start in time answers 503; an unknown module or a
bad target answers 400 with one plain line. Credentials never come from the query string and
never appear in an answer, a metric, a log line or the status page.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from turncheck.errors import InputError
from turncheck.serve.config import Module, ServeConfig, load_config

if TYPE_CHECKING:
    from turncheck.report import Report

MARGIN = 0.5  # seconds kept from the scrape timeout, as blackbox_exporter's default offset
DEFAULT_SCRAPE_TIMEOUT = 10.0  # Prometheus's default scrape_timeout
RECENT = 50
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass
class Recent:
    at: float
    module: str
    target: str
    success: bool | None  # None: the probe did not run (400, 503)
    duration: float
    verdict: str


@dataclass
class Exporter:
    """The exporter's state: the config, the probe slots, the recent probes, the metrics."""

    config: ServeConfig
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    recent: deque[Recent] = field(default_factory=lambda: deque(maxlen=RECENT))
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)
    slots: asyncio.Semaphore | None = None
    metrics: Any = None
    admin_port: int | None = None  # --admin-listen: results are read there

    def __post_init__(self) -> None:
        from turncheck.serve.metrics import ExporterMetrics

        self.slots = asyncio.Semaphore(self.config.max_concurrent)
        self.metrics = ExporterMetrics()

    def reload(self) -> str | None:
        """Re-read the config; on an error keep the old one and say why (None: reloaded)."""
        try:
            config = load_config(self.config.path)
        except InputError as exc:
            self.metrics.reloads.labels(result="failure").inc()
            self.metrics.reload_ok.set(0)
            self.log(f"turncheck serve: reload failed, keeping the old config: {exc}")
            return str(exc)
        if config.max_concurrent != self.config.max_concurrent:
            self.slots = asyncio.Semaphore(config.max_concurrent)
        self.config = config
        self.metrics.reloads.labels(result="success").inc()
        self.metrics.reload_ok.set(1)
        self.log(f"turncheck serve: config reloaded ({len(config.modules)} modules)")
        return None


def scrape_budget(request: web.Request) -> float:
    """Seconds this probe may take: the scrape timeout less the margin (blackbox's rule)."""
    header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds", "")
    try:
        timeout = float(header) if header else DEFAULT_SCRAPE_TIMEOUT
    except ValueError:
        timeout = DEFAULT_SCRAPE_TIMEOUT
    return max(0.5, min(timeout, 600.0) - MARGIN)


async def _options(module: Module, target: str, budget: float) -> Any:
    """The probe's options: the module's, with a check timeout that fits the budget (two
    transactions in a row, the relay check's 2 s, the deletion)."""
    from turncheck.api import ProbeOptions
    from turncheck.plan import command_line_entries, parse_transports
    from turncheck.relay import RelaySettings
    from turncheck.require import parse_requirements
    from turncheck.resolve import parse_dns_server

    entries = []
    if target:
        credentials = module.credentials()
        source = "the module's credentials" if credentials else "none"
        entries = command_line_entries([target], credentials, source)
    if module.ice_servers_url:
        from turncheck.icefetch import fetch
        from turncheck.plan import entries_from
        from turncheck.serve.config import fetch_spec

        spec = fetch_spec(module, timeout=min(5.0, budget / 3))
        entries += entries_from((await fetch(spec)).servers)
    timeout = max(0.2, min(module.timeout, (budget - 2.5) / 2))
    relay = (
        RelaySettings(count=module.count, size=module.size, interval=module.packet_interval / 1000)
        if module.relay
        else None
    )
    return ProbeOptions(
        entries=tuple(entries),
        transports=parse_transports(",".join(module.transports)) if module.transports else None,
        relay=relay,
        relay_only=module.relay_only,
        requirements=parse_requirements(module.require, module.max_rtt, module.max_loss),
        timeout=timeout,
        dns_server=parse_dns_server(module.dns_server) if module.dns_server else None,
        ca_file=module.ca_file,
        insecure=module.insecure,
    )


def exposition(report: Report | None, duration: float, openmetrics: bool, why: str = "") -> str:
    """probe_success, probe_duration_seconds, then the same metrics as --format prometheus."""
    from turncheck.render.prometheus import render as render_families

    lines = [
        "# HELP probe_success Whether a browser given the configuration gets what a call needs "
        "(turncheck's exit rule).",
        "# TYPE probe_success gauge",
        f"probe_success {1 if report is not None and report.ok else 0}",
        "# HELP probe_duration_seconds How long the probe took.",
        "# TYPE probe_duration_seconds gauge",
        f"probe_duration_seconds {duration:.6f}",
    ]
    if why:
        lines.insert(0, f"# {why}")
    body = "\n".join(lines) + "\n"
    if report is not None:
        body += render_families(report)
    return body + ("# EOF\n" if openmetrics else "")


async def probe_handler(request: web.Request) -> web.Response:
    exporter: Exporter = request.app["exporter"]
    started = time.monotonic()
    module_name = request.query.get("module", "")
    target = request.query.get("target", "")
    module = exporter.config.modules.get(module_name)
    if module is None:
        known = ", ".join(sorted(exporter.config.modules))
        why = f"unknown module '{module_name}' (known: {known})"
        return _refuse(exporter, module_name, target, 400, why)
    if not target and not module.ice_servers_url:
        return _refuse(exporter, module_name, target, 400, "no target: add ?target=<ICE URL>")
    budget = scrape_budget(request)
    try:
        if module.kind == "audit":
            from turncheck.serve.audit import audit_options

            options: Any = audit_options(module, target, budget)
        else:
            options = await _options(module, target, budget)
    except InputError as exc:
        return _refuse(exporter, module_name, target, 400, str(exc))
    assert exporter.slots is not None
    try:
        async with asyncio.timeout(min(budget, exporter.config.queue_timeout)):
            await exporter.slots.acquire()
    except TimeoutError:
        why = f"too many probes in flight (limits.max_concurrent {exporter.config.max_concurrent})"
        return _refuse(exporter, module_name, target, 503, why)
    exporter.metrics.in_flight.inc()
    task = asyncio.current_task()
    if task is not None:
        exporter.in_flight.add(task)
    report: Any = None  # a Report, or an AuditReport for an audit module
    why = ""
    try:
        from turncheck.api import run
        from turncheck.auditing import run_audit

        left = budget - (time.monotonic() - started)
        async with asyncio.timeout(max(0.1, left)):
            report = await (run_audit(options) if module.kind == "audit" else run(options))
    except TimeoutError:
        why = f"probe timed out after {budget:g} s (the scrape timeout less {MARGIN:g} s)"
    finally:
        exporter.slots.release()
        exporter.metrics.in_flight.dec()
        if task is not None:
            exporter.in_flight.discard(task)
    duration = time.monotonic() - started
    if module.kind == "audit":
        success = report is not None and report.exit_code == 0
    else:
        success = report is not None and report.ok
    exporter.metrics.probes.labels(
        module=module_name, result="success" if success else "failure"
    ).inc()
    verdict = report.verdict if report is not None else why
    exporter.recent.appendleft(Recent(time.time(), module_name, target, success, duration, verdict))
    exporter.log(
        f"probe module={module_name} target={target} success={int(success)} "
        f"duration={duration:.3f}s verdict={verdict}"
    )
    openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
    if module.kind == "audit":
        from turncheck.serve.audit import audit_exposition

        body = audit_exposition(report, duration, openmetrics, why)
    else:
        body = exposition(report, duration, openmetrics, why)
    return web.Response(
        text=body,
        content_type=None,
        headers={"Content-Type": OPENMETRICS if openmetrics else TEXT},
    )


def _refuse(exporter: Exporter, module: str, target: str, status: int, why: str) -> web.Response:
    exporter.metrics.probes.labels(module=module or "-", result=str(status)).inc()
    exporter.recent.appendleft(Recent(time.time(), module, target, None, 0.0, why))
    exporter.log(f"probe module={module} target={target} refused={status}: {why}")
    return web.Response(status=status, text=why + "\n")


async def metrics_handler(request: web.Request) -> web.Response:
    exporter: Exporter = request.app["exporter"]
    openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
    body, content_type = exporter.metrics.render(openmetrics)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthy_handler(request: web.Request) -> web.Response:
    return web.Response(text="Healthy\n")


async def reload_handler(request: web.Request) -> web.Response:
    exporter: Exporter = request.app["exporter"]
    problem = exporter.reload()
    if problem is not None:
        return web.Response(status=500, text=f"failed to reload config: {problem}\n")
    return web.Response(text="reloaded\n")


async def index_handler(request: web.Request) -> web.Response:
    from turncheck.serve.testpage import results_section

    exporter: Exporter = request.app["exporter"]
    rows = []
    for r in exporter.recent:
        result = {True: "success", False: "FAILED", None: "refused"}[r.success]
        rows.append(
            "<tr>"
            f"<td>{html.escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.at)))}</td>"
            f"<td>{html.escape(r.module)}</td><td>{html.escape(r.target)}</td>"
            f"<td>{result}</td><td>{r.duration:.2f} s</td><td>{html.escape(r.verdict)}</td>"
            "</tr>"
        )
    modules = ", ".join(html.escape(m) for m in sorted(exporter.config.modules))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>turncheck exporter</title>"
        "</head><body><h1>turncheck exporter</h1>"
        f"<p>Modules: {modules}. Probe with <code>/probe?module=NAME&amp;target=ICE-URL</code>; "
        "the exporter's own metrics are at <a href='/metrics'>/metrics</a>.</p>"
        "<h2>Recent probes</h2><table border='1' cellpadding='4'>"
        "<tr><th>when</th><th>module</th><th>target</th><th>result</th><th>took</th>"
        "<th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
        + results_section(request)
        + "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


def make_app(exporter: Exporter) -> web.Application:
    app = web.Application()
    app["exporter"] = exporter
    app.router.add_get("/probe", probe_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/-/healthy", healthy_handler)
    app.router.add_post("/-/reload", reload_handler)
    app.router.add_get("/", index_handler)
    if exporter.config.tests:
        from turncheck.serve.testpage import add_routes

        add_routes(app, exporter)
    return app


async def serve(
    config: ServeConfig,
    host: str,
    port: int,
    drain: float = 10.0,
    admin: tuple[str, int] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads. Shutdown stops accepting, lets in-flight
    probes finish for up to `drain` seconds, then cancels them (their allocations are
    deleted by their own clean-up)."""
    import signal

    from turncheck import turn

    exporter = Exporter(config)
    exporter.admin_port = admin[1] if admin is not None else None
    observer = exporter.metrics.allocation_event
    turn.observers.append(observer)
    runner = web.AppRunner(make_app(exporter), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    sites = [site]
    if admin is not None:
        sites.append(web.TCPSite(runner, admin[0], admin[1], reuse_address=True))
        await sites[-1].start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The process's own handlers (signals.py) come back after the drain: a second SIGTERM
    # while draining then ends the run as any stop does, never as a bare signal death.
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, exporter.reload)
    pages = f", {len(config.tests)} test pages" if config.tests else ""
    exporter.log(
        f"turncheck serve: listening on http://{host}:{port} "
        f"({len(config.modules)} modules{pages} from {config.path})"
    )
    if admin is not None:
        exporter.log(f"turncheck serve: results are read on http://{admin[0]}:{admin[1]}/")
    try:
        await stop.wait()
    finally:
        exporter.log("turncheck serve: shutting down: draining probes in flight")
        for sig, handler in before.items():
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
        for each in sites:
            await each.stop()
        pending = set(exporter.in_flight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=drain)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5.0)
        await runner.cleanup()
        turn.observers.remove(observer)
        exporter.log("turncheck serve: stopped")
