"""turncheck load: capacity testing with allocation pairs relaying echoed packets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from turncheck.cli import app
from turncheck.cli import options as o
from turncheck.cli.common import (
    ExitStatus,
    RunSetup,
    check_ca_file,
    check_timeout,
    credentials,
    minted_credentials,
    output_format_of,
    output_of,
    pick_credentials,
    prepare,
    rest_user,
)
from turncheck.errors import InputError

if TYPE_CHECKING:
    from turncheck.load import LoadResult, LoadSettings
    from turncheck.plan import Target

FORMATS = ("table", "json")


@app.command()
def load(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Argument(help="One turn: or turns: URL to load.", show_default=False),
    ] = None,
    ice_servers: o.IceServersOpt = None,
    transport: Annotated[
        str | None,
        typer.Option(
            "--transport",
            help="Control transport for a bare URL (default udp).",
            metavar="[udp|tcp|tls]",
            rich_help_panel=o.SERVERS,
        ),
    ] = None,
    username: o.UsernameOpt = None,
    credential: o.CredentialOpt = None,
    secret_file: o.SecretFileOpt = None,
    rest_user_: o.RestUserOpt = None,
    ttl: Annotated[
        int | None,
        typer.Option(
            "--ttl",
            help="Lifetime of minted REST credentials (default: the run plus an hour).",
            rich_help_panel=o.CREDENTIALS,
        ),
    ] = None,
    clients: Annotated[
        int, typer.Option("--clients", help="Allocation pairs (calls).", rich_help_panel=o.LOAD)
    ] = 10,
    duration: Annotated[
        float,
        typer.Option(
            "--duration", help="Seconds of relaying.", metavar="SECONDS", rich_help_panel=o.LOAD
        ),
    ] = 10.0,
    rate: Annotated[
        float,
        typer.Option("--rate", help="Packets per second per pair.", rich_help_panel=o.LOAD),
    ] = 50.0,
    size: Annotated[
        int, typer.Option("--size", help="Bytes per packet.", rich_help_panel=o.LOAD)
    ] = 160,
    ramp: Annotated[
        float | None,
        typer.Option(
            "--ramp", help="Pairs opened per second (default: at once).", rich_help_panel=o.LOAD
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", help="Pairs being set up at the same time.", rich_help_panel=o.LOAD
        ),
    ] = 64,
    max_loss: Annotated[
        float,
        typer.Option(
            "--max-loss",
            help="Exit 1 above this relay loss.",
            metavar="PCT",
            rich_help_panel=o.GATES,
        ),
    ] = 1.0,
    dns_server: o.DnsServerOpt = None,
    timeout: o.TimeoutOpt = o.TIMEOUT_DEFAULT,
    ca_file: o.CaFileOpt = None,
    insecure: o.InsecureOpt = False,
    output_format: Annotated[str | None, o.format_opt(FORMATS)] = None,
    json_out: o.JsonOpt = False,
    output: o.OutputOpt = None,
    quiet: o.QuietOpt = False,
    verbose: o.VerboseOpt = False,
    event_loop: Annotated[
        str,
        typer.Option(
            "--loop",
            help="Event loop: auto (uvloop when installed), asyncio or uvloop.",
            metavar="[auto|asyncio|uvloop]",
            rich_help_panel=o.LOAD,
        ),
    ] = "auto",
    old_user: o.OldUserOpt = None,
) -> None:
    """Capacity test: N allocation pairs relaying echoed packets at a call's rate."""
    from turncheck import signals
    from turncheck.browser import parse_ice_url
    from turncheck.load import LoadSettings, check_limits
    from turncheck.plan import build_targets, command_line_entries, parse_transports
    from turncheck.resolve import parse_dns_server
    from turncheck.urls import Transport

    settings_ = LoadSettings(
        clients=clients,
        duration=duration,
        rate=rate,
        size=size,
        ramp=ramp,
        concurrency=max(1, concurrency),
        max_loss=max_loss,
        event_loop=_pick_loop(event_loop),
    )
    check_timeout(timeout)
    check_ca_file(ca_file)
    out = output_of(output, output_format_of(output_format, json_out, FORMATS), quiet, verbose)
    user = rest_user(rest_user_, old_user)
    minted = minted_credentials(secret_file, user, ttl or 3600 + int(duration))
    if url is not None:
        parsed = parse_ice_url(url)
        if not parsed.is_turn:
            raise InputError(f"turncheck load needs a turn: or turns: URL, not '{url}'")
        given = credentials(ctx, username, credential, needed=True)
        creds, source = pick_credentials(given, minted)
        (entry,) = command_line_entries([url], creds, source)
    elif ice_servers is not None:
        from turncheck.config import read_ice_servers
        from turncheck.plan import entries_from

        turn = [e for e in entries_from(read_ice_servers(ice_servers).servers) if e.url.is_turn]
        if not turn:
            raise InputError(f"--ice-servers {ice_servers}: no turn: or turns: URL to load")
        entry = turn[0]
    else:
        raise InputError("turncheck load needs a turn: or turns: URL (or --ice-servers)")
    override = parse_transports(transport) if transport else None
    if override is not None and len(override) != 1:
        raise InputError("--transport: a load test uses one control transport")
    targets = build_targets([entry], override or (Transport.UDP,))[:1]
    check_limits(settings_, targets[0].transport.value)
    server = parse_dns_server(dns_server) if dns_server else None
    run = prepare({targets[0].transport}, server, None, timeout, ca_file, insecure, None, verbose)
    coro = _load(targets[0], run, settings_, live=out.to_terminal_table and not quiet)
    if settings_.event_loop == "uvloop":
        import uvloop

        result = signals.run(coro, loop_factory=uvloop.new_event_loop)
    else:
        result = signals.run(coro)

    def draw(console: object) -> None:
        from turncheck.render.load import render as render_load

        render_load(result, console)  # type: ignore[arg-type]

    def text() -> str:
        from turncheck.render.json import dumps
        from turncheck.render.load import render_text

        return dumps(result.to_json()) if out.fmt == "json" else render_text(result)

    out.deliver(result.verdict, text, draw)
    if result.interrupted:
        raise typer.Exit(ExitStatus.INTERRUPTED)
    raise typer.Exit(ExitStatus.OK if result.ok else ExitStatus.CHECK_FAILED)


def _pick_loop(name: str) -> str:
    """uvloop cuts the CPU per relayed packet by a third to a half at 200 pairs (load_bench)."""
    choice = name.strip().lower()
    if choice not in ("auto", "asyncio", "uvloop"):
        raise InputError(f"--loop {name}: choose auto, asyncio or uvloop")
    if choice == "asyncio":
        return choice
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise InputError(
                "--loop uvloop: install it with pip install 'turncheck[uvloop]'"
            ) from None
        return "asyncio"
    return "uvloop"


async def _load(target: Target, run: RunSetup, settings: LoadSettings, live: bool) -> LoadResult:
    from turncheck.errors import DnsFailure
    from turncheck.explain import explain
    from turncheck.load import run_load
    from turncheck.render.load import Progress

    try:
        endpoints = await run.resolver.endpoints(target)
    except DnsFailure as exc:
        raise InputError(f"{target.url.text}: {explain(exc).reason}") from None
    from rich.console import Console

    progress = Progress(settings.clients, live and Console(stderr=True).is_terminal)
    try:
        return await run_load(endpoints[0], settings, run.settings, progress)
    finally:
        progress.stop()
