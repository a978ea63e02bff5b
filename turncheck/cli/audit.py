"""turncheck audit: what a TURN server offers and whether it is safe to expose."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from turncheck.cli import app
from turncheck.cli import options as o
from turncheck.cli.common import (
    check_ca_file,
    check_timeout,
    output_format_of,
    output_of,
    refuse_argv_secret,
    rest_user,
    run_with_progress,
)
from turncheck.errors import InputError

if TYPE_CHECKING:
    from turncheck.auditing import AuditOptions
    from turncheck.cli.common import Output
    from turncheck.plan import ServerEntry

FORMATS = ("table", "json", "sarif")


@app.command()
def audit(
    ctx: typer.Context,
    urls: o.UrlsArg = None,
    ice_servers: o.IceServersOpt = None,
    username: o.UsernameOpt = None,
    credential: o.CredentialOpt = None,
    secret_file: o.SecretFileOpt = None,
    rest_user_: o.RestUserOpt = None,
    ttl: o.TtlOpt = 600,
    peer: Annotated[
        str | None,
        typer.Option(
            "--peer",
            help="The one outside address relayed data may go to (a UDP/TCP echo you run).",
            metavar="IP:PORT",
        ),
    ] = None,
    max_allocations: Annotated[
        int,
        typer.Option(
            "--max-allocations", help="The quota probe stops at N allocations.", metavar="N"
        ),
    ] = 20,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="Exit 1 on a finding at or above SEVERITY: low, medium, high, critical.",
            metavar="SEVERITY",
        ),
    ] = "medium",
    dns_server: o.DnsServerOpt = None,
    timeout: o.TimeoutOpt = 3.0,
    ca_file: o.CaFileOpt = None,
    insecure: o.InsecureOpt = False,
    output_format: Annotated[str | None, o.format_opt(FORMATS)] = None,
    json_out: o.JsonOpt = False,
    output: o.OutputOpt = None,
    quiet: o.QuietOpt = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List passed and skipped checks too.")
    ] = False,
    dry_run: o.DryRunOpt = False,
    secret: o.SecretOpt = None,
) -> None:
    """Audit TURN servers: open relay, peer ACL, TLS, advisories, capabilities, quotas."""
    from turncheck.auditing import AuditOptions, run_audit
    from turncheck.findings import Severity
    from turncheck.resolve import parse_dns_server, parse_ip_port

    check_timeout(timeout)
    check_ca_file(ca_file)
    refuse_argv_secret(secret)
    if not urls and ice_servers is None:
        raise InputError("give the URLs to audit (turn:host, turns:host:443?transport=tcp, …)")
    try:
        threshold = Severity.parse(fail_on)
    except ValueError as exc:
        raise InputError(f"--fail-on {exc}") from None
    if not 1 <= max_allocations <= 1000:
        raise InputError(f"--max-allocations {max_allocations}: give 1 to 1000")
    out = output_of(output, output_format_of(output_format, json_out, FORMATS), quiet, False)
    peer_address = parse_ip_port(peer, "--peer", default_port=None) if peer else None
    entries = _entries(ctx, urls, ice_servers, username, credential, secret_file, rest_user_, ttl)
    from turncheck.cli.common import flush_warnings

    flush_warnings()
    options = AuditOptions(
        entries=tuple(entries),
        timeout=timeout,
        dns_server=parse_dns_server(dns_server) if dns_server else None,
        ca_file=str(ca_file) if ca_file else None,
        insecure=insecure,
        peer=peer_address,
        max_allocations=max_allocations,
        fail_on=threshold,
    )
    if dry_run:
        _plan(options, out)
    report = run_with_progress(
        lambda: run_audit(options),
        "auditing: identity, open relay, TLS, peer ACL, capabilities…",
        out.to_terminal_table and not quiet,
    )

    def text() -> str:
        from turncheck.render.audit import render_text, sarif
        from turncheck.render.json import dumps

        if out.fmt == "json":
            return dumps(report.to_json())
        if out.fmt == "sarif":
            return dumps(sarif(report))
        return render_text(report, verbose)

    def draw(console: object) -> None:
        from turncheck.render.audit import render

        render(report, console, verbose)  # type: ignore[arg-type]

    out.deliver(report.verdict, text, draw)
    raise typer.Exit(report.exit_code)


def _entries(
    ctx: typer.Context,
    urls: list[str] | None,
    ice_servers: str | None,
    username: str | None,
    credential: str | None,
    secret_file: str | None,
    rest_user_: str | None,
    ttl: int,
) -> list[ServerEntry]:
    """The URLs to audit, parsed as a browser parses them, with credentials when given: an
    audit without them is what an attacker sees (a browser would refuse turn: without)."""
    from turncheck.browser import parse_ice_url
    from turncheck.cli.common import credentials, minted_credentials, pick_credentials
    from turncheck.config import read_ice_servers
    from turncheck.plan import ServerEntry, entries_from

    parsed = [parse_ice_url(text) for text in urls or ()]
    given = credentials(ctx, username, credential, needed=False)
    minted = minted_credentials(secret_file, rest_user(rest_user_, None), ttl)
    creds, source = pick_credentials(given, minted)
    entries = [
        ServerEntry(
            url, creds if url.is_turn else None, source if url.is_turn and creds else "none"
        )
        for url in parsed
    ]
    if ice_servers is not None:
        entries += entries_from(read_ice_servers(ice_servers).servers)
    return entries


def _plan(options: AuditOptions, out: Output) -> None:
    """--dry-run: what the audit would check, and where it would send, without a packet."""
    from turncheck.plan import build_targets
    from turncheck.render.audit import plan_json, plan_lines
    from turncheck.render.json import dumps

    targets = build_targets(list(options.entries), None)
    out.deliver(
        f"dry run: {len(targets)} target(s), nothing sent",
        lambda: (
            dumps(plan_json(targets, options))
            if out.fmt != "table"
            else "\n".join(plan_lines(targets, options))
        ),
        lambda console: console.print("\n".join(plan_lines(targets, options)), soft_wrap=True),
    )
    raise typer.Exit(0)
