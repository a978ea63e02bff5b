"""The run API: an options value in, a Report out. The CLI, `turncheck serve` and Python
callers all use it, so the probe's orchestration exists once.

A pytest smoke test of a staging TURN server::

    from turncheck.api import ProbeOptions, probe

    def test_staging_turn_relays():
        report = probe(ProbeOptions.of("turns:turn.staging.example.com:443?transport=tcp",
                                       username="alice", credential=os.environ["TURN_PW"]))
        assert report.ok, report.verdict
        assert report.browser.relay == ("tls",)

Everything raises turncheck.errors.InputError (a bad URL, the browser's constructor
refusing the configuration) before any packet; a run itself never raises for a failed check:
it is in the Report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from turncheck.config import Credentials
from turncheck.relay import RelaySettings
from turncheck.urls import Transport

if TYPE_CHECKING:
    from turncheck.checks import CheckSettings
    from turncheck.plan import ServerEntry
    from turncheck.report import Report
    from turncheck.require import Requirements
    from turncheck.resolve import Resolver
    from turncheck.transport import Tracer


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """What one probe checks and how: the same choices as `turncheck probe`'s options."""

    entries: tuple[ServerEntry, ...]
    transports: tuple[Transport, ...] | None = None  # --transport: then every check gates
    relay: RelaySettings | None = field(default_factory=RelaySettings)  # None: --no-relay
    relay_only: bool = False
    requirements: Requirements | None = None
    timeout: float = 5.0
    dns_server: tuple[str, int] | None = None
    families: tuple[int, ...] | None = None
    ca_file: str | None = None
    insecure: bool = False
    advice: tuple[str, ...] = ()
    tracer: Tracer | None = field(default=None, repr=False)
    engines: tuple[str, ...] = ("chromium", "firefox")  # --browser: whose calls must work

    @classmethod
    def of(
        cls,
        *urls: str,
        username: str | None = None,
        credential: str | None = None,
        ice_servers: str | None = None,
        **options: object,
    ) -> ProbeOptions:
        """Options from URL texts (and an iceServers JSON text), validated as a browser
        validates them; InputError naming the culprit otherwise."""
        from turncheck.config import advice, parse_configuration
        from turncheck.plan import command_line_entries, entries_from

        creds = (
            Credentials(username, credential)
            if username is not None and credential is not None
            else None
        )
        entries = command_line_entries(list(urls), creds, "api" if creds else "none")
        relay_only = bool(options.pop("relay_only", False))
        if ice_servers is not None:
            configuration = parse_configuration(ice_servers)
            entries += entries_from(configuration.servers)
            relay_only = relay_only or configuration.relay_only
        return cls(
            entries=tuple(entries),
            relay_only=relay_only,
            advice=tuple(advice(entries)),
            **options,  # type: ignore[arg-type]
        )


async def run(options: ProbeOptions) -> Report:
    """One probe: every target at once; the Report says what a browser gets and why."""
    from turncheck.plan import build_targets
    from turncheck.probe import run_probe

    targets = build_targets(list(options.entries), options.transports)
    settings, resolver = settings_for(options, {t.transport for t in targets})
    return await run_probe(
        targets,
        resolver,
        settings,
        relay_only=options.relay_only,
        advice=options.advice,
        requirements=options.requirements,
        every_check=options.transports is not None,
        engines=options.engines,
    )


def probe(options: ProbeOptions) -> Report:
    """run() for callers without an event loop of their own."""
    return asyncio.run(run(options))


def settings_for(
    options: ProbeOptions, transports: set[Transport]
) -> tuple[CheckSettings, Resolver]:
    """The check settings and resolver of a run (the TLS context only when TLS is used)."""
    import ssl

    from turncheck.checks import CheckSettings, make_ssl_context
    from turncheck.errors import InputError
    from turncheck.resolve import Resolver

    context = None
    if Transport.TLS in transports:  # loading the trust store costs ~40 ms
        try:
            context = make_ssl_context(options.ca_file, options.insecure)
        except (ssl.SSLError, OSError) as exc:
            raise InputError(
                f"--ca-file '{options.ca_file}': not a usable PEM CA file ({exc})"
            ) from None
    settings = CheckSettings(
        timeout=options.timeout,
        ssl_context=context,
        insecure=options.insecure,
        relay=options.relay,
        tracer=options.tracer,
    )
    if options.families:
        resolver = Resolver(options.dns_server, timeout=options.timeout, families=options.families)
    else:
        resolver = Resolver(options.dns_server, timeout=options.timeout)
    return settings, resolver
