"""typer commands: parse options, build the plan, run, pick a renderer, exit code.

No protocol logic lives here. Exit codes: 0 every check passed, 1 a check
failed, 2 bad input (one line on stderr), 3 an internal error (a bug),
130 interrupted.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the engine (and rich, unused by --json) is imported when needed
    from collections.abc import Callable, Coroutine
    from typing import Any

    from rich.console import Console

    from turncheck.checks import CheckSettings
    from turncheck.load import LoadResult, LoadSettings
    from turncheck.nat import NatReport
    from turncheck.relay import RelaySettings
    from turncheck.report import Report
    from turncheck.resolve import Resolver

try:  # typer >= 0.20 vendors click privately; older releases use the click package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

from turncheck import __version__
from turncheck.config import (
    Credentials,
    advice,
    read_ice_servers,
    read_secret,
    rest_credentials,
)
from turncheck.errors import InputError
from turncheck.plan import (
    DEFAULT_STUN_SERVERS,
    ServerEntry,
    Target,
    build_targets,
    command_line_entries,
    entries_from,
    parse_transports,
)
from turncheck.require import parse_requirements
from turncheck.resolve import parse_dns_server
from turncheck.urls import Transport, fmt_address, parse_url


class ExitStatus(IntEnum):
    OK = 0
    CHECK_FAILED = 1
    INPUT_ERROR = 2
    INTERNAL_ERROR = 3
    INTERRUPTED = 130


app = typer.Typer(
    name="turncheck",
    help="TURN/STUN connectivity tester: STUN Binding and TURN Allocate over UDP, TCP and TLS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"turncheck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """TURN/STUN connectivity tester."""


def out_console() -> Console:
    """stdout console: rich on a terminal; wide, plain text elsewhere (NO_COLOR respected)."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=False, width=200, color_system=None)
    return console


def _credentials(
    ctx: typer.Context, username: str | None, credential: str | None
) -> tuple[Credentials | None, str]:
    if username is None and credential is None:
        return None, "none"
    if not username:
        raise InputError("--credential given without --username (or TURNCHECK_USERNAME)")
    if credential is None:
        raise InputError("--username given without --credential (or TURNCHECK_CREDENTIAL)")
    from_env = [
        getattr(ctx.get_parameter_source(n), "name", "") == "ENVIRONMENT"
        for n in ("username", "credential")
    ]
    source = (
        "TURNCHECK_USERNAME/TURNCHECK_CREDENTIAL"
        if all(from_env)
        else "--username/--credential"
        if not any(from_env)
        else "command line and environment"
    )
    return Credentials(username, credential), source


# Options shared by several commands, declared once.
UsernameOpt = Annotated[
    str | None,
    typer.Option("--username", "-u", envvar="TURNCHECK_USERNAME", help="TURN username."),
]
CredentialOpt = Annotated[
    str | None,
    typer.Option(
        "--credential",
        "-p",
        envvar="TURNCHECK_CREDENTIAL",
        help="TURN password (prefer the TURNCHECK_CREDENTIAL variable: argv is public).",
        show_default=False,
    ),
]
SecretFileOpt = Annotated[
    str | None,
    typer.Option(
        "--secret-file",
        help="coturn static-auth-secret file: mint TURN REST API credentials "
        "(or TURNCHECK_SECRET).",
    ),
]
SecretOpt = Annotated[str | None, typer.Option("--secret", hidden=True)]
DnsServerOpt = Annotated[
    str | None,
    typer.Option("--dns-server", help="Send every DNS query to IP[:PORT] (dnspython)."),
]
Ipv4Opt = Annotated[bool, typer.Option("-4", "--ipv4", help="IPv4 addresses only.")]
Ipv6Opt = Annotated[bool, typer.Option("-6", "--ipv6", help="IPv6 addresses only.")]
CaFileOpt = Annotated[
    Path | None, typer.Option("--ca-file", help="Extra CA certificate(s) (PEM) for TLS.")
]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="Do not verify TLS certificates (shown in output).")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="One JSON document on stdout (= --format json).")
]
OutputOpt = Annotated[
    str | None,
    typer.Option("--output", help="Write the output to FILE (atomically) instead of stdout."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan; send no packet and no DNS query.")
]


@app.command()
def probe(
    ctx: typer.Context,
    urls: Annotated[
        list[str] | None,
        typer.Argument(
            help="ICE server URLs (stun:, stuns:, turn:, turns:). None: the default STUN servers.",
            show_default=False,
        ),
    ] = None,
    username: UsernameOpt = None,
    credential: CredentialOpt = None,
    transport: Annotated[
        str | None,
        typer.Option(
            "--transport",
            help="Comma list of udp,tcp,tls for URLs that do not name their transport.",
        ),
    ] = None,
    dns_server: DnsServerOpt = None,
    ipv4: Ipv4Opt = False,
    ipv6: Ipv6Opt = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds per check (UDP retransmits within it).")
    ] = 5.0,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    json_out: JsonOpt = False,
    output_format: Annotated[
        str | None,
        typer.Option("--format", help="Output: table, json, junit or prometheus."),
    ] = None,
    output: OutputOpt = None,
    requires: Annotated[
        list[str] | None,
        typer.Option(
            "--require", help="Gate the exit code: relay, srflx, udp, tcp or tls (repeatable)."
        ),
    ] = None,
    max_rtt: Annotated[
        float | None, typer.Option("--max-rtt", help="Gate: no round trip above MS milliseconds.")
    ] = None,
    max_loss: Annotated[
        float | None, typer.Option("--max-loss", help="Gate: no relay loss above PCT percent.")
    ] = None,
    dry_run: DryRunOpt = False,
    count: Annotated[
        int, typer.Option("--count", help="Relay check: packets per relaying path.")
    ] = 10,
    size: Annotated[int, typer.Option("--size", help="Relay check: bytes per packet.")] = 100,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            help="Relay packet spacing in ms (default 20); with --repeat: seconds between "
            "rounds (default 10).",
            show_default=False,
        ),
    ] = None,
    packet_interval: Annotated[
        float | None,
        typer.Option("--packet-interval", help="Relay packet spacing in ms (default 20)."),
    ] = None,
    repeat: Annotated[
        int | None, typer.Option("--repeat", help="Run N rounds, then statistics per check.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Trace every STUN/TURN message (stderr).")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only the verdict line.")] = False,
    peer: Annotated[
        str | None,
        typer.Option("--peer", help="Relay to this UDP echo peer IP:PORT, not a 2nd allocation."),
    ] = None,
    relay_only: Annotated[
        bool,
        typer.Option(
            "--relay-only", help='Pass only if a relay check passes (iceTransportPolicy "relay").'
        ),
    ] = False,
    no_relay: Annotated[
        bool, typer.Option("--no-relay", help="Allocate only; skip the relay check.")
    ] = False,
    ice_servers: Annotated[
        str | None,
        typer.Option(
            "--ice-servers",
            help='iceServers JSON file, or - for stdin ({"iceServers": [...]} or a bare list).',
        ),
    ] = None,
    secret_file: SecretFileOpt = None,
    ttl: Annotated[
        int, typer.Option("--ttl", help="Lifetime in seconds of minted REST credentials.")
    ] = 600,
    user: Annotated[
        str | None, typer.Option("--user", help="User name inside minted REST credentials.")
    ] = None,
    secret: SecretOpt = None,
) -> None:
    """Probe ICE servers: STUN Binding and TURN Allocate, every address, every transport."""

    if ipv4 and ipv6:
        raise InputError("-4 and -6 exclude each other")
    if not 0 < timeout <= 600:
        raise InputError(f"--timeout {timeout:g}: give seconds between 0 and 600")
    if ca_file is not None and not ca_file.is_file():
        raise InputError(f"--ca-file '{ca_file}': no such file")
    server = parse_dns_server(dns_server) if dns_server else None
    override = parse_transports(transport) if transport is not None else None
    refuse_argv_secret(secret)
    fmt = output_format_of(output_format, json_out)
    gates = parse_requirements(requires or (), max_rtt, max_loss)
    creds, source = _credentials(ctx, username, credential)
    minted = _rest_credentials(secret_file, user, ttl)
    if minted is not None:
        if creds is not None:
            raise InputError(
                "--secret-file/TURNCHECK_SECRET and -u/-p exclude each other: pick one"
            )
        creds, source = minted, "TURN REST API credentials from the shared secret"
    _hint_json_as_url(urls or [])
    entries = command_line_entries(list(urls or ()), creds, source)
    if ice_servers is not None:
        configuration = read_ice_servers(ice_servers)
        entries += entries_from(configuration.servers)
        relay_only = relay_only or configuration.relay_only
    if not entries:
        entries = [ServerEntry(parse_url(text)) for text in DEFAULT_STUN_SERVERS]
    config_advice = tuple(advice(entries)) if (urls or ice_servers) else ()
    targets = build_targets(entries, override)
    if repeat is not None and not 1 <= repeat <= 100000:
        raise InputError(f"--repeat {repeat}: give 1 to 100000 rounds")
    if repeat is not None and fmt in ("junit", "prometheus"):
        raise InputError(f"--repeat works with table and json output, not {fmt}")
    if quiet and verbose:
        raise InputError("-q and -v exclude each other")
    spacing, round_interval = _intervals(interval, packet_interval, repeat is not None)
    relay = None if no_relay else relay_settings(count, size, spacing, peer)
    if relay_only and (relay is None or not any(t.url.is_turn for t in targets)):
        raise InputError(
            "--relay-only needs a turn: or turns: URL and the relay check (no --no-relay)"
        )

    if dry_run:
        from turncheck.render import plan as plan_render

        if fmt != "table":
            from turncheck.render.json import dumps

            emit(dumps(plan_render.plan_json(targets, server, config_advice)), output)
        else:
            plan_render.render(targets, server, out_console(), config_advice)
        raise typer.Exit(ExitStatus.OK)

    families = (socket.AF_INET,) if ipv4 else (socket.AF_INET6,) if ipv6 else None
    from_argv = getattr(ctx.get_parameter_source("credential"), "name", "") == "COMMANDLINE"
    if credential is not None and from_argv:
        _warn(
            "--credential on the command line is visible to other users (ps); "
            "prefer TURNCHECK_CREDENTIAL"
        )
    run = _prepare(targets, server, families, timeout, ca_file, insecure, relay, verbose)

    async def one_round() -> Report:
        from turncheck.probe import run_probe

        return await run_probe(
            targets,
            run.resolver,
            run.settings,
            relay_only=relay_only,
            advice=config_advice,
            requirements=gates,
            every_check=override is not None,
        )

    if repeat is not None:
        _repeat(repeat, round_interval, one_round, fmt, output, quiet)
        raise AssertionError("unreachable")  # pragma: no cover
    report = _with_progress(one_round, fmt == "table" and output is None and not quiet)
    if quiet:
        emit(f"verdict: {report.verdict}", output)
    elif fmt == "table" and output is None:
        from turncheck.render.table import render as render_table

        render_table(report, out_console())
    else:
        emit(render_report(report, fmt), output)
    raise typer.Exit(ExitStatus.OK if report.ok else ExitStatus.CHECK_FAILED)


FORMATS = ("table", "json", "junit", "prometheus")


def output_format_of(name: str | None, json_out: bool) -> str:
    """--format, with --json as its short form; InputError on a clash or an unknown name."""
    if name is None:
        return "json" if json_out else "table"
    fmt = name.strip().lower()
    if fmt not in FORMATS:
        raise InputError(f"--format {name}: choose from {', '.join(FORMATS)}")
    if json_out and fmt != "json":
        raise InputError(f"--json and --format {fmt} exclude each other")
    return fmt


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


def emit(text: str, output: str | None) -> None:
    """stdout, or FILE written atomically (a temporary file renamed over it)."""
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from turncheck.output import write_atomically

    write_atomically(output, text if text.endswith("\n") else text + "\n")


def refuse_argv_secret(secret: str | None) -> None:
    """A secret on the command line is readable by every user (ps): refuse it, name the way."""
    if secret is not None:
        raise InputError(
            "--secret is not accepted: a secret on the command line is visible to other users "
            "in the process list; use --secret-file PATH or the TURNCHECK_SECRET variable"
        )


def _hint_json_as_url(urls: list[str]) -> None:
    """JSON pasted where a URL belongs: say how to pass it."""
    for text in urls:
        if text.lstrip().startswith(("{", "[")):
            raise InputError(
                f"'{text[:40]}…' looks like iceServers JSON, not an ICE server URL: pass it "
                "with --ice-servers - (stdin) or --ice-servers FILE"
            )


def _warn(message: str) -> None:
    sys.stderr.write(f"turncheck: warning: {message}\n")


def _rest_credentials(secret_file: str | None, user: str | None, ttl: int) -> Credentials | None:
    secret = read_secret(secret_file, os.environ.get("TURNCHECK_SECRET"))
    if secret is None:
        if user is not None:
            raise InputError("--user needs --secret-file or TURNCHECK_SECRET (REST credentials)")
        return None
    if not 1 <= ttl <= 10 * 365 * 86400:
        raise InputError(f"--ttl {ttl}: give a lifetime in seconds, at least 1")
    return rest_credentials(secret, user, ttl)


@app.command()
def creds(
    urls: Annotated[
        list[str], typer.Argument(help="turn:/turns:/stun: URLs for the iceServers entry.")
    ],
    secret_file: SecretFileOpt = None,
    user: Annotated[
        str | None, typer.Option("--user", help="User name inside the REST username.")
    ] = None,
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds.")] = 600,
    secret: SecretOpt = None,
) -> None:
    """Mint time-limited TURN REST API credentials: an iceServers JSON snippet on stdout."""
    from turncheck.render.json import dumps

    refuse_argv_secret(secret)
    for text in urls:
        parse_url(text)
    minted = _rest_credentials(secret_file, user, ttl)
    if minted is None:
        raise InputError("turncheck creds needs --secret-file PATH or TURNCHECK_SECRET")
    entry = {"urls": list(urls), "username": minted.username, "credential": minted.password}
    print(dumps({"iceServers": [entry]}))


@app.command()
def load(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="One turn: or turns: URL to load.")],
    username: UsernameOpt = None,
    credential: CredentialOpt = None,
    secret_file: SecretFileOpt = None,
    clients: Annotated[int, typer.Option("--clients", help="Allocation pairs (calls).")] = 10,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of relaying.")] = 10.0,
    rate: Annotated[float, typer.Option("--rate", help="Packets per second per pair.")] = 50.0,
    size: Annotated[int, typer.Option("--size", help="Bytes per packet.")] = 160,
    ramp: Annotated[
        float | None, typer.Option("--ramp", help="Pairs opened per second (default: at once).")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Pairs being set up at the same time.")
    ] = 64,
    max_loss: Annotated[
        float, typer.Option("--max-loss", help="Exit 1 above this relay loss (percent).")
    ] = 1.0,
    transport: Annotated[
        str | None,
        typer.Option("--transport", help="Control transport udp, tcp or tls for a bare URL."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds for each allocation's setup.")
    ] = 5.0,
    dns_server: DnsServerOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    json_out: JsonOpt = False,
    output: OutputOpt = None,
    event_loop: Annotated[
        str,
        typer.Option("--loop", help="Event loop: auto (uvloop when installed), asyncio or uvloop."),
    ] = "auto",
) -> None:
    """Capacity test: N allocation pairs relaying echoed packets at a call's rate."""
    from turncheck.load import LoadSettings, check_limits

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
    if not 0 < timeout <= 600:
        raise InputError(f"--timeout {timeout:g}: give seconds between 0 and 600")
    if ca_file is not None and not ca_file.is_file():
        raise InputError(f"--ca-file '{ca_file}': no such file")
    parsed = parse_url(url)
    if not parsed.is_turn:
        raise InputError(f"turncheck load needs a turn: or turns: URL, not '{url}'")
    creds, source = _credentials(ctx, username, credential)
    minted = _rest_credentials(secret_file, None, 3600 + int(duration))
    if minted is not None:
        if creds is not None:
            raise InputError("--secret-file/TURNCHECK_SECRET and -u/-p exclude each other")
        creds, source = minted, "TURN REST API credentials"
    (entry,) = command_line_entries([url], creds, source)
    override = parse_transports(transport) if transport else None
    if override is not None and len(override) != 1:
        raise InputError("--transport: a load test uses one control transport")
    targets = build_targets([entry], override or (Transport.UDP,))[:1]
    check_limits(settings_, targets[0].transport.value)
    server = parse_dns_server(dns_server) if dns_server else None
    run = _prepare(targets, server, None, timeout, ca_file, insecure, None, False)
    coro = _load(targets[0], run, settings_, live=not json_out and output is None)
    if settings_.event_loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    if json_out or output is not None:
        from turncheck.render.json import dumps

        emit(dumps(result.to_json()), output)
    else:
        from turncheck.render.load import render as render_load

        render_load(result, out_console())
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


async def _load(target: Target, run: _Run, settings: LoadSettings, live: bool) -> LoadResult:
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


@app.command()
def nat(
    urls: Annotated[
        list[str] | None,
        typer.Argument(
            help="STUN/TURN URLs usable over UDP. None: the default STUN servers.",
            show_default=False,
        ),
    ] = None,
    dns_server: DnsServerOpt = None,
    ipv4: Ipv4Opt = False,
    ipv6: Ipv6Opt = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds for each answered test.")
    ] = 3.0,
    filter_timeout: Annotated[
        float,
        typer.Option("--filter-timeout", help="Seconds to wait for change-request answers."),
    ] = 1.0,
    classic: Annotated[
        bool, typer.Option("--classic", help="Also run pystun3's RFC 3489 test as a cross-check.")
    ] = False,
    json_out: JsonOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """NAT behaviour (RFC 5780): mapping, filtering, NAT type, public address, advice."""
    if ipv4 and ipv6:
        raise InputError("-4 and -6 exclude each other")
    for name, value in (("--timeout", timeout), ("--filter-timeout", filter_timeout)):
        if not 0 < value <= 60:
            raise InputError(f"{name} {value:g}: give seconds between 0 and 60")
    server = parse_dns_server(dns_server) if dns_server else None
    texts = list(urls) if urls else list(DEFAULT_STUN_SERVERS)
    entries = [ServerEntry(parse_url(text)) for text in texts]
    targets = [t for t in build_targets(entries, (Transport.UDP,)) if t.transport is Transport.UDP]
    if not targets:
        raise InputError("turncheck nat needs a stun: or turn: URL usable over UDP")
    if dry_run:
        from turncheck.render import plan as plan_render

        if json_out:
            from turncheck.render.json import dumps

            print(dumps(plan_render.plan_json(targets, server)))
        else:
            plan_render.render(targets, server, out_console())
        raise typer.Exit(ExitStatus.OK)
    families = (socket.AF_INET,) if ipv4 else (socket.AF_INET6,) if ipv6 else None
    report = asyncio.run(_nat(targets, server, families, timeout, filter_timeout, classic))
    if json_out:
        from turncheck.render.json import dumps

        print(dumps(report.to_json()))
    else:
        from turncheck.render.nat import render as render_nat

        render_nat(report, out_console())
    raise typer.Exit(ExitStatus.OK if report.answered else ExitStatus.CHECK_FAILED)


async def _nat(
    targets: list[Target],
    dns_server: tuple[str, int] | None,
    families: tuple[int, ...] | None,
    timeout: float,
    filter_timeout: float,
    classic: bool,
) -> NatReport:
    from turncheck.errors import DnsFailure
    from turncheck.nat import classic_check, discover
    from turncheck.resolve import Resolver

    resolver = Resolver(dns_server, timeout=timeout, **({"families": families} if families else {}))
    found = await asyncio.gather(*(resolver.endpoints(t) for t in targets), return_exceptions=True)
    servers: list[tuple[str, int]] = []
    for result in found:
        if isinstance(result, DnsFailure):
            continue
        if isinstance(result, BaseException):
            raise result
        servers.extend((e.address, e.port) for e in result)
    report = await discover(servers, timeout=timeout, filter_timeout=filter_timeout)
    if classic and report.server is not None and servers:
        from dataclasses import replace

        primary = next(s for s in servers if fmt_address(s) == report.server)
        check = await classic_check(primary, report.classic)
        report = replace(report, classic_check=check)
    return report


class _Run:
    """What every round of a probe shares: check settings and the resolver."""

    def __init__(self, settings: CheckSettings, resolver: Resolver) -> None:
        self.settings = settings
        self.resolver = resolver


def _prepare(
    targets: list[Target],
    dns_server: tuple[str, int] | None,
    families: tuple[int, ...] | None,
    timeout: float,
    ca_file: Path | None,
    insecure: bool,
    relay: RelaySettings | None,
    verbose: bool,
) -> _Run:
    import ssl

    from turncheck.checks import CheckSettings, make_ssl_context
    from turncheck.resolve import Resolver

    context = None
    if any(t.transport.value == "tls" for t in targets):  # loading the trust store costs ~40 ms
        try:
            context = make_ssl_context(str(ca_file) if ca_file else None, insecure)
        except (ssl.SSLError, OSError) as exc:
            raise InputError(f"--ca-file '{ca_file}': not a usable PEM CA file ({exc})") from None
    tracer = None
    if verbose:
        from turncheck.trace import Tracer

        def to_stderr(line: str) -> None:
            sys.stderr.write(line + "\n")

        tracer = Tracer(to_stderr)
    settings = CheckSettings(
        timeout=timeout, ssl_context=context, insecure=insecure, relay=relay, tracer=tracer
    )
    resolver = Resolver(
        dns_server,
        timeout=timeout,
        **({"families": families} if families else {}),
    )
    return _Run(settings, resolver)


def _with_progress(one_round: Callable[[], Coroutine[Any, Any, Report]], spinner: bool) -> Report:
    """One round; a spinner on stderr while it runs, only on a terminal and for the table."""
    if not (spinner and sys.stderr.isatty() and sys.stdout.isatty()):
        return asyncio.run(one_round())  # no rich import on this path: ~30 ms saved
    from rich.console import Console

    err = Console(stderr=True)
    with err.status("probing: resolving, Binding, Allocate, relaying…", spinner="dots"):
        return asyncio.run(one_round())


def _repeat(
    count: int,
    interval: float,
    one_round: Callable[[], Coroutine[Any, Any, Report]],
    fmt: str,
    output: str | None,
    quiet: bool,
) -> None:
    """--repeat: a row per round as it ends (table), then the statistics; exits."""
    from turncheck.monitor import Round, run_rounds
    from turncheck.render import repeat as repeat_render

    console = out_console()
    live = fmt == "table" and output is None and not quiet

    def on_round(rnd: Round) -> None:
        if live:
            console.print(repeat_render.round_line(rnd, count))

    summary = asyncio.run(run_rounds(count, interval, one_round, on_round))
    if quiet:
        emit(f"verdict: {summary.verdict}", output)
    elif fmt == "json":
        from turncheck.render.json import dumps

        emit(dumps(summary.to_json()), output)
    elif output is not None:
        emit(repeat_render.render_text(summary), output)
    else:
        repeat_render.render(summary, console)
    if summary.interrupted:
        raise typer.Exit(ExitStatus.INTERRUPTED)
    raise typer.Exit(ExitStatus.OK if summary.ok else ExitStatus.CHECK_FAILED)


def _intervals(
    interval: float | None, packet_interval: float | None, repeating: bool
) -> tuple[float, float]:
    """(relay packet spacing in ms, seconds between rounds) from --interval/--packet-interval.

    Issue 3 gave --interval to the relay packets (ms); issue 6 to --repeat's rounds (s).
    Both hold: with --repeat, --interval is the round interval and --packet-interval
    spaces the packets; without it, --interval spaces the packets.
    """
    if repeating:
        rounds = 10.0 if interval is None else interval
        if not 0 <= rounds <= 86400:
            raise InputError(f"--interval {rounds:g}: give 0 to 86400 seconds between rounds")
        return (20.0 if packet_interval is None else packet_interval), rounds
    if interval is not None and packet_interval is not None and interval != packet_interval:
        raise InputError(
            "--interval and --packet-interval disagree (without --repeat both mean ms)"
        )
    spacing = packet_interval if packet_interval is not None else interval
    return (20.0 if spacing is None else spacing), 0.0


def relay_settings(count: int, size: int, interval_ms: float, peer: str | None) -> RelaySettings:
    """Validate the relay options; InputError naming the option."""
    from turncheck.relay import MAX_SIZE, MIN_SIZE, RelaySettings
    from turncheck.resolve import parse_ip_port

    if not 1 <= count <= 10000:
        raise InputError(f"--count {count}: give 1 to 10000 packets")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"--size {size}: give {MIN_SIZE} to {MAX_SIZE} bytes")
    if not 0 <= interval_ms <= 10000:
        raise InputError(
            f"--interval {interval_ms:g}: give 0 to 10000 milliseconds between packets"
        )
    peer_addr = parse_ip_port(peer, "--peer", default_port=None) if peer else None
    return RelaySettings(count=count, size=size, interval=interval_ms / 1000, peer=peer_addr)


def _error_line(message: str) -> None:
    sys.stderr.write(f"turncheck: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: never a traceback, exit codes per ExitStatus."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="turncheck", standalone_mode=False)
    except InputError as exc:
        _error_line(str(exc))
        return ExitStatus.INPUT_ERROR
    except click_exc.NoArgsIsHelpError:
        # typer's no_args_is_help has printed the help already, as git does; exit 2.
        return ExitStatus.INPUT_ERROR
    except click_exc.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        _error_line(f"{where}{exc.format_message()} (see --help)")
        return ExitStatus.INPUT_ERROR
    except click_exc.ClickException as exc:
        _error_line(exc.format_message())
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        _error_line("interrupted")
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.CHECK_FAILED
    except Exception as exc:
        _error_line(f"internal error ({type(exc).__name__}: {exc}); please report this bug")
        return ExitStatus.INTERNAL_ERROR
    code = int(result) if isinstance(result, int) else ExitStatus.OK
    if code == ExitStatus.INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130)
        _error_line("interrupted")
    return code
