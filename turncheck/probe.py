"""Run a plan: resolve every target and run all checks concurrently → Report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from turncheck.checks import CheckSettings, UdpPool, allocate_check, binding_check, failed
from turncheck.errors import DnsFailure
from turncheck.explain import (
    Outcome,
    explain,
    relay_notes,
    relay_only_verdict,
    requirements_verdict,
    tls_notes,
    verdict,
)
from turncheck.nat import symmetric_from_bindings
from turncheck.plan import Target
from turncheck.report import CheckResult, Report
from turncheck.require import Requirements, evaluate
from turncheck.resolve import Endpoint, Resolver


async def _guarded(coro: Awaitable[CheckResult], ep: Endpoint, kind: str) -> CheckResult:
    """A check never raises into the task group: a bug becomes a failed row, not a crash."""
    try:
        return await coro
    except Exception as exc:
        return failed(ep, kind, exc)


async def _run_target(
    target: Target, resolver: Resolver, settings: CheckSettings, pool: UdpPool
) -> list[CheckResult]:
    try:
        endpoints = await resolver.endpoints(target)
    except DnsFailure as exc:
        reason = explain(exc)
        return [
            CheckResult(
                url=str(target.url),
                transport=target.transport.value,
                kind=kind,
                server=None,
                port=target.port,
                ok=False,
                via=f"SRV {target.srv_name}" if target.srv_name else f"A/AAAA {target.url.host}",
                error=reason,
            )
            for kind in target.kinds
        ]
    async with asyncio.TaskGroup() as group:
        tasks = []
        for ep in endpoints:
            for kind in target.kinds:
                check = (
                    binding_check(ep, settings, pool)
                    if kind == "stun"
                    else allocate_check(ep, settings)
                )
                tasks.append(group.create_task(_guarded(check, ep, kind)))
    return [task.result() for task in tasks]


async def run_probe(
    targets: list[Target],
    resolver: Resolver,
    settings: CheckSettings,
    *,
    relay_only: bool = False,
    advice: tuple[str, ...] = (),
    requirements: Requirements | None = None,
) -> Report:
    """Every target at once: the run costs about its slowest check."""
    async with UdpPool(settings.tracer) as pool, asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_run_target(target, resolver, settings, pool)) for target in targets
        ]
    checks = tuple(result for task in tasks for result in task.result())
    text = verdict(
        [Outcome(c.transport, c.kind, c.ok, c.timed_out, c.port, c.invalid_answers) for c in checks]
    )
    if relay_only:
        text = relay_only_verdict(checks, text)
    gates = evaluate(requirements, checks) if requirements else ()
    if gates:
        text = requirements_verdict(gates, text)
    return Report(
        checks=checks,
        nat=symmetric_from_bindings(checks),
        verdict=text,
        notes=relay_notes(checks) + tls_notes(checks),
        relay_only=relay_only,
        advice=advice,
        requirements=gates,
    )
