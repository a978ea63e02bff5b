"""turncheck probe: what a browser gets from these ICE servers, and every check behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from turncheck.cli import options as o
from turncheck.cli.common import (
    ExitStatus,
    Output,
    check_ca_file,
    check_timeout,
    credentials,
    deprecated,
    families,
    hint_json_as_url,
    minted_credentials,
    output_format_of,
    output_of,
    pick_credentials,
    refuse_argv_secret,
    rest_user,
    run_with_progress,
)
from turncheck.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

    from turncheck.plan import ServerEntry, Target
    from turncheck.relay import RelaySettings
    from turncheck.report import Report

from turncheck.cli import app

FORMATS = ("table", "json", "junit", "prometheus", "nagios")


@app.command()
def probe(
    ctx: typer.Context,
    urls: o.UrlsArg = None,
    ice_servers: o.IceServersOpt = None,
    ice_servers_url: o.IceServersUrlOpt = None,
    fetch_method: o.FetchMethodOpt = "GET",
    fetch_body: o.FetchBodyOpt = None,
    fetch_bearer_file: o.FetchBearerOpt = None,
    fetch_basic_file: o.FetchBasicOpt = None,
    fetch_headers: o.FetchHeaderOpt = None,
    transport: o.TransportOpt = None,
    username: o.UsernameOpt = None,
    credential: o.CredentialOpt = None,
    secret_file: o.SecretFileOpt = None,
    rest_user_: o.RestUserOpt = None,
    ttl: o.TtlOpt = 600,
    dns_server: o.DnsServerOpt = None,
    ipv4: o.Ipv4Opt = False,
    ipv6: o.Ipv6Opt = False,
    timeout: o.TimeoutOpt = o.TIMEOUT_DEFAULT,
    ca_file: o.CaFileOpt = None,
    insecure: o.InsecureOpt = False,
    output_format: Annotated[str | None, o.format_opt(FORMATS)] = None,
    json_out: o.JsonOpt = False,
    output: o.OutputOpt = None,
    quiet: o.QuietOpt = False,
    verbose: o.VerboseOpt = False,
    dry_run: o.DryRunOpt = False,
    count: Annotated[
        int,
        typer.Option("--count", help="Packets per relaying path.", rich_help_panel=o.RELAY),
    ] = 10,
    size: Annotated[
        int, typer.Option("--size", help="Bytes per packet.", rich_help_panel=o.RELAY)
    ] = 100,
    packet_interval: Annotated[
        float | None,
        typer.Option(
            "--packet-interval",
            help="Milliseconds between relay packets (default 20).",
            metavar="MS",
            rich_help_panel=o.RELAY,
        ),
    ] = None,
    peer: Annotated[
        str | None,
        typer.Option(
            "--peer",
            help="Relay to this UDP echo peer, not a second allocation (with --tcp-relay: "
            "the TCP echo peer).",
            metavar="IP:PORT",
            rich_help_panel=o.RELAY,
        ),
    ] = None,
    relay_family: o.RelayFamilyOpt = None,
    tcp_relay: o.TcpRelayOpt = False,
    relay_only: Annotated[
        bool,
        typer.Option(
            "--relay-only",
            help='Only relay candidates count (iceTransportPolicy "relay").',
            rich_help_panel=o.RELAY,
        ),
    ] = False,
    no_relay: Annotated[
        bool,
        typer.Option("--no-relay", help="Allocate only; no relay check.", rich_help_panel=o.RELAY),
    ] = False,
    browser: Annotated[
        str,
        typer.Option(
            "--browser",
            help="Whose calls must work: chromium, firefox or all (both; the default).",
            metavar="[chromium|firefox|all]",
        ),
    ] = "all",
    requires: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            help="Gate the exit code on this (repeatable, or comma-separated).",
            metavar="[relay|srflx|udp|tcp|tls]",
            rich_help_panel=o.GATES,
        ),
    ] = None,
    max_rtt: Annotated[
        float | None,
        typer.Option(
            "--max-rtt", help="Gate: no round trip above MS.", metavar="MS", rich_help_panel=o.GATES
        ),
    ] = None,
    max_loss: Annotated[
        float | None,
        typer.Option(
            "--max-loss",
            help="Gate: no relay loss above PCT percent.",
            metavar="PCT",
            rich_help_panel=o.GATES,
        ),
    ] = None,
    warning_rtt: Annotated[
        float | None,
        typer.Option(
            "--warning-rtt",
            help="Nagios: WARNING above this round trip.",
            metavar="MS",
            rich_help_panel=o.GATES,
        ),
    ] = None,
    critical_rtt: Annotated[
        float | None,
        typer.Option(
            "--critical-rtt",
            help="Nagios: CRITICAL above this round trip.",
            metavar="MS",
            rich_help_panel=o.GATES,
        ),
    ] = None,
    warning_loss: Annotated[
        float | None,
        typer.Option(
            "--warning-loss",
            help="Nagios: WARNING above this relay loss.",
            metavar="PCT",
            rich_help_panel=o.GATES,
        ),
    ] = None,
    critical_loss: Annotated[
        float | None,
        typer.Option(
            "--critical-loss",
            help="Nagios: CRITICAL above this relay loss.",
            metavar="PCT",
            rich_help_panel=o.GATES,
        ),
    ] = None,
    repeat: Annotated[
        int | None,
        typer.Option(
            "--repeat",
            help="Run N rounds, then statistics per check.",
            metavar="N",
            rich_help_panel=o.MONITORING,
        ),
    ] = None,
    round_interval: Annotated[
        float | None,
        typer.Option(
            "--round-interval",
            help="Seconds between the starts of --repeat rounds (default 10).",
            metavar="SECONDS",
            rich_help_panel=o.MONITORING,
        ),
    ] = None,
    interval: Annotated[float | None, typer.Option("--interval", hidden=True)] = None,
    old_user: o.OldUserOpt = None,
    secret: o.SecretOpt = None,
) -> None:
    """Probe ICE servers: what a browser gets, then every address and transport checked."""
    from turncheck.plan import build_targets, parse_transports
    from turncheck.require import parse_requirements
    from turncheck.resolve import parse_dns_server

    fams = families(ipv4, ipv6)
    check_timeout(timeout)
    check_ca_file(ca_file)
    server = parse_dns_server(dns_server) if dns_server else None
    override = parse_transports(transport) if transport is not None else None
    refuse_argv_secret(secret)
    out = output_of(output, output_format_of(output_format, json_out, FORMATS), quiet, verbose)
    gates = parse_requirements(requires or (), max_rtt, max_loss)
    engines = engines_of(browser)
    spacing, between_rounds = intervals(interval, packet_interval, round_interval, repeat)
    if repeat is not None and not 1 <= repeat <= 100000:
        raise InputError(f"--repeat {repeat}: give 1 to 100000 rounds")
    if repeat is not None and out.fmt in ("junit", "prometheus", "nagios"):
        raise InputError(f"--repeat works with table and json output, not {out.fmt}")
    relay_only_flag = relay_only  # the file's iceTransportPolicy is merged in below
    entries, relay_only, config_advice = server_entries(
        ctx,
        urls,
        ice_servers,
        username,
        credential,
        secret_file,
        rest_user(rest_user_, old_user),
        ttl,
        relay_only,
        _rules(engines),
    )
    if ice_servers_url is not None:
        from turncheck import signals
        from turncheck.cli.common import fetch_spec
        from turncheck.config import advice
        from turncheck.icefetch import fetch
        from turncheck.plan import entries_from

        spec = fetch_spec(
            ice_servers_url,
            fetch_method,
            fetch_body,
            fetch_bearer_file,
            fetch_basic_file,
            fetch_headers,
            ca_file,
            timeout,
        )
        fetched = signals.run(fetch(spec))
        if not urls and ice_servers is None:
            entries = []  # the default STUN servers stood in for "no server given"
        entries = entries + entries_from(fetched.servers, _rules(engines))
        relay_only = relay_only or fetched.relay_only
        config_advice = tuple(advice(entries))
    targets = build_targets(entries, override)
    relay_variants(targets, no_relay, relay_family, tcp_relay)
    relay = (
        None
        if no_relay
        else relay_settings(count, size, spacing, peer, family=relay_family, tcp=tcp_relay)
    )
    if relay_only_flag and (relay is None or not any(t.url.is_turn for t in targets)):
        # Only the flag is an input error: a configuration whose policy is "relay" with no
        # TURN server is valid, and the verdict says what a browser gets from it (nothing).
        raise InputError(
            "--relay-only needs a turn: or turns: URL and the relay check (no --no-relay)"
        )
    if dry_run:
        _dry_run(targets, server, out, config_advice)
    from turncheck.api import ProbeOptions
    from turncheck.api import run as run_api
    from turncheck.cli.common import flush_warnings, stderr_tracer

    flush_warnings()
    options = ProbeOptions(
        entries=tuple(entries),
        transports=override,
        relay=relay,
        relay_only=relay_only,
        requirements=gates,
        timeout=timeout,
        dns_server=server,
        families=fams,
        ca_file=str(ca_file) if ca_file else None,
        insecure=insecure,
        advice=config_advice,
        tracer=stderr_tracer() if verbose else None,
        engines=engines,
    )

    async def one_round() -> Report:
        return await run_api(options)

    if repeat is not None:
        _repeat(repeat, between_rounds, one_round, out)
    report = run_with_progress(
        one_round,
        "probing: resolving, Binding, Allocate, relaying…",
        out.to_terminal_table and not quiet,
    )
    if out.fmt == "nagios":
        from turncheck.cli.common import emit
        from turncheck.render.nagios import Thresholds
        from turncheck.render.nagios import render as render_nagios

        line, status = render_nagios(
            report, Thresholds(warning_rtt, critical_rtt, warning_loss, critical_loss)
        )
        emit(line, out.path)
        raise typer.Exit(status)
    out.deliver(report.verdict, lambda: render_report(report, out.fmt), _table(report))
    raise typer.Exit(ExitStatus.OK if report.ok else ExitStatus.CHECK_FAILED)


def _table(report: Report) -> Callable[[Any], None]:
    def draw(console: Any) -> None:
        from turncheck.render.table import render

        render(report, console)

    return draw


def _rules(engines: tuple[str, ...]) -> str:
    """Whose constructor rules judge the input: Firefox's with --browser firefox alone;
    else Chromium's (a configuration Chromium refuses breaks the app there: exit 2)."""
    return "firefox" if engines == ("firefox",) else "chromium"


def engines_of(choice: str) -> tuple[str, ...]:
    """--browser: the browser models whose answer decides the verdict and the exit code."""
    value = choice.strip().lower()
    if value == "all":
        return ("chromium", "firefox")
    if value in ("chromium", "firefox"):
        return (value,)
    raise InputError(f"--browser {choice}: choose chromium, firefox or all")


def server_entries(
    ctx: typer.Context,
    urls: list[str] | None,
    ice_servers: str | None,
    username: str | None,
    credential: str | None,
    secret_file: str | None,
    user: str | None,
    ttl: int,
    relay_only: bool,
    rules: str = "chromium",
) -> tuple[list[ServerEntry], bool, tuple[str, ...]]:
    """The URLs of the command line and of --ice-servers, validated as a browser does
    (rules="firefox": as Firefox does, for --browser firefox)."""
    from turncheck.browser import parse_ice_url
    from turncheck.config import advice, read_ice_servers
    from turncheck.plan import (
        DEFAULT_STUN_SERVERS,
        ServerEntry,
        command_line_entries,
        entries_from,
        parse_for,
    )

    texts = list(urls or ())
    hint_json_as_url(texts)
    parsed = [parse_for(t, rules) for t in texts]
    given = credentials(ctx, username, credential, needed=any(u.is_turn for u in parsed))
    minted = minted_credentials(secret_file, user, ttl)
    creds, source = pick_credentials(given, minted)
    entries = command_line_entries(texts, creds, source, rules)
    if ice_servers is not None:
        configuration = read_ice_servers(ice_servers)
        entries += entries_from(configuration.servers, rules)
        relay_only = relay_only or configuration.relay_only
    config_advice = tuple(advice(entries)) if entries else ()
    if not entries:
        entries = [ServerEntry(parse_ice_url(text)) for text in DEFAULT_STUN_SERVERS]
    return entries, relay_only, config_advice


def _dry_run(
    targets: list[Target], server: tuple[str, int] | None, out: Output, advice: tuple[str, ...]
) -> None:
    from turncheck.render import plan as plan_render
    from turncheck.render.json import dumps

    out.deliver(
        f"dry run: {len(targets)} target(s), nothing sent",
        lambda: (
            dumps(plan_render.plan_json(targets, server, advice))
            if out.fmt != "table"
            else plan_render.render_text(targets, server, advice)
        ),
        lambda console: plan_render.render(targets, server, console, advice),
    )
    raise typer.Exit(ExitStatus.OK)


def render_report(report: Report, fmt: str) -> str:
    """The report as text in a machine format (or a plain table for --output)."""
    if fmt == "json":
        from turncheck.render.json import render as render_json

        return render_json(report)
    if fmt == "junit":
        from turncheck.render.junit import render as render_junit

        return render_junit(report)
    if fmt == "prometheus":
        from turncheck.render.prometheus import render as render_prometheus

        return render_prometheus(report)
    from turncheck.render.table import render_text

    return render_text(report)


def _repeat(
    count: int,
    interval: float,
    one_round: Callable[[], Coroutine[Any, Any, Report]],
    out: Output,
) -> None:
    """--repeat: a row per round as it ends (table), then the statistics; exits."""
    from turncheck import signals
    from turncheck.cli.common import out_console
    from turncheck.monitor import Round, run_rounds
    from turncheck.render import repeat as repeat_render
    from turncheck.render.json import dumps

    console = out_console()
    live = out.to_terminal_table and not out.quiet

    def on_round(rnd: Round) -> None:
        if live:
            for line in repeat_render.round_lines(rnd, count, console.width):
                console.print(line, soft_wrap=True)

    summary = signals.run(run_rounds(count, interval, one_round, on_round))
    out.deliver(
        summary.verdict,
        lambda: (
            dumps(summary.to_json()) if out.fmt == "json" else repeat_render.render_text(summary)
        ),
        lambda console_: repeat_render.render(summary, console_),
    )
    if summary.interrupted:
        raise typer.Exit(ExitStatus.INTERRUPTED)
    raise typer.Exit(ExitStatus.OK if summary.ok else ExitStatus.CHECK_FAILED)


def intervals(
    interval: float | None,
    packet_interval: float | None,
    round_interval: float | None,
    repeat: int | None,
) -> tuple[float, float]:
    """(relay packet spacing in ms, seconds between rounds).

    --packet-interval (ms) and --round-interval (s) each keep one unit. The old --interval
    still works as it did (seconds between rounds with --repeat, else packet ms), with a
    deprecation note naming its replacement.
    """
    if interval is not None:
        if repeat is not None:
            deprecated("--interval", f"--round-interval {interval:g} (seconds)")
            if round_interval is not None and round_interval != interval:
                raise InputError("--interval and --round-interval disagree: give one")
            round_interval = interval
        else:
            deprecated("--interval", f"--packet-interval {interval:g} (milliseconds)")
            if packet_interval is not None and packet_interval != interval:
                raise InputError("--interval and --packet-interval disagree: give one")
            packet_interval = interval
    if round_interval is not None and repeat is None:
        raise InputError("--round-interval needs --repeat")
    rounds = 10.0 if round_interval is None else round_interval
    if not 0 <= rounds <= 86400:
        raise InputError(f"--round-interval {rounds:g}: give 0 to 86400 seconds")
    spacing = 20.0 if packet_interval is None else packet_interval
    return spacing, rounds


def relay_variants(targets: list[Target], no_relay: bool, family: str | None, tcp: bool) -> None:
    """--relay-family and --tcp-relay need a relay check, and a URL they apply to."""
    from turncheck.urls import Transport

    named = "--tcp-relay" if tcp else "--relay-family" if family is not None else None
    if named is None:
        return
    if no_relay:
        raise InputError(f"{named} needs the relay check: drop --no-relay")
    if not any(t.url.is_turn for t in targets):
        raise InputError(f"{named} needs a turn: or turns: URL")
    if tcp and not any(t.url.is_turn and t.transport is not Transport.UDP for t in targets):
        raise InputError(
            "--tcp-relay needs a TURN URL over TCP or TLS (RFC 6062): "
            "turn:HOST?transport=tcp, turns:HOST, or --transport tcp"
        )


def relay_settings(
    count: int,
    size: int,
    interval_ms: float,
    peer: str | None,
    *,
    family: str | None = None,
    tcp: bool = False,
) -> RelaySettings:
    """Validate the relay options; InputError naming the option."""
    from turncheck.relay import FAMILIES, MAX_SIZE, MIN_SIZE, RelaySettings, family_of
    from turncheck.resolve import parse_ip_port

    if not 1 <= count <= 10000:
        raise InputError(f"--count {count}: give 1 to 10000 packets")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"--size {size}: give {MIN_SIZE} to {MAX_SIZE} bytes")
    if not 0 <= interval_ms <= 10000:
        raise InputError(
            f"--packet-interval {interval_ms:g}: give 0 to 10000 milliseconds between packets"
        )
    peer_addr = parse_ip_port(peer, "--peer", default_port=None) if peer else None
    chosen = family.strip().lower() if family is not None else None
    if chosen is not None and chosen not in FAMILIES:
        raise InputError(f"--relay-family {family}: choose ipv4, ipv6 or dual")
    if tcp and peer_addr is None:
        raise InputError("--tcp-relay needs --peer IP:PORT: the TCP echo server to relay to")
    if peer_addr is not None and chosen == "dual":
        raise InputError(
            f"--peer {peer} with --relay-family dual: a peer has one address family; "
            "choose --relay-family ipv4 or ipv6"
        )
    if peer_addr is not None and chosen is not None and family_of(peer_addr[0]) != chosen:
        words = {"ipv4": "IPv4", "ipv6": "IPv6"}
        raise InputError(
            f"--peer {peer} is an {words[family_of(peer_addr[0])]} address, but "
            f"--relay-family {chosen} relays over {words[chosen]}"
        )
    return RelaySettings(
        count=count,
        size=size,
        interval=interval_ms / 1000,
        peer=peer_addr,
        family=chosen,
        tcp=tcp,
    )
