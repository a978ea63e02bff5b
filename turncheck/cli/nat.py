"""turncheck nat: NAT behaviour discovery (RFC 5780), as the probe's NAT line uses it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from turncheck.cli import app
from turncheck.cli import options as o
from turncheck.cli.common import (
    ExitStatus,
    check_timeout,
    families,
    hint_json_as_url,
    output_format_of,
    output_of,
    run_with_progress,
)
from turncheck.errors import InputError

if TYPE_CHECKING:
    from turncheck.nat import NatReport
    from turncheck.plan import Target
    from turncheck.transport import Tracer

FORMATS = ("table", "json")


@app.command()
def nat(
    urls: Annotated[
        list[str] | None,
        typer.Argument(
            help="STUN/TURN URLs usable over UDP. None: the default STUN servers.",
            show_default=False,
            metavar="[URL]...",
        ),
    ] = None,
    ice_servers: o.IceServersOpt = None,
    dns_server: o.DnsServerOpt = None,
    ipv4: o.Ipv4Opt = False,
    ipv6: o.Ipv6Opt = False,
    timeout: o.TimeoutOpt = o.TIMEOUT_DEFAULT,
    filter_timeout: Annotated[
        float,
        typer.Option(
            "--filter-timeout",
            help="Seconds to wait for change-request answers.",
            metavar="SECONDS",
            rich_help_panel=o.NAT,
        ),
    ] = 1.0,
    classic: Annotated[
        bool,
        typer.Option(
            "--classic",
            help="Also run pystun3's RFC 3489 test as a cross-check.",
            rich_help_panel=o.NAT,
        ),
    ] = False,
    output_format: Annotated[str | None, o.format_opt(FORMATS)] = None,
    json_out: o.JsonOpt = False,
    output: o.OutputOpt = None,
    quiet: o.QuietOpt = False,
    verbose: o.VerboseOpt = False,
    dry_run: o.DryRunOpt = False,
) -> None:
    """NAT behaviour (RFC 5780): mapping, filtering, NAT type, public address, advice."""
    from turncheck.browser import parse_ice_url
    from turncheck.plan import DEFAULT_STUN_SERVERS, ServerEntry, build_targets
    from turncheck.resolve import parse_dns_server
    from turncheck.urls import Transport

    fams = families(ipv4, ipv6)
    check_timeout(timeout)
    check_timeout(filter_timeout, "--filter-timeout", 60)
    out = output_of(output, output_format_of(output_format, json_out, FORMATS), quiet, verbose)
    server = parse_dns_server(dns_server) if dns_server else None
    texts = list(urls or ())
    hint_json_as_url(texts)
    entries = [ServerEntry(parse_ice_url(text)) for text in texts]
    if ice_servers is not None:
        from turncheck.config import read_ice_servers
        from turncheck.plan import entries_from

        entries += entries_from(read_ice_servers(ice_servers).servers)
    if not entries:
        entries = [ServerEntry(parse_ice_url(text)) for text in DEFAULT_STUN_SERVERS]
    targets = [
        t
        for t in build_targets(entries, (Transport.UDP,))
        if t.transport is Transport.UDP and not t.srv_name
    ]
    if not targets:
        raise InputError("turncheck nat needs a stun: or turn: URL usable over UDP")
    if dry_run:
        from turncheck.render import plan as plan_render
        from turncheck.render.json import dumps

        out.deliver(
            f"dry run: {len(targets)} target(s), nothing sent",
            lambda: (
                dumps(plan_render.plan_json(targets, server))
                if out.fmt == "json"
                else plan_render.render_text(targets, server)
            ),
            lambda console: plan_render.render(targets, server, console),
        )
        raise typer.Exit(ExitStatus.OK)
    tracer = None
    if verbose:
        import sys

        from turncheck.trace import Tracer as TraceWriter

        def to_stderr(line: str) -> None:
            sys.stderr.write(line + "\n")

        tracer = TraceWriter(to_stderr)

    async def run() -> NatReport:
        return await _nat(targets, server, fams, timeout, filter_timeout, classic, tracer)

    report = run_with_progress(
        run, "testing NAT behaviour: mapping and filtering…", out.to_terminal_table and not quiet
    )

    def draw(console: object) -> None:
        from turncheck.render.nat import render as render_nat

        render_nat(report, console)  # type: ignore[arg-type]

    def text() -> str:
        from turncheck.render.json import dumps
        from turncheck.render.nat import render_text

        return dumps(report.to_json()) if out.fmt == "json" else render_text(report)

    out.deliver(report.verdict, text, draw)
    raise typer.Exit(ExitStatus.OK if report.answered else ExitStatus.CHECK_FAILED)


async def _nat(
    targets: list[Target],
    dns_server: tuple[str, int] | None,
    fams: tuple[int, ...] | None,
    timeout: float,
    filter_timeout: float,
    classic: bool,
    tracer: Tracer | None,
) -> NatReport:
    import asyncio

    from turncheck.errors import DnsFailure
    from turncheck.nat import classic_check, discover
    from turncheck.resolve import Resolver
    from turncheck.urls import fmt_address

    resolver = Resolver(dns_server, timeout=timeout, **({"families": fams} if fams else {}))
    found = await asyncio.gather(*(resolver.endpoints(t) for t in targets), return_exceptions=True)
    servers: list[tuple[str, int]] = []
    for result in found:
        if isinstance(result, DnsFailure):
            continue
        if isinstance(result, BaseException):
            raise result
        servers.extend((e.address, e.port) for e in result)
    report = await discover(servers, timeout=timeout, filter_timeout=filter_timeout, tracer=tracer)
    if classic and report.server is not None and servers:
        from dataclasses import replace

        primary = next(s for s in servers if fmt_address(s) == report.server)
        check = await classic_check(primary, report.classic, software=report.software)
        report = replace(report, classic_check=check)
    return report
