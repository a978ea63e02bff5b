"""Run a plan: resolve every target, run all checks concurrently → Report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import replace

from turncheck import browser, firefox
from turncheck.browser import IceServerInput
from turncheck.checks import (
    CheckSettings,
    UdpPool,
    allocate_check,
    asked_checks,
    binding_check,
    failed,
)
from turncheck.errors import DnsFailure
from turncheck.explain import (
    asked_verdict,
    browser_verdict,
    explain,
    relay_notes,
    relay_only_verdict,
    requirements_verdict,
    run_advice,
    tls_notes,
    verdict,
    weigh,
)
from turncheck.nat import symmetric_from_bindings
from turncheck.plan import ServerEntry, Target
from turncheck.report import Report
from turncheck.require import Requirements, evaluate
from turncheck.resolve import Endpoint, Resolver
from turncheck.results import CheckResult


async def _guarded(coro: Awaitable[CheckResult], ep: Endpoint, kind: str) -> CheckResult:
    """A check never raises into the task group: a bug becomes a failed row, not a crash."""
    try:
        result = await coro
    except Exception as exc:
        result = failed(ep, kind, exc)
    if ep.absolute_failure is not None:
        details = {**result.details, "absolute_lookup_failed": ep.absolute_failure}
        result = replace(result, details=details)
    return result


def _dns_failed(target: Target, exc: DnsFailure) -> list[CheckResult]:
    reason = explain(exc)
    via = f"SRV {target.srv_name}" if target.srv_name else f"A/AAAA {target.url.host}"
    return [
        CheckResult(
            url=str(target.url),
            transport=target.transport.value,
            kind=kind,
            server=None,
            port=target.port,
            ok=False,
            via=via,
            error=reason,
            extra=target.extra,
            cause="dns",
        )
        for kind in target.kinds
    ]


Resolved = list[Endpoint | CheckResult]  # endpoints to check, or the failed rows of a lookup


async def _resolve(target: Target, resolver: Resolver) -> Resolved:
    try:
        return list(await resolver.endpoints(target))
    except DnsFailure as exc:
        return list(_dns_failed(target, exc))


def _srv_news(targets: Sequence[Target], found: Sequence[Resolved]) -> list[Resolved]:
    """SRV endpoints that are the same address and port as the URL's own are not checked
    twice: only the servers SRV names apart from the browser's make rows of their own."""
    plain: set[tuple[str, str, str, int]] = set()
    for target, result in zip(targets, found, strict=True):
        if target.srv_name is None:
            for ep in result:
                if isinstance(ep, Endpoint):
                    plain.add((str(target.url), target.transport.value, ep.address, ep.port))
    out: list[Resolved] = []
    for target, result in zip(targets, found, strict=True):
        if target.srv_name is not None:
            result = [
                ep
                for ep in result
                if not isinstance(ep, Endpoint)
                or (str(target.url), target.transport.value, ep.address, ep.port) not in plain
            ]
        out.append(result)
    return out


async def run_probe(
    targets: list[Target],
    resolver: Resolver,
    settings: CheckSettings,
    *,
    relay_only: bool = False,
    advice: tuple[str, ...] = (),
    requirements: Requirements | None = None,
    every_check: bool = False,
    engines: tuple[str, ...] = ("chromium", "firefox"),
) -> Report:
    """Every target at once: the run costs about its slowest lookup plus its slowest check."""
    found = await asyncio.gather(*(_resolve(t, resolver) for t in targets))
    found = _srv_news(targets, found)
    async with UdpPool(settings.tracer) as pool, asyncio.TaskGroup() as group:
        tasks: list[asyncio.Task[CheckResult]] = []
        ready: list[CheckResult] = []
        for target, result in zip(targets, found, strict=True):
            for item in result:
                if isinstance(item, CheckResult):
                    ready.append(item)
                    continue
                for kind in target.kinds:
                    check = (
                        binding_check(item, settings, pool)
                        if kind == "stun"
                        else allocate_check(item, settings)
                    )
                    tasks.append(group.create_task(_guarded(check, item, kind)))
                # --relay-family, --tcp-relay: rows of their own beside the browser's Allocate.
                for beside in asked_checks(item, settings):
                    tasks.append(group.create_task(_guarded(beside, item, "turn")))
    uses = browser.uses(list(dict.fromkeys(t.url for t in targets)))
    checks = _stun_but_not_turn(_ordered(targets, ready + [t.result() for t in tasks]))
    checks = _as_the_browser_sees(checks, uses)
    checks = tuple(_made_by(c, uses) for c in checks)
    view = browser.view(uses, checks, relay_only)
    entries = list(dict.fromkeys(t.entry for t in targets))
    ff = firefox.view(
        [e.url for e in entries], checks, relay_only, firefox.check_constructor(_inputs(entries))
    )
    # What the user asked for beyond the browser's checks (--relay-family, --tcp-relay) and
    # did not get is named first; the rest of the line says what the other checks found.
    asked = [c for c in checks if not c.extra and browser.relay_variant(c) and not c.ok]
    others = [c for c in checks if all(c is not a for a in asked)]
    text = verdict(others, others=bool(asked))
    if not every_check:
        # The browsers' answers come first, relay policy included (the views know it).
        text = browser_verdict({"chromium": view, "firefox": ff}, engines, checks, text)
    elif relay_only:
        text = relay_only_verdict(checks, text)
    if asked:
        text = asked_verdict(asked, text)
    gates = evaluate(requirements, checks) if requirements else ()
    if gates:
        text = requirements_verdict(gates, text)
    return Report(
        checks=checks,
        nat=symmetric_from_bindings(checks),
        verdict=text,
        notes=relay_notes(checks) + tls_notes(checks),
        relay_only=relay_only,
        advice=run_advice(advice, view, checks),
        requirements=gates,
        browser=view,
        every_check=every_check,
        firefox=ff,
        engines=engines,
    )


def _made_by(check: CheckResult, uses: Sequence[browser.BrowserUse]) -> CheckResult:
    """details["browsers"]: the browsers that make this check (the table marks the others)."""
    engines = [
        engine
        for engine, made in (
            ("chromium", browser.makes(check, uses)),
            ("firefox", firefox.makes(check)),
        )
        if made
    ]
    return replace(check, details={**check.details, "browsers": engines})


def _inputs(entries: Sequence[ServerEntry]) -> list[IceServerInput]:
    """The servers as an RTCConfiguration gave them, for Firefox's constructor rules."""
    return [
        IceServerInput(
            (e.url.text,),
            e.credentials.username if e.credentials else None,
            e.credentials.password if e.credentials else None,
            e.origin,
        )
        for e in entries
    ]


def _ordered(targets: Sequence[Target], checks: list[CheckResult]) -> tuple[CheckResult, ...]:
    """Rows in plan order: each URL's browser checks, then its extras, then SRV."""
    rank = {
        (str(t.url), t.transport.value, t.extra, t.srv_name is not None): i
        for i, t in enumerate(targets)
    }

    def key(check: CheckResult) -> int:
        srv = check.via.startswith("SRV")
        return rank.get((check.url, check.transport, check.extra, srv), len(rank))

    return tuple(sorted(checks, key=key))


def _stun_but_not_turn(checks: tuple[CheckResult, ...]) -> tuple[CheckResult, ...]:
    """An unanswered Allocate to an address and transport whose Binding was answered: say
    what the evidence says (explain.stun_only), not "UDP may be blocked"."""
    answered = {(c.server, c.transport): c for c in checks if c.kind == "stun" and c.ok}
    return tuple(weigh(c, answered.get((c.server, c.transport))) for c in checks)


def _as_the_browser_sees(
    checks: tuple[CheckResult, ...], uses: Sequence[browser.BrowserUse]
) -> tuple[CheckResult, ...]:
    """The browser's own checks get what Chromium would show: relay candidates their TURN
    URL's position in the priority, failures Chromium's icecandidateerror code and text."""
    by_key = {use.key: use for use in uses}
    out: list[CheckResult] = []
    for check in checks:
        use = by_key.get((check.url, check.transport))
        skipped = use is not None and use.skipped and (check.kind == "turn" or not use.stun_server)
        if not browser.browser_like(check) or use is None or skipped:
            out.append(check)
            continue
        if check.candidate("relay") is not None and use.relay_preference:
            candidates = tuple(
                replace(c, relay_preference=use.relay_preference) if c.type == "relay" else c
                for c in check.candidates
            )
            check = replace(check, candidates=candidates)
        if (
            not check.ok
            or check.details.get("unchallenged")
            or check.details.get("absolute_lookup_failed")
        ):
            if check.kind == "turn":
                found = browser.allocate_error(check.transport, check)
            elif check.transport == "udp":
                found = browser.binding_error(check)
            else:
                found = None
            if found is not None:
                code, text = found
                details = {**check.details, "browser_error": {"code": code, "text": text}}
                check = replace(check, details=details)
        out.append(check)
    return tuple(out)
