"""turncheck diagnose: explain a call from the browser's own record (webrtc-internals)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from turncheck.cli import app
from turncheck.cli import options as o
from turncheck.cli.common import (
    ExitStatus,
    check_ca_file,
    check_timeout,
    credentials,
    minted_credentials,
    output_format_of,
    output_of,
    pick_credentials,
    rest_user,
)
from turncheck.errors import InputError

if TYPE_CHECKING:
    from turncheck.dumps.reader import DumpBrowser, PeerConnectionRecord
    from turncheck.report import Report

FORMATS = ("table", "json")


@app.command()
def diagnose(
    ctx: typer.Context,
    dump: Annotated[
        str,
        typer.Argument(
            help="A chrome://webrtc-internals dump (the downloaded JSON), or - for stdin.",
            metavar="FILE|-",
        ),
    ],
    recheck: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Re-check the dump's ICE servers from this machine now, side by side.",
        ),
    ] = False,
    username: o.UsernameOpt = None,
    credential: o.CredentialOpt = None,
    secret_file: o.SecretFileOpt = None,
    rest_user_: o.RestUserOpt = None,
    ttl: o.TtlOpt = 600,
    timeout: o.TimeoutOpt = o.TIMEOUT_DEFAULT,
    ca_file: o.CaFileOpt = None,
    insecure: o.InsecureOpt = False,
    dns_server: o.DnsServerOpt = None,
    output_format: Annotated[str | None, o.format_opt(FORMATS)] = None,
    json_out: o.JsonOpt = False,
    output: o.OutputOpt = None,
    quiet: o.QuietOpt = False,
    verbose: o.VerboseOpt = False,
) -> None:
    """Why did the call fail? Read the user's webrtc-internals dump, say it in words."""
    from turncheck.dumps.reader import read
    from turncheck.dumps.verdict import to_json, verdict

    check_timeout(timeout)
    check_ca_file(ca_file)
    out = output_of(output, output_format_of(output_format, json_out, FORMATS), quiet, verbose)
    name = "<stdin>" if dump == "-" else dump
    try:
        data = sys.stdin.buffer.read() if dump == "-" else Path(dump).read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read it ({exc.strerror})") from None
    records, browser = read(data, name)
    report = None
    if recheck:
        report = _probe_now(
            ctx,
            records,
            username,
            credential,
            secret_file,
            rest_user(rest_user_, None),
            ttl,
            timeout,
            ca_file,
            insecure,
            dns_server,
            verbose,
            browser.engine if browser is not None else None,
        )
    summary = "; ".join(f"{r.id}: {verdict(r)}" for r in records)

    def text() -> str:
        from turncheck.render.json import dumps

        document: dict[str, object] = {
            "schema": 1,
            "browser": None if browser is None else browser.to_json(),
            "peer_connections": [to_json(r) for r in records],
        }
        if report is not None:
            document["probe"] = report.to_json()
        if out.fmt == "json":
            return dumps(document)
        from turncheck.render.diagnose import render_text

        body = f"{_browser_line(browser)}\n{render_text(records)}"
        if report is not None:
            from turncheck.render.table import render_text as table_text

            body += "\nfrom this machine now:\n" + table_text(report)
        return body

    def draw(console: object) -> None:
        from turncheck.render.diagnose import render

        console.print(_browser_line(browser), markup=False, highlight=False)  # type: ignore[attr-defined]
        render(records, console)  # type: ignore[arg-type]
        if report is not None:
            from turncheck.render.table import render as render_table

            console.print("\nfrom this machine now:", style="bold")  # type: ignore[attr-defined]
            render_table(report, console)  # type: ignore[arg-type]

    out.deliver(summary, text, draw)
    raise typer.Exit(
        ExitStatus.OK if all(r.connected for r in records) else ExitStatus.CHECK_FAILED
    )


def _probe_now(
    ctx: typer.Context,
    records: list[PeerConnectionRecord],
    username: str | None,
    credential: str | None,
    secret_file: str | None,
    user: str | None,
    ttl: int,
    timeout: float,
    ca_file: Path | None,
    insecure: bool,
    dns_server: str | None,
    verbose: bool,
    engine: str | None,
) -> Report:
    """The dump's ICE servers probed from here, with credentials from the usual places (the
    dump never holds them)."""
    from turncheck.api import ProbeOptions, probe
    from turncheck.cli.common import flush_warnings, stderr_tracer
    from turncheck.config import advice
    from turncheck.plan import command_line_entries
    from turncheck.resolve import parse_dns_server

    urls = list(dict.fromkeys(u for r in records for u in r.ice_servers))
    if not urls:
        raise InputError("--probe: the dump names no ICE server to probe")
    needed = any(u.startswith("turn") for u in urls)
    creds, source = pick_credentials(
        credentials(ctx, username, credential, needed=needed),
        minted_credentials(secret_file, user, ttl),
    )
    if needed and creds is None:
        raise InputError(
            "--probe: the dump's TURN URLs need credentials (a dump never holds them): pass "
            "-u/-p, TURNCHECK_USERNAME/TURNCHECK_CREDENTIAL or --secret-file"
        )
    entries = command_line_entries(urls, creds, source)
    flush_warnings()
    policy = any(r.ice_transport_policy == "relay" for r in records)
    return probe(
        ProbeOptions(
            entries=tuple(entries),
            relay_only=policy,
            timeout=timeout,
            dns_server=parse_dns_server(dns_server) if dns_server else None,
            ca_file=str(ca_file) if ca_file else None,
            insecure=insecure,
            advice=tuple(advice(entries)),
            tracer=stderr_tracer() if verbose else None,
            # The model of the browser that wrote the dump answers for it; else both.
            engines=(engine,) if engine in ("chromium", "firefox") else ("chromium", "firefox"),
        )
    )


def _browser_line(browser: DumpBrowser | None) -> str:
    if browser is None:
        return "browser       not named in the dump (no UserAgent)"
    rules = {"chromium": "Chromium's rules", "firefox": "Firefox's rules"}.get(
        browser.engine or "", "no model of this engine: Chromium's rules for the dump's events"
    )
    return f"browser       {browser.name} ({rules})"
